from __future__ import annotations

import ast
import functools
import gc
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import served_overlay  # noqa: E402
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
# The suite's own processes (xdist's workers) hold vLLM, torch and main2main's parsed trees: every
# full collection walks that whole heap, and Python starts one every ~10 younger ones. One every
# ~1000 cut the CPU of the in-process test files by 12 to 20% (four of the heaviest, alone: 55.5 ->
# 49.0 s), peak memory unchanged. A setting of the test processes only: what the tests start (vLLM,
# the commands) keeps Python's defaults.
gc.set_threshold(700, 10, 1000)


# The units of work the longest first (their wall seconds alone on two cores, 2026-12-07), so that no long
# one is left for the end while the other workers idle; the rest follow, e2e files first. Only an order.
LONGEST_FIRST = (
    "test_e2e_smoke_failures.py",   # 140 (45 of them a server left hanging on purpose)
    "test_e2e_npu_sim.py",          # 95
    "test_e2e_ray.py",              # 80
    "test_e2e_overlay_off.py",      # 77
    "test_e2e_smoke.py",            # 77
    served_overlay.FIXTURE,         # ~65, one compiled vLLM for three files
    "overlay_wheel",                # ~60, the wheel built once for two files
    "test_prefill_throttle.py",     # ~60
    "test_upstream_tests.py",       # 55, one comparison for its two tests
    "test_e2e_data_parallel.py",    # 53
    "test_testing_plugin.py",       # 48
)


# Costly session fixtures that tests of several files take: every file whose tests or fixtures take
# one is scheduled with the others that do, in one worker, so it is built once (a file taking two
# joins the first).
SHARED_FIXTURES = (served_overlay.FIXTURE, "overlay_wheel")


@functools.cache
def unit_of(path: str) -> str:
    """The unit of work the test file ``path`` (relative to the checkout) is scheduled in: the shared
    fixture it takes, else itself. Read from the file's source: the scheduler runs in xdist's
    controller, which sees test ids only, never the collected tests."""
    taken = {arg.arg for node in ast.walk(ast.parse((REPO / path).read_text(encoding="utf-8")))
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
             for arg in node.args.args + node.args.kwonlyargs}
    return next((name for name in SHARED_FIXTURES if name in taken), path)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The order the units reach the workers in (``--no-loadscope-reorder`` keeps it): ``LONGEST_FIRST``,
    then the files that start vLLM, then the rest. A stable sort: every worker collects the same order
    (xdist requires it)."""
    def key(item: pytest.Item) -> tuple[int, int]:
        unit = unit_of(item.nodeid.split("::", 1)[0]).rsplit("/", 1)[-1]
        rank = LONGEST_FIRST.index(unit) if unit in LONGEST_FIRST else len(LONGEST_FIRST)
        return rank, 0 if item.get_closest_marker("e2e") is not None else 1

    items.sort(key=key)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup``, each unit of ``unit_of`` a group: a worker takes a whole file at a time (a
    file's module-scoped vLLM server or tree is built once), and the files that share a costly session
    fixture together. Not xdist's own ``loadgroup``: it spreads every test without an
    ``xdist_group`` mark one by one (a file's module-scoped servers then start once per worker: 15:52
    against 11:34 for the suite), and with pytest 9.2 it ignores the marks too (pytest-xdist#1386)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid.split("::", 1)[0])

    return UnitScheduling(config, log)


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
def overlay_served(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> served_overlay.OverlayServed:
    """One ``vllm serve`` with the overlay on, for the tests of three files (tests/served_overlay.py)."""
    return served_overlay.serve(tiny_model, tmp_path_factory.mktemp("overlay-served"))


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
