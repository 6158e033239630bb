"""Observations of the simulated NPU, made in a fresh interpreter (run by tests/test_npu_sim_device.py).

Installing the simulated device is permanent for a process (torch's PrivateUse1 backend can be
named once), so the tests cannot install it in pytest's own process. This script installs it,
exercises it, and writes what it saw (values, types, error messages, tensors) for the tests to
judge; it asserts nothing itself. Usage: ``python npu_sim_probe.py OUT_DIR``.
"""

from __future__ import annotations

import gc
import json
import pickle
import sys
import traceback
from pathlib import Path
from typing import Any

import torch


def error_of(fn) -> str | None:
    try:
        fn()
    except Exception as exc:  # the message is the observation
        return f"{type(exc).__name__}: {exc}"
    return None


def tensors() -> dict[str, Any]:
    x = torch.arange(12, dtype=torch.float32).view(3, 4)
    a = x.to("npu")
    view = a[:, 1:3]
    view.mul_(10)  # an in-place op on a view must be seen by its base
    made = torch.zeros(2, 2, device="npu")
    param = torch.nn.Parameter(torch.ones(3, device="npu"), requires_grad=False)
    lin = torch.nn.Linear(4, 2)
    with torch.device("npu"):
        lin_npu = torch.nn.Linear(4, 2)
    lin_npu.load_state_dict(lin.state_dict())
    grown = torch.arange(5, device="npu")  # an out= op that resizes its output
    return {
        "type": type(a).__name__, "device": str(a.device), "device_type": a.device.type,
        "is_cuda": a.is_cuda, "is_npu": a.is_npu, "cpu_type": type(a.cpu()).__name__,
        "base_after_view_mul": a.cpu().tolist(), "expected_base": torch.cat(
            [x[:, :1], x[:, 1:3] * 10, x[:, 3:]], dim=1).tolist(),
        "zeros": made.cpu().tolist(), "zeros_device": str(made.device),
        "param_is_parameter": isinstance(param, torch.nn.Parameter), "param_device": str(param.device),
        "linear_max_diff": float((lin_npu(x.to("npu")).cpu() - lin(x)).abs().max()),
        "linear_device": str(lin_npu.weight.device),
        "tensor_from_data": torch.tensor([[1, 2], [3, 4]], device="npu").cpu().tolist(),
        "arange": grown.cpu().tolist(), "arange_shape": list(grown.shape),
        "item": a.sum().item(), "tolist": a[0].tolist(),
        "numpy_error": error_of(lambda: a.numpy()),
        "pickled": (lambda t: (str(t.device), t.cpu().tolist()))(pickle.loads(pickle.dumps(a[0]))),
        "to_other_npu": (lambda t: (str(t.device), t.cpu().tolist()))(a[0].to("npu:1")),
    }


def refusals() -> dict[str, Any]:
    a = torch.ones(4, device="npu")
    lib = torch.library.Library("npu_sim_probe", "DEF")
    lib.define("host_only(Tensor x) -> Tensor")
    lib.impl("host_only", lambda x: x + 1, "CPU")
    return {
        "mixed_with_cpu": error_of(lambda: a + torch.ones(4)),
        "cpu_scalar_tensor_ok": error_of(lambda: a * torch.tensor(2.0)),
        "mixed_devices": error_of(lambda: a + torch.ones(4, device="npu:1")),
        "op_without_npu_kernel": error_of(lambda: torch.ops.npu_sim_probe.host_only(a)),
        "op_without_npu_kernel_on_cpu": torch.ops.npu_sim_probe.host_only(torch.ones(1)).tolist(),
        "kernel_on_cpu_tensor": error_of(lambda: __import__("torch_npu").npu_swiglu(torch.ones(2, 4))),
    }


