"""The simulated NPU as a device: tensors on ``npu``, the ``torch.npu`` module, memory figures, the
torch_npu stand-in and its counters, the NPU attention backend, ``hccl`` across two processes, and
device visibility.

The simulator is installed in fresh interpreters (tests/npu_sim_probe.py and small scripts here),
never in pytest's own process: installing it is permanent for a process.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from harness import REPO, run_python

PROBE = Path(__file__).resolve().parent / "npu_sim_probe.py"


def sim_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_ASCEND_OVERLAY")
           and k != "ASCEND_RT_VISIBLE_DEVICES"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


class Sections(dict):
    """The probe's observations. A section whose probe raised fails the tests that read it, and only
    those: each test stands or falls with what it observes."""

    def __getitem__(self, name: str) -> Any:
        value = super().__getitem__(name)
        if isinstance(value, dict) and "probe_failed" in value:
            raise AssertionError(f"probe section {name!r} failed:\n{value['probe_failed']}")
        return value


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Sections, Path]:
    out = tmp_path_factory.mktemp("npu-sim-probe")
    env = sim_env(VLLM_ASCEND_OVERLAY_SIMULATE_NPU_STATS=str(out / "stats"))
    done = subprocess.run([sys.executable, str(PROBE), str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return Sections(json.loads((out / "observations.json").read_text())), out


@pytest.fixture(scope="module")
def seen(probed: tuple[Sections, Path]) -> Sections:
    return probed[0]


def test_the_report_mode_turns_simulated_once_installed(seen):
    assert (seen["mode_before"], seen["mode_after"]) == (None, "simulated")


def test_tensors_live_on_a_device_named_npu(seen):
    t = seen["tensors"]
    assert (t["type"], t["device"], t["device_type"]) == ("NpuTensor", "npu:0", "npu")
    assert t["is_cuda"] is False and t["is_npu"] is True, "code that assumes CUDA must see a non-CUDA device"
    assert t["cpu_type"] == "Tensor", ".cpu() hands back a plain host tensor"
    assert "can't convert npu:0 device type tensor to numpy" in t["numpy_error"]


def test_views_in_place_ops_factories_and_modules_behave_as_on_a_device(seen):
    t = seen["tensors"]
    assert t["base_after_view_mul"] == t["expected_base"], "an in-place op on a view must reach its base"
    assert t["zeros"] == [[0.0, 0.0], [0.0, 0.0]] and t["zeros_device"] == "npu:0"
    assert t["param_is_parameter"] and t["param_device"] == "npu:0"
    assert t["linear_device"] == "npu:0" and t["linear_max_diff"] == 0.0
    assert t["tensor_from_data"] == [[1, 2], [3, 4]]
    assert t["arange"] == [0, 1, 2, 3, 4] and t["arange_shape"] == [5], "an out= op may resize its output"
    assert t["item"] == 363.0 and t["tolist"] == [0.0, 10.0, 20.0, 3.0]
    assert t["pickled"] == ["npu:0", [0.0, 10.0, 20.0, 3.0]]
    assert t["to_other_npu"] == ["npu:1", [0.0, 10.0, 20.0, 3.0]]


def test_what_a_device_refuses_is_refused(seen):
    r = seen["refusals"]
    assert "found at least two devices, npu:0 and cpu" in r["mixed_with_cpu"]
    assert r["cpu_scalar_tensor_ok"] is None, "0-dim host tensors are scalars, as on CUDA"
    assert "npu:0 and npu:1" in r["mixed_devices"]
    assert r["op_without_npu_kernel"].startswith("NotImplementedError: Could not run 'npu_sim_probe::host_only'")
    assert r["op_without_npu_kernel_on_cpu"] == [2.0]
    assert "argument 'self' is on cpu; the NPU kernel takes it on the npu device" in r["kernel_on_cpu_tensor"]


def test_the_torch_npu_device_module(seen):
    d = seen["device_module"]
    assert d["available"] and d["count"] == 8 and d["accelerator_count"] == 8
    assert d["bare_device_after_set_device_1"] == "npu:1", "a device without index is the current one"
    assert d["current_after_restore"] == 0
    assert d["name"] == "Ascend910B (simulated)" and d["total_memory"] == 4 * 2**30
    assert d["event_query"] and d["plain_event_query"] and d["stream_inside"] and d["stream_device"] == "npu:0"
    assert d["synchronize"] is None
    assert d["generator_is_generator"] and d["default_generator_is_generator"]
    assert d["seeded_uniform_repeats"] and d["seeded_randn_repeats"]
    assert "Invalid device ordinal npu:99" in d["bad_device"]


def test_memory_figures_follow_live_storages(seen):
    m = seen["memory"]
    assert m["held"] == 2**20 and m["stats_current_minus_base"] == 2**20
    assert m["held_by_view"] == 2**20, "a view keeps its storage alive"
    assert m["after_free"] == 0 and m["peak"] == 2**20
    assert m["free_plus_used"] == m["total"] == 4 * 2**30
    assert m["accelerator_info"] == m["npu_info"], "torch.accelerator answers for the simulated device"
    assert m["reserved_equals_allocated"] and m["empty_cache"] is None


def test_the_torch_npu_stand_in_computes_on_the_device_and_counts_calls(seen):
    k = seen["kernels"]
    assert k["simulated"] is True and k["version"] == "2.14.0+simulated"
    assert k["module_file"].endswith("ascend_overlay/npu/sim/module.py")
    assert k["torch_npu_npu_is_torch_npu"]
    assert k["result_devices"] == ["npu:0"] * 3
    assert k["in_memory"] == {"npu_swiglu": 1, "npu_rms_norm": 1}
    assert list(k["on_disk"].values()) == [{"npu_swiglu": 1, "npu_rms_norm": 1}], "counts reach the stats file"


def _reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """Causal softmax attention of the last ``len(q)`` positions, in float64, GQA by head groups."""
    lq, lk, group = q.shape[0], k.shape[0], q.shape[1] // k.shape[1]
    out = torch.empty(q.shape, dtype=torch.float64)
    for h in range(q.shape[1]):
        scores = q[:, h].double() @ k[:, h // group].double().T * scale
        mask = torch.arange(lk)[None, :] > torch.arange(lq)[:, None] + (lk - lq)
        out[:, h] = torch.softmax(scores.masked_fill(mask, -math.inf), -1) @ v[:, h // group].double()
    return out.float()


def test_the_npu_attention_backend_equals_plain_attention(probed):
    seen, out = probed
    a = seen["attention"]
    assert a["backend_name"] == "NPU_ATTN" and "sliding windows" in a["refused"]
    assert (a["mixed_decode_only"], a["decode_decode_only"]) == (False, True)
    assert a["counts"]["npu_fused_infer_attention_score"] == 1 and a["counts"]["_npu_paged_attention"] == 1
    saved = torch.load(out / "attention.pt")
    start = 0
    for seq, n in enumerate(saved["new"]):
        expected = _reference(saved["query"][start:start + n], saved["keys"][seq], saved["values"][seq], saved["scale"])
        torch.testing.assert_close(saved["output"][start:start + n].float(), expected, atol=2e-2, rtol=1.6e-2)
        start += n
    for seq in range(len(saved["new"])):
        expected = _reference(saved["decode_query"][seq:seq + 1], saved["keys"][seq], saved["values"][seq],
                              saved["scale"])
        torch.testing.assert_close(saved["decode_output"][seq:seq + 1].float(), expected, atol=2e-2, rtol=1.6e-2)


def test_the_cache_write_takes_the_steps_real_slots_as_int32_and_writes_no_padding(seen):
    """vLLM hands int64 slots padded with -1; the kernel gets the step's real slots, int32."""
    a = seen["attention"]
    assert a["slot_dtype"] == "torch.int32" and a["slot_count"] == 11, "11 real tokens, 2 padding slots cut"
    assert a["dummy_run_wrote"] is False, "a dummy run (all slots -1) writes nothing"
    assert a["written_blocks"] == [1, 3, 4], "only the sequences' own blocks hold keys"


