from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import REPO  # noqa: E402


def _trusted_temp_root() -> str:
    """Where the tests' temporary directories go: the trust rule refuses hotfixes below a directory
    others can write (``/tmp`` is one), so tests that write hotfix directories need a root whose every
    directory only the user and root can write. The user's cache directory is one."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ascend-overlay-tests"
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    return str(base)


tempfile.tempdir = _trusted_temp_root()  # pytest's tmp_path is made under tempfile.gettempdir()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama made locally (config + trained tokenizer); served with dummy weights."""
    from ascend_overlay.serving.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_moe_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny mixture-of-experts model (config and tokenizer; served with dummy weights): the kind of
    model whose data-parallel ranks vLLM runs as coupled DP engine cores."""
    from ascend_overlay.serving.tiny_model import make_tiny_moe_model

    return make_tiny_moe_model(tmp_path_factory.mktemp("models") / "tiny-moe")


@pytest.fixture(scope="session")
def overlay_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The overlay's wheel, built once per session from a copy of the checkout."""
    from harness import build_wheel

    return build_wheel(tmp_path_factory.mktemp("overlay-wheel"))


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture(scope="module")
def vllm_config():
    """vLLM's CustomOp layers can only be built inside a current VllmConfig."""
    from vllm.config import VllmConfig, set_current_vllm_config

    with set_current_vllm_config(VllmConfig()) as ctx:
        yield ctx


@pytest.fixture
def torch_npu_double(monkeypatch: pytest.MonkeyPatch):
    """Installs ``TorchNpuTestDouble`` as ``torch_npu`` (and ``torch.npu``) for one test: the stand-in
    for what cannot exist on these machines. Requirement caches are reset around it."""
    import importlib.machinery

    import torch
    from npu_test_double import TorchNpuTestDouble

    from ascend_overlay.core import requirements

    double = TorchNpuTestDouble()
    double.__spec__ = importlib.machinery.ModuleSpec("torch_npu", None)
    requirements.torch_npu_importable.cache_clear()
    requirements.npu_available.cache_clear()
    monkeypatch.setitem(sys.modules, "torch_npu", double)
    monkeypatch.setattr(torch, "npu", double.npu, raising=False)
    yield double
    requirements.torch_npu_importable.cache_clear()
    requirements.npu_available.cache_clear()