def device_module() -> dict[str, Any]:
    npu = torch.npu
    before = npu.current_device()
    npu.set_device(1)
    bare = torch.empty(1, device="npu")
    npu.set_device(before)
    stream, event = npu.Stream(), npu.Event(blocking=True)
    event.record()
    event.synchronize()
    plain = torch.Event()
    plain.record()
    plain.synchronize()
    with npu.stream(stream):
        inside = npu.current_stream() == stream
    g = torch.Generator(device="npu")
    w = torch.empty(4, device="npu")
    w.uniform_(0, 1, generator=g.manual_seed(7))
    first = w.cpu().tolist()
    w.uniform_(0, 1, generator=g.manual_seed(7))
    npu.manual_seed_all(3)
    r1 = torch.randn(3, device="npu").cpu().tolist()
    npu.manual_seed_all(3)
    r2 = torch.randn(3, device="npu").cpu().tolist()
    return {
        "available": npu.is_available(), "count": npu.device_count(),
        "accelerator_count": torch.accelerator.device_count(),
        "bare_device_after_set_device_1": str(bare.device), "current_after_restore": npu.current_device(),
        "name": npu.get_device_name(0), "total_memory": npu.get_device_properties(0).total_memory,
        "event_query": event.query(), "plain_event_query": plain.query(), "stream_inside": inside,
        "stream_device": str(stream.device), "synchronize": error_of(lambda: (npu.synchronize(),
                                                                                torch.accelerator.synchronize())),
        "generator_is_generator": isinstance(g, torch.Generator),
        "default_generator_is_generator": isinstance(torch.default_generator, torch.Generator),
        "seeded_uniform_repeats": first == w.cpu().tolist(), "seeded_randn_repeats": r1 == r2,
        "bad_device": error_of(lambda: torch.empty(1, device="npu:99")),
    }


def memory() -> dict[str, Any]:
    npu = torch.npu
    gc.collect()
    base = npu.memory_allocated()
    npu.reset_peak_memory_stats()
    block = torch.empty(2**20, dtype=torch.uint8, device="npu")
    view = block[10:]
    held = npu.memory_allocated() - base
    free, total = npu.mem_get_info()
    used = npu.memory_allocated()
    accelerator_info = list(torch.accelerator.get_memory_info())
    stats = torch.accelerator.memory_stats()
    del block
    gc.collect()
    still_held_by_view = npu.memory_allocated() - base
    del view
    gc.collect()
    return {
        "held": held, "held_by_view": still_held_by_view, "after_free": npu.memory_allocated() - base,
        "peak": npu.max_memory_allocated() - base, "free_plus_used": free + used, "total": total,
        "accelerator_info": accelerator_info, "npu_info": [free, total],
        "stats_current_minus_base": stats["allocated_bytes.all.current"] - base,
        "reserved_equals_allocated": torch.accelerator.memory_reserved() == torch.accelerator.memory_allocated(),
        "empty_cache": error_of(torch.accelerator.empty_cache),
    }


def kernels_and_counters(out: Path) -> dict[str, Any]:
    import torch_npu

    from ascend_overlay.npu.sim.counters import counters, read_counts

    x = torch.randn(2, 8, device="npu")
    y = torch_npu.npu_swiglu(x)
    y2, rstd = torch_npu.npu_rms_norm(x, torch.ones(8, device="npu"))
    counters.flush()
    return {
        "module_file": torch_npu.__file__, "simulated": torch_npu.SIMULATED, "version": torch_npu.__version__,
        "torch_npu_npu_is_torch_npu": torch_npu.npu is torch.npu,
        "result_devices": [str(t.device) for t in (y, y2, rstd)],
        "in_memory": counters.snapshot(), "on_disk": {str(k): v for k, v in read_counts(out / "stats").items()},
    }