def test_the_attention_backend_refuses_a_head_size_the_kernels_do_not_take_when_built(seen):
    message = seen["attention"]["refused_head_size"]
    assert message.startswith("NotImplementedError: the NPU attention kernels cannot serve this model's attention")
    assert "head size 24 is not a multiple of 16 (npu_fused_infer_attention_score)" in message


# -- what a card refuses, refused by the simulated device --------------------------------------------

def test_the_simulated_device_refuses_an_int64_slot_mapping(seen):
    error = seen["kernel_refusals"]["int64_slots"]
    assert error and error.startswith("KernelContractError: _npu_reshape_and_cache: slot_indices must be int32, "
                                      "got int64")
    assert seen["kernel_refusals"]["int32_slots"] is None, "the same call with int32 slots is taken"


def test_the_simulated_device_refuses_a_negative_slot(seen):
    error = seen["kernel_refusals"]["negative_slot"]
    assert error and "_npu_reshape_and_cache: slot_indices must be in [0, blocks * block_size), got slots from -1" \
        in error


def test_the_simulated_device_refuses_float32_attention(seen):
    error = seen["kernel_refusals"]["float32_attention"]
    assert error and "npu_fused_infer_attention_score: query must be float16/bfloat16, got float32" in error
    assert seen["kernel_refusals"]["bf16_attention"] is None, "the same call in bfloat16 is taken"


