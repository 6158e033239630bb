from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import REPO  # noqa: E402

# pytest-xdist's workers export COLUMNS=80 and LINES=24: every command a test starts would then fit its
# tables to 80 columns, as no command run by CI (no terminal, no COLUMNS) ever does.
for _size in ("COLUMNS", "LINES"):
    os.environ.pop(_size, None)
# vLLM's CPU backend pins each worker's OpenMP threads to core 0 ("auto" binding, one core reserved):
# the suite runs several vLLM instances at once, which would all queue on that one core while the
# others idle. Thread placement is vLLM's business on a real machine, not what these tests prove.
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """How the suite spreads over workers (``--dist loadfile``, a file at a time, so a file's
    module-scoped vLLM server or tree is built once): files that start vLLM come first, so the long
    ones are not left for the end (``--no-loadscope-reorder``: xdist's default order, most tests
    first, put the e2e files, which have few tests each, last). Spreading single tests instead (``loadgroup``) ran more vLLM
    instances at once on two cores and took longer (15:52 against 11:34). A stable sort: every worker
    collects the same order (xdist requires it)."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("e2e") is not None else 1)


def _trusted_temp_root() -> str:
    """Where the tests' temporary directories go: the trust rule refuses hotfixes below a directory
    others can write (``/tmp`` is one), so tests that write hotfix directories need a root whose every
    directory only the user and root can write. The user's cache directory is one."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ascend-overlay-tests"
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    return str(base)


tempfile.tempdir = _trusted_temp_root()  # pytest's tmp_path is made under tempfile.gettempdir()


@pytest.fixture(scope="session", autouse=True)
def _server_logs_where_pytest_prunes(tmp_path_factory: pytest.TempPathFactory) -> None:
    from harness import VllmServer

    VllmServer.log_dir = tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama made locally (config + trained tokenizer); served with dummy weights."""
    from ascend_overlay.serving.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_two_rope_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Granite model whose two layers use two RoPE bases (vLLM's Granite reads one base per
    layer from ``layer_rope_theta``): two distinct cos/sin caches in one process, with seeded random
    weights and the tiny Llama's tokenizer."""
    import shutil

    import torch
    from transformers import GraniteConfig, GraniteForCausalLM

    target = tmp_path_factory.mktemp("models") / "tiny-granite-two-ropes"
    target.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(tiny_model / name, target / name)
    config = GraniteConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                           bos_token_id=0, eos_token_id=1, attention_multiplier=0.125,
                           layer_rope_theta=[10000.0, 1000000.0], torch_dtype="bfloat16")
    config.architectures = ["GraniteForCausalLM"]
    saved = torch.get_rng_state()
    try:
        torch.manual_seed(0)
        model = GraniteForCausalLM(config).to(torch.bfloat16)
    finally:
        torch.set_rng_state(saved)
    model.save_pretrained(target, safe_serialization=True)
    return target


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