def attention_backend(out: Path) -> dict[str, Any]:
    """The NPU attention backend on a mixed batch, through vLLM's own metadata types and forward
    context, in bfloat16 with vLLM's int64 slot mapping padded with -1; inputs and outputs are saved
    for the test to compare with its reference."""
    import types

    from vllm.config import VllmConfig, set_current_vllm_config
    from vllm.forward_context import set_forward_context
    from vllm.v1.attention.backend import CommonAttentionMetadata

    from ascend_overlay.npu.attention import NPUAttentionBackend, NPUAttentionImpl, NPUAttentionMetadataBuilder

    dtype = torch.bfloat16
    block, kv_heads, heads, head, num_blocks = 128, 2, 4, 64, 6
    prior = [0, 5, 9]   # tokens already in the cache per sequence
    new = [7, 3, 1]     # tokens computed this step: a prefill, a chunk with context, a decode
    g = torch.Generator().manual_seed(0)
    total_len = [p + n for p, n in zip(prior, new, strict=True)]
    keys = [torch.randn(n, kv_heads, head, generator=g).to(dtype) for n in total_len]
    values = [torch.randn(n, kv_heads, head, generator=g).to(dtype) for n in total_len]
    query = torch.randn(sum(new), heads, head, generator=g).to(dtype)
    block_table = torch.tensor([[4], [1], [3]], dtype=torch.int32)
    layer = types.SimpleNamespace(layer_name="layer")
    config = VllmConfig()
    padding = 2  # vLLM pads a batch's slot mapping with -1 (DP, graph sizes): never written

    def metadata(builder, rows: list[int], query_lens: list[int], context: list[int]):
        """vLLM's metadata of a step over the sequences ``rows`` of the block table."""
        starts = [0]
        for n in query_lens:
            starts.append(starts[-1] + n)
        seq_lens = torch.tensor(context, dtype=torch.int32)
        tokens = sum(query_lens)
        slots = [int(block_table[row, t // block]) * block + t % block
                 for row, n, total in zip(rows, query_lens, context, strict=True) for t in range(total - n, total)]
        slot_mapping = torch.tensor(slots + [-1] * padding, dtype=torch.int64, device="npu")
        common = CommonAttentionMetadata(
            query_start_loc=torch.tensor(starts, dtype=torch.int32, device="npu"),
            query_start_loc_cpu=torch.tensor(starts, dtype=torch.int32), seq_lens=seq_lens.to("npu"),
            num_reqs=len(query_lens), num_actual_tokens=tokens, max_query_len=max(query_lens),
            max_seq_len=max(context), block_table_tensor=block_table[rows].to("npu"), slot_mapping=slot_mapping,
            seq_lens_cpu_upper_bound=seq_lens)
        return builder.build(0, common), slot_mapping

    with set_current_vllm_config(config):
        impl = NPUAttentionImpl(heads, head, head ** -0.5, kv_heads)
        builder = NPUAttentionMetadataBuilder(None, ["layer"], config, torch.device("npu", 0))
        kv_cache = torch.zeros(num_blocks, kv_heads, block, 2 * head, dtype=dtype, device="npu")
        # A dummy run (no metadata, every slot -1) writes nothing.
        with set_forward_context(None, config):
            impl.do_kv_cache_update(layer, keys[0][:3].to("npu"), values[0][:3].to("npu"), kv_cache,
                                    torch.full((3,), -1, dtype=torch.int64, device="npu"))
        dummy_wrote = bool(kv_cache.cpu().abs().sum() != 0)
        # The prior tokens go in first (an earlier step), then this step's tokens with the forward pass.
        earlier = [i for i, p in enumerate(prior) if p]
        prior_meta, prior_slots = metadata(builder, earlier, [prior[i] for i in earlier], [prior[i] for i in earlier])
        prior_keys = torch.cat([k[:p] for k, p in zip(keys, prior, strict=True) if p]).to("npu")
        prior_values = torch.cat([v[:p] for v, p in zip(values, prior, strict=True) if p]).to("npu")
        with set_forward_context({"layer": prior_meta}, config):
            impl.do_kv_cache_update(layer, torch.cat([prior_keys, prior_keys[:padding]]),
                                    torch.cat([prior_values, prior_values[:padding]]), kv_cache, prior_slots)
        mixed, slots = metadata(builder, [0, 1, 2], new, total_len)
        step_keys = torch.cat([k[p:] for k, p in zip(keys, prior, strict=True)]).to("npu")
        step_values = torch.cat([v[p:] for v, p in zip(values, prior, strict=True)]).to("npu")
        output = torch.full((sum(new) + padding, heads, head), float("nan"), dtype=dtype, device="npu")
        with set_forward_context({"layer": mixed}, config):
            impl.do_kv_cache_update(layer, torch.cat([step_keys, step_keys[:padding]]),
                                    torch.cat([step_values, step_values[:padding]]), kv_cache, slots)
            impl.forward(layer, torch.cat([query, query[:padding]]).to("npu"), None, None, kv_cache, mixed, output)
        # A pure decode batch of the last token of each sequence goes to paged attention.
        decode_q = torch.randn(3, heads, head, generator=g).to(dtype)
        decode, _ = metadata(builder, [0, 1, 2], [1, 1, 1], total_len)
        decode_out = torch.full((3, heads, head), float("nan"), dtype=dtype, device="npu")
        with set_forward_context({"layer": decode}, config):
            impl.forward(layer, decode_q.to("npu"), None, None, kv_cache, decode, decode_out)
    torch.save({"keys": keys, "values": values, "query": query, "new": new, "output": output.cpu()[: sum(new)],
                "decode_query": decode_q, "decode_output": decode_out.cpu(), "scale": head ** -0.5},
               out / "attention.pt")
    from ascend_overlay.npu.sim.counters import counters

    return {"mixed_decode_only": mixed.decode_only, "decode_decode_only": decode.decode_only,
            "slot_dtype": str(mixed.slot_indices.dtype), "slot_count": int(mixed.slot_indices.shape[0]),
            "dummy_run_wrote": dummy_wrote, "written_blocks": sorted(  # blocks as the kernels read the region
                int(b) for b in (kv_cache.cpu().view(2, num_blocks, block, kv_heads, head).abs().sum(dim=(0, 2, 3, 4))
                                 != 0).nonzero().flatten()),
            "backend_name": NPUAttentionBackend.get_name(), "counts": counters.snapshot(),
            "refused": error_of(lambda: NPUAttentionImpl(heads, head, 1.0, kv_heads, sliding_window=128)),
            "refused_head_size": error_of(lambda: NPUAttentionImpl(heads, 24, 1.0, kv_heads))}


def kernel_refusals() -> dict[str, Any]:
    """What a card refuses, called through the torch_npu stand-in with NPU tensors, as the NPU path
    would call it: each value is the error the call raised (None: it was accepted)."""
    import torch_npu

    bf16 = torch.bfloat16
    cache = torch.zeros(4, 128, 2, 64, dtype=bf16, device="npu")
    key = torch.ones(3, 2, 64, dtype=bf16, device="npu")
    slots32 = torch.tensor([0, 1, 2], dtype=torch.int32, device="npu")
    table = torch.tensor([[0]], dtype=torch.int32, device="npu")
    mask = torch.ones(2048, 2048, dtype=torch.int8).triu(1).to("npu")

    def fia(query: torch.Tensor, kv: torch.Tensor, heads: int = 4) -> Any:
        return torch_npu.npu_fused_infer_attention_score(
            query, kv, kv, atten_mask=mask, block_table=table, input_layout="TND", block_size=128,
            actual_seq_lengths=[query.shape[0]], actual_seq_lengths_kv=[query.shape[0]], num_key_value_heads=2,
            num_heads=heads, scale=0.125, sparse_mode=3)

    return {
        "int64_slots": error_of(lambda: torch_npu._npu_reshape_and_cache(
            key=key, value=key, key_cache=cache, value_cache=cache, slot_indices=slots32.long())),
        "negative_slot": error_of(lambda: torch_npu._npu_reshape_and_cache(
            key=key, value=key, key_cache=cache, value_cache=cache,
            slot_indices=torch.tensor([0, 1, -1], dtype=torch.int32, device="npu"))),
        "int32_slots": error_of(lambda: torch_npu._npu_reshape_and_cache(
            key=key, value=key, key_cache=cache, value_cache=cache, slot_indices=slots32)),
        "float32_attention": error_of(lambda: fia(torch.ones(3, 4, 64, device="npu"),
                                                  torch.zeros(4, 128, 128, device="npu"))),
        "head_size_24": error_of(lambda: fia(torch.ones(3, 4, 24, dtype=bf16, device="npu"),
                                             torch.zeros(4, 128, 48, dtype=bf16, device="npu"))),
        "bf16_attention": error_of(lambda: fia(torch.ones(3, 4, 64, dtype=bf16, device="npu"),
                                               torch.zeros(4, 128, 128, dtype=bf16, device="npu"))),
    }


def main() -> None:
    out = Path(sys.argv[1])
    from ascend_overlay.npu import npu_mode, sim

    before = npu_mode()
    sim.install()
    results: dict[str, Any] = {"mode_before": before, "mode_after": npu_mode()}
    for name, probe in [("tensors", tensors), ("refusals", refusals), ("device_module", device_module),
                        ("memory", memory), ("kernels", lambda: kernels_and_counters(out)),
                        ("attention", lambda: attention_backend(out)), ("kernel_refusals", kernel_refusals)]:
        try:
            results[name] = probe()
        except Exception:
            results[name] = {"probe_failed": traceback.format_exc()}
    (out / "observations.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