def test_the_simulated_device_refuses_a_head_size_the_kernel_does_not_take(seen):
    error = seen["kernel_refusals"]["head_size_24"]
    assert error and "npu_fused_infer_attention_score: query must be a head size <= 512, a multiple of 16 when a " \
                     "sequence has more than one query token, got 24" in error


# -- lazy initialisation and fork -------------------------------------------------------------------------

FORK_SCRIPT = """
import json, os, sys
import torch
from ascend_overlay.npu import sim
sim.install()
from ascend_overlay.npu.sim.counters import counters

seen = {"initialised_at_install": torch.npu.is_initialized(), "count_is_not_an_init": torch.npu.device_count()}
seen["still_not_initialised"] = torch.npu.is_initialized()
r, w = os.pipe()
pid = os.fork()
if pid == 0:  # forked before any initialisation: the child may use the NPU
    os.close(r)
    try:
        torch.npu.set_device(0)
        os.write(w, b"ok")
    except Exception as exc:
        os.write(w, f"{type(exc).__name__}: {exc}".encode())
    os._exit(0)
os.close(w)
os.waitpid(pid, 0)
seen["child_forked_before_init"] = os.read(r, 4096).decode()
torch.npu.get_device_properties(0)  # the front-end's question about device memory
seen["initialised_after_properties"] = torch.npu.is_initialized()
seen["inits"] = getattr(counters, "lazy_inits", None)
seen["initialised_by"] = getattr(counters, "initialised_by", None)
for what in ("set_device", "tensor"):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            torch.npu.set_device(0) if what == "set_device" else torch.ones(2, device="npu")
            os.write(w, b"ok")
        except Exception as exc:
            os.write(w, f"{type(exc).__name__}: {exc}".encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    seen[f"child_{what}"] = os.read(r, 4096).decode()
json.dump(seen, sys.stdout)
"""


def test_a_child_forked_after_the_npu_was_initialised_is_refused_as_torch_npu_refuses_it():
    done = run_python(FORK_SCRIPT, sim_env())
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    for what in ("set_device", "tensor"):
        assert seen[f"child_{what}"] == ("RuntimeError: Cannot re-initialize NPU in forked subprocess. To use NPU "
                                         "with multiprocessing, you must use the 'spawn' start method"), what
    assert seen["child_forked_before_init"] == "ok", "a child forked before any initialisation may use the NPU"
    assert seen["initialised_at_install"] is False and seen["still_not_initialised"] is False, \
        "installing and counting devices do not initialise the NPU"
    assert seen["initialised_after_properties"] is True and seen["inits"] == 1
    assert seen["initialised_by"].startswith("torch.npu.get_device_properties at ")


# -- hccl across two processes ------------------------------------------------------------------------

