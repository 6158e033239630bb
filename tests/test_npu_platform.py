"""The NPU platform plugin, platform class and worker.

Here (no NPU) the plugin must decline cheaply; with the torch_npu test double standing in for an
NPU machine it must name the platform, whose methods reach ``torch.npu`` and whose worker brings up
the distributed environment with HCCL on the right device.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest
import served_overlay
import torch

from ascend_overlay.npu import NPU_CUSTOM_OPS, PLATFORM_QUALNAME, WORKER_QUALNAME, platform_plugin

# -- the plugin ------------------------------------------------------------------------------------

def test_plugin_declines_here_without_importing_torch():
    code = ("import sys\nfrom ascend_overlay.npu import platform_plugin\n"
            "print(platform_plugin(), platform_plugin(), 'torch' in sys.modules, 'vllm' in sys.modules)")
    env = {**os.environ, "VLLM_ASCEND_OVERLAY": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "None", "False", "False"]


def test_plugin_names_the_platform_on_an_npu_machine(torch_npu_double, monkeypatch):
    monkeypatch.setenv("VLLM_ASCEND_OVERLAY", "1")
    assert platform_plugin() == PLATFORM_QUALNAME


@pytest.mark.parametrize("overlay", ["", "0", "bogus"])
def test_plugin_stays_out_while_the_overlay_is_off(torch_npu_double, monkeypatch, overlay):
    monkeypatch.setenv("VLLM_ASCEND_OVERLAY", overlay)
    assert platform_plugin() is None


def test_plugin_declines_when_no_npu_is_visible(torch_npu_double, monkeypatch):
    monkeypatch.setenv("VLLM_ASCEND_OVERLAY", "1")
    torch_npu_double.npu.device_count_value = 0
    assert platform_plugin() is None


# -- the platform class ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def npu_platform():
    from ascend_overlay.npu.platform import NPUPlatform

    return NPUPlatform


def test_platform_identity(npu_platform):
    from vllm.platforms.interface import PlatformEnum

    p = npu_platform()
    assert p._enum is PlatformEnum.OOT and p.is_out_of_tree()
    assert (p.device_type, p.device_name, p.dispatch_key) == ("npu", "npu", "PrivateUse1")
    assert p.dist_backend == "hccl" and p.device_control_env_var == "ASCEND_RT_VISIBLE_DEVICES"
    assert p.simple_compile_backend == "eager"


def test_platform_device_methods_reach_torch_npu(npu_platform, torch_npu_double):
    npu = torch_npu_double.npu
    assert npu_platform.get_device_name(1) == "Ascend910B-test-double"
    assert npu_platform.get_device_total_memory(0) == npu.total_memory
    npu_platform.set_device(torch.device("cpu"))
    npu_platform.manual_seed_all(42)
    assert npu_platform.get_current_memory_usage("dev") == 123_456.0
    names = [c[0] for c in npu.calls]
    assert names == ["get_device_name", "get_device_properties", "set_device", "manual_seed_all",
                     "reset_peak_memory_stats", "max_memory_allocated"]
    assert npu.calls[3] == ("manual_seed_all", (42,))
    # Platform.__getattr__ resolves what vLLM reads off the device module (device_count...).
    assert npu_platform().device_count() == 1


def test_platform_does_not_ask_for_device_memory_where_the_npu_is_not_initialised(npu_platform, torch_npu_double):
    """vLLM asks in its front-end, which forks afterwards: asking would initialise the NPU there."""
    npu = torch_npu_double.npu
    npu.initialized = False
    with pytest.raises(NotImplementedError, match="not initialised the NPU"):
        npu_platform.get_device_total_memory(0)
    assert npu.calls == [], "nothing that initialises the NPU may run"


def test_platform_dtype_check(npu_platform):
    for dtype in (torch.bfloat16, torch.float16):
        npu_platform.check_if_supports_dtype(dtype)
    with pytest.raises(ValueError, match=r"float64 is not supported on the NPU; use one of bfloat16"):
        npu_platform.check_if_supports_dtype(torch.float64)
    with pytest.raises(ValueError, match=r"float32 cannot be served on the NPU: npu_fused_infer_attention_score, "
                                         r"_npu_paged_attention and _npu_reshape_and_cache take float16 and "
                                         r"bfloat16 only"):
        npu_platform.check_if_supports_dtype(torch.float32)
    assert npu_platform().supported_dtypes == [torch.bfloat16, torch.float16], "auto float32 falls back to bf16"


def test_config_hook_refuses_a_float32_model_naming_the_kernels(npu_platform):
    cfg = _fresh_config()
    cfg.model_config = types.SimpleNamespace(dtype=torch.float32)
    with pytest.raises(ValueError, match="npu_fused_infer_attention_score, _npu_paged_attention and "
                                         "_npu_reshape_and_cache take float16 and bfloat16 only"):
        npu_platform.check_and_update_config(cfg)


def test_config_hook_refuses_more_sequences_than_one_fused_attention_call_takes(npu_platform):
    cfg = _fresh_config()
    cfg.scheduler_config.max_num_seqs = 4097
    with pytest.raises(ValueError, match="--max-num-seqs 4097 exceeds the 4096 sequences "
                                         "npu_fused_infer_attention_score takes"):
        npu_platform.check_and_update_config(cfg)
    cfg.scheduler_config.max_num_seqs = 4096
    npu_platform.check_and_update_config(cfg)


@pytest.mark.parametrize("compilation,level,argv,named", [
    ({}, 2, ["vllm", "serve", "m"], []),
    ({}, 3, ["vllm", "serve", "m", "-O3"], ["-O3"]),
    ({}, 0, ["vllm", "serve", "m", "-O0"], []),
    ({}, 2, ["vllm", "serve", "m", "--no-enforce-eager"], ["--no-enforce-eager"]),
    ({"cudagraph_mode": "FULL"}, 2, [], ["-cc.cudagraph_mode=FULL"]),
    ({"mode": "VLLM_COMPILE", "cudagraph_mode": "PIECEWISE"}, 1, [],
     ["-cc.mode=VLLM_COMPILE", "-cc.cudagraph_mode=PIECEWISE", "-O1"]),
])
def test_compile_and_graph_flags_the_platform_cannot_honour_are_named(compilation, level, argv, named):
    from vllm.config import CompilationMode, CUDAGraphMode

    from ascend_overlay.npu.platform import unhonoured_flags

    settings = types.SimpleNamespace(mode=None, cudagraph_mode=None)
    if "mode" in compilation:
        settings.mode = CompilationMode[compilation["mode"]]
    if "cudagraph_mode" in compilation:
        settings.cudagraph_mode = CUDAGraphMode[compilation["cudagraph_mode"]]
    config = types.SimpleNamespace(compilation_config=settings, optimization_level=level)
    assert unhonoured_flags(config, argv) == named


def test_attention_backend_choice(npu_platform):
    from vllm.v1.attention.backends.registry import AttentionBackendEnum
    from vllm.v1.attention.selector import AttentionSelectorConfig

    from ascend_overlay.npu.attention import NPUAttentionBackend

    plain = AttentionSelectorConfig(head_size=64, dtype=torch.bfloat16, kv_cache_dtype=None, block_size=128)
    chosen_path = npu_platform.get_attn_backend_cls(None, plain)
    assert chosen_path == "ascend_overlay.npu.attention.NPUAttentionBackend"
    module, name = chosen_path.rsplit(".", 1)
    assert getattr(__import__(module, fromlist=[name]), name) is NPUAttentionBackend
    chosen = AttentionBackendEnum.TRITON_ATTN
    assert npu_platform.get_attn_backend_cls(chosen, plain) == chosen.get_path()
    with pytest.raises(NotImplementedError, match="--attention-backend"):
        npu_platform.get_attn_backend_cls(None, plain._replace(use_mla=True))


def _fresh_config(**compilation):
    from vllm.config import VllmConfig

    cfg = VllmConfig()  # built under this machine's CPU platform; reset what the NPU hook decides
    cfg.parallel_config.worker_cls = "auto"
    for key, value in compilation.items():
        setattr(cfg.compilation_config, key, value)
    return cfg


def test_config_hook_enables_npu_ops_and_picks_the_worker(npu_platform):
    from vllm.config import CompilationMode, CUDAGraphMode

    cfg = _fresh_config(custom_ops=["none", "-rms_norm"], mode=CompilationMode.VLLM_COMPILE)
    npu_platform.check_and_update_config(cfg)
    ops = cfg.compilation_config.custom_ops
    assert "+silu_and_mul" in ops and "+rotary_embedding" in ops
    assert "+rms_norm" not in ops and "-rms_norm" in ops, "an operator's explicit -op must win"
    assert set(NPU_CUSTOM_OPS) == {"silu_and_mul", "rms_norm", "rotary_embedding"}
    assert cfg.parallel_config.worker_cls == WORKER_QUALNAME
    assert cfg.compilation_config.mode == CompilationMode.NONE
    assert cfg.compilation_config.cudagraph_mode == CUDAGraphMode.NONE

    cfg = _fresh_config(custom_ops=["all"])
    cfg.parallel_config.worker_cls = "my.Worker"
    npu_platform.check_and_update_config(cfg)
    assert cfg.parallel_config.worker_cls == "my.Worker"


def test_config_defaults_make_eager_the_default(npu_platform):
    from vllm.config import CompilationMode

    cfg = _fresh_config(mode=None)
    npu_platform.apply_config_platform_defaults(cfg)
    assert cfg.compilation_config.mode == CompilationMode.NONE
    cfg = _fresh_config(mode=CompilationMode.VLLM_COMPILE)
    npu_platform.apply_config_platform_defaults(cfg)
    assert cfg.compilation_config.mode == CompilationMode.VLLM_COMPILE, "defaults never override a choice"


def test_flags_the_platform_cannot_honour_are_named_in_one_warning_line(npu_platform, monkeypatch, caplog):
    import logging

    from vllm.config import CompilationMode, CUDAGraphMode

    monkeypatch.setattr(sys, "argv", ["vllm", "serve", "m", "--no-enforce-eager"])
    cfg = _fresh_config(mode=CompilationMode.VLLM_COMPILE, cudagraph_mode=CUDAGraphMode.FULL)
    with caplog.at_level(logging.WARNING, logger="ascend_overlay"):
        npu_platform.apply_config_platform_defaults(cfg)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "ascend_overlay"]
    assert line == ("ascend-overlay: the NPU platform runs eager; not honoured: -cc.mode=VLLM_COMPILE, "
                    "-cc.cudagraph_mode=FULL, --no-enforce-eager")
    caplog.clear()
    monkeypatch.setattr(sys, "argv", ["vllm", "serve", "m"])
    with caplog.at_level(logging.WARNING, logger="ascend_overlay"):
        npu_platform.apply_config_platform_defaults(_fresh_config(mode=None, cudagraph_mode=None))
    assert not [r for r in caplog.records if r.name == "ascend_overlay"], "defaults are not flags"


def test_plugin_says_once_that_the_simulated_npu_is_ignored_while_the_overlay_is_off():
    code = "from ascend_overlay.npu import platform_plugin\nprint(platform_plugin(), platform_plugin())"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_ASCEND_OVERLAY")}
    out = subprocess.run([sys.executable, "-c", code], env={**env, "VLLM_ASCEND_OVERLAY_SIMULATE_NPU": "1"},
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["None", "None"]
    assert out.stderr.count("VLLM_ASCEND_OVERLAY_SIMULATE_NPU=1 is ignored: the overlay is off") == 1, out.stderr


def test_pre_register_fires_the_overlay_platform_phase(npu_platform):
    from ascend_overlay.core.settings import Settings
    from ascend_overlay.core.vocabulary import Phase
    from ascend_overlay.doors import activation

    overlay = activation.activate(door="test", settings=Settings(enabled=True, log_level="off"))
    try:
        assert overlay is not None and Phase.PLATFORM not in overlay.fired
        npu_platform.pre_register_and_update()
        assert Phase.PLATFORM in overlay.fired
    finally:
        activation.deactivate()


# -- the worker --------------------------------------------------------------------------------------

def _parallel(**overrides):
    base = dict(distributed_executor_backend="mp", data_parallel_backend="mp", nnodes_within_dp=1,
                data_parallel_rank_local=None, data_parallel_index=0, pipeline_parallel_size=1,
                prefill_context_parallel_size=1, tensor_parallel_size=2)
    base.update(overrides)
    return types.SimpleNamespace(**base)


def test_local_device_index_follows_vllm_0_32(monkeypatch):
    from ascend_overlay.npu.worker import local_device_index

    monkeypatch.setenv("VLLM_VERSION", "0.32.0")
    assert local_device_index(_parallel(), 1) == 1
    assert local_device_index(_parallel(data_parallel_rank_local=1), 1) == 3  # DP rank 1 takes devices 2, 3
    assert local_device_index(_parallel(distributed_executor_backend="ray", data_parallel_rank_local=1), 1) == 1


def test_local_device_index_uses_the_0_33_helper(monkeypatch):
    from ascend_overlay.npu.worker import local_device_index

    monkeypatch.setenv("VLLM_VERSION", "0.33.0")
    seen = []
    parallel = _parallel(get_local_gpu_index=lambda rank: seen.append(rank) or rank + 10)
    assert local_device_index(parallel, 1) == 11 and seen == [1]


@pytest.fixture
def worker_mod():
    """The NPU worker's module, imported before the torch_npu double is installed: vLLM's config
    imports transformers, which imports its NPU flash-attention kernels when torch_npu imports."""
    from ascend_overlay.npu import worker

    return worker


def test_worker_brings_up_hccl_on_its_npu(worker_mod, torch_npu_double, monkeypatch):
    """init_device on an NPU machine: the device, the dtype check, and HCCL. The distributed
    bring-up, memory snapshot and model runner need a real NPU and are recorded instead."""
    from ascend_overlay.npu.platform import NPUPlatform

    # torch_npu names the PrivateUse1 device "npu" on import (once per process, irreversibly);
    # the worker builds torch.device("npu:N") from it.
    if torch._C._get_privateuse1_backend_name() != "npu":
        torch.utils.rename_privateuse1_backend("npu")
    monkeypatch.setenv("ASCEND_RT_VISIBLE_DEVICES", "4,6")
    monkeypatch.setenv("VLLM_VERSION", "0.32.0")
    record: dict = {}
    monkeypatch.setattr(worker_mod, "current_platform", NPUPlatform())
    monkeypatch.setattr(worker_mod, "init_worker_distributed_environment",
                        lambda cfg, rank, method, local_rank, backend: record.update(
                            rank=rank, method=method, local_rank=local_rank, backend=backend))
    monkeypatch.setattr(worker_mod, "MemorySnapshot", lambda device: ("snapshot", device))
    monkeypatch.setattr(worker_mod, "request_memory", lambda snapshot, cache_config: 1 << 30)
    monkeypatch.setattr(worker_mod.NPUWorker, "_init_workspace_and_model_runner",
                        lambda self: record.update(runner_on=self.device))

    w = object.__new__(worker_mod.NPUWorker)
    w.device_config = types.SimpleNamespace(device_type="npu", device="npu")
    w.parallel_config = _parallel(tensor_parallel_size=2)
    w.model_config = types.SimpleNamespace(dtype=torch.bfloat16, seed=0)
    w.cache_config = object()
    w.vllm_config, w.rank, w.local_rank, w.distributed_init_method = object(), 1, 1, "tcp://127.0.0.1:1"
    w.init_device()

    assert w.device == torch.device("npu:1")  # local rank 1 -> physical 6 -> visible ordinal 1
    assert ("set_device", (torch.device("npu:1"),)) in torch_npu_double.npu.calls
    assert record == {"rank": 1, "method": "tcp://127.0.0.1:1", "local_rank": 1, "backend": "hccl",
                      "runner_on": torch.device("npu:1")}
    assert w.init_snapshot == ("snapshot", torch.device("npu:1")) and w.requested_memory == 1 << 30


def test_worker_refuses_other_devices():
    from ascend_overlay.npu.worker import NPUWorker

    w = object.__new__(NPUWorker)
    w.device_config = types.SimpleNamespace(device_type="cpu", device="cpu")
    with pytest.raises(RuntimeError, match="NPUWorker needs the npu device"):
        w.init_device()


# -- end to end: no NPU here, so vLLM must run as stock CPU with the overlay on -------------------------

@pytest.mark.e2e
def test_e2e_without_npu_vllm_serves_on_cpu_and_kernel_patches_skip(overlay_served: served_overlay.OverlayServed):
    """On the run shared with the activation and hotfix e2e tests (tests/served_overlay.py)."""
    from harness import report_by_role

    reply, log = overlay_served.result, overlay_served.log
    assert reply["usage"]["completion_tokens"] > 0 and reply["choices"][0]["text"]
    assert "device_config=cpu" in log, "vLLM must have run on its CPU platform"
    assert "ascend_overlay_npu" not in log
    workers = report_by_role(overlay_served.report)["worker"]
    assert workers
    for record in workers:
        outcomes = {p["name"]: p for p in record["patches"]}
        for name in ("npu_silu_and_mul", "npu_rms_norm", "npu_rotary_embedding"):
            assert (outcomes[name]["status"], outcomes[name]["reason"]) == ("skipped", "requires npu")