HCCL_SCRIPT = '''
import json, sys
import torch, torch.distributed as dist
import torch.multiprocessing as mp

def run(rank, path, out):
    from ascend_overlay.npu import sim
    sim.install()
    torch.npu.set_device(rank)
    dist.init_process_group("hccl", init_method=f"file://{path}", rank=rank, world_size=2)
    dev = torch.device("npu", rank)
    group = dist.new_group([0, 1], backend="hccl")
    x = torch.full((3,), float(rank + 1), device=dev)
    dist.all_reduce(x, group=group)
    gathered = torch.empty(4, device=dev)
    dist.all_gather_into_tensor(gathered, torch.full((2,), float(rank), device=dev), group=group)
    b = torch.full((2,), float(rank + 5), device=dev)
    dist.broadcast(b, src=1, group=group)
    rs = torch.empty(2, device=dev)
    dist.reduce_scatter_tensor(rs, torch.arange(4.0, device=dev) * (rank + 1), group=group)
    dist.barrier(group=group)
    try:
        dist.all_reduce(torch.ones(2), group=group)
        host = None
    except Exception as exc:
        host = str(exc)
    seen = {"backend": dist.get_backend(group), "all_reduce": x.cpu().tolist(), "gathered": gathered.cpu().tolist(),
            "broadcast": b.cpu().tolist(), "reduce_scatter": rs.cpu().tolist(), "device": str(x.device),
            "host_tensor": host}
    dist.destroy_process_group(group)
    dist.destroy_process_group()
    with open(f"{out}.{rank}", "w") as fh:
        json.dump(seen, fh)

if __name__ == "__main__":
    mp.spawn(run, args=(sys.argv[1], sys.argv[2]), nprocs=2)
'''


def test_hccl_carries_npu_collectives_between_processes(tmp_path: Path):
    script = tmp_path / "hccl_check.py"
    script.write_text(HCCL_SCRIPT)
    out = tmp_path / "rank"
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "store"), str(out)], env=sim_env(),
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads(Path(f"{out}.{r}").read_text()) for r in (0, 1)]
    for rank, seen in enumerate(ranks):
        assert seen["backend"] == "hccl" and seen["device"] == f"npu:{rank}"
        assert seen["all_reduce"] == [3.0, 3.0, 3.0]
        assert seen["gathered"] == [0.0, 0.0, 1.0, 1.0]
        assert seen["broadcast"] == [6.0, 6.0]
        assert "hccl: tensors must be on the npu device, got cpu" in seen["host_tensor"]
    # sum over ranks of arange(4) * (rank + 1) = [0, 3, 6, 9], scattered in halves
    assert ranks[0]["reduce_scatter"] == [0.0, 3.0] and ranks[1]["reduce_scatter"] == [6.0, 9.0]


# -- visibility ------------------------------------------------------------------------------------

def test_visible_devices_select_among_the_simulated_cards():
    """Cards 2 and 5 of the eight: the process sees two NPUs, and vLLM's mapping of local rank 1
    (physical card 5) lands on the second visible one, a device that exists."""
    code = """
        import torch
        from ascend_overlay.npu import sim
        sim.install()
        from ascend_overlay.npu.platform import NPUPlatform
        visible = NPUPlatform.logical_device_id_to_visible_device_id(1)
        print(torch.npu.device_count(), torch.accelerator.device_count(), NPUPlatform.device_id_to_physical_device_id(1),
              visible, torch.empty(1, device=f"npu:{visible}").device)
    """
    done = run_python(code, sim_env(ASCEND_RT_VISIBLE_DEVICES="2,5"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-5:] == ["2", "2", "5", "1", "npu:1"]


@pytest.mark.parametrize("value", ["8", "1,1", "a,b", "-1"])
def test_bad_visible_devices_are_refused_with_the_accepted_form(value):
    from ascend_overlay.npu import sim

    with pytest.raises(sim.SimulatorRefused, match=r"a comma list of distinct device ids in 0\.\.7"):
        sim.visible_device_count({"ASCEND_RT_VISIBLE_DEVICES": value})
