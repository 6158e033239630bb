"""Each simulated kernel call's inputs and outputs, saved for comparison with vLLM's own path.

A kernel's result is only worth trusting where it agrees with what vLLM computes without it, on the
activations a real request produces. With ``VLLM_ASCEND_OVERLAY_SIMULATE_NPU_CAPTURE=DIR`` every
process writes each kernel call as ``DIR/kernels-<pid>/<sequence>-<kernel>.pt`` (a dict of CPU
tensors and values), at most ``LIMIT`` calls per process; without the variable nothing is recorded
and a call costs one global lookup. What is kept per kernel is what a comparison needs: the inputs,
the outputs, and for the cache and attention kernels the cache rows they wrote or read (gathered
per sequence, never the whole cache).
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("ascend_overlay")

LIMIT = 4000  # calls per process: a few requests of a small model, bounded disk use for a long run

Snapshot = Callable[[Mapping[str, Any]], dict[str, Any]]


def _copy(value: Any) -> Any:
    """A saved tensor owns its memory: a view would save its whole storage (a layer's KV cache)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (list, tuple)):
        return [_copy(v) for v in value]
    return value


def _gather(cache: torch.Tensor, blocks: torch.Tensor, length: int) -> torch.Tensor:
    block_size = cache.shape[1]
    count = -(-length // block_size)
    return cache[blocks[:count].long()].reshape(count * block_size, *cache.shape[2:])[:length].clone()


def _attention_inputs(args: Mapping[str, Any], key: str, value: str, lengths: list[int]) -> dict[str, Any]:
    """Each sequence's cached keys and values as the kernel reads them (``[length, kv_heads, head]``)."""
    k_cache, v_cache, table = args[key], args[value], args["block_table"]
    if k_cache.dim() == 3:  # FIA's [blocks, block_size, kv_heads * head] view
        heads = int(args["num_key_value_heads"]) or int(args["num_heads"])
        k_cache = k_cache.view(*k_cache.shape[:2], heads, -1)
        v_cache = v_cache.view(*v_cache.shape[:2], heads, -1)
    return {"keys": [_gather(k_cache, table[i], n) for i, n in enumerate(lengths)],
            "values": [_gather(v_cache, table[i], n) for i, n in enumerate(lengths)]}


def _plain(*names: str) -> Snapshot:
    def snapshot(args: Mapping[str, Any]) -> dict[str, Any]:
        return {name: _copy(args.get(name)) for name in names}
    return snapshot


def _paged_before(args: Mapping[str, Any]) -> dict[str, Any]:
    lengths = [int(n) for n in args["context_lens"].tolist()]
    return {"query": _copy(args["query"]), "scale": float(args["scale_value"]), "seq_lens": lengths,
            **_attention_inputs(args, "key_cache", "value_cache", lengths)}


def _fia_before(args: Mapping[str, Any]) -> dict[str, Any]:
    lengths = [int(n) for n in args["actual_seq_lengths_kv"]]
    return {"query": _copy(args["query"]), "scale": float(args["scale"]), "seq_lens": lengths,
            "query_ends": [int(n) for n in args["actual_seq_lengths"]], "sparse_mode": int(args["sparse_mode"]),
            **_attention_inputs(args, "key", "value", lengths)}


def _written_rows(args: Mapping[str, Any]) -> dict[str, Any]:
    slots = args["slot_indices"].long()
    return {"written_key": args["key_cache"].view(-1, *args["key_cache"].shape[2:])[slots].clone(),
            "written_value": args["value_cache"].view(-1, *args["value_cache"].shape[2:])[slots].clone()}


# kernel -> (what to keep before the call, what to keep after it from its arguments)
_BEFORE: dict[str, Snapshot] = {
    "npu_swiglu": _plain("self", "dim"),
    "npu_rms_norm": _plain("self", "gamma", "epsilon"),
    "npu_add_rms_norm": _plain("x1", "x2", "gamma", "epsilon"),
    "npu_mrope": _plain("positions", "query", "key", "cos_sin_cache", "head_size", "rotary_mode"),
    "_npu_rotary_embedding": _plain("positions", "query", "key", "cos_sin_cache", "head_size", "is_neox_style"),
    "_npu_reshape_and_cache": _plain("key", "value", "slot_indices"),
    "_npu_paged_attention": _paged_before,
    "npu_fused_infer_attention_score": _fia_before,
}
_AFTER: dict[str, Snapshot] = {
    "_npu_rotary_embedding": lambda args: {"query_out": _copy(args["query"]), "key_out": _copy(args["key"])},
    "_npu_reshape_and_cache": _written_rows,
    "_npu_paged_attention": lambda args: {"out": _copy(args["out"])},
}


class Recording:
    """One call being recorded: its inputs are kept before the kernel runs (in-place kernels change them)."""

    def __init__(self, recorder: Recorder, kernel: str, sequence: int, before: dict[str, Any]) -> None:
        self.recorder, self.kernel, self.sequence, self.before = recorder, kernel, sequence, before

    def finish(self, args: Mapping[str, Any], result: Any) -> None:
        after = _AFTER.get(self.kernel)
        record = {"kernel": self.kernel, "sequence": self.sequence, "inputs": self.before,
                  "outputs": after(args) if after else {}, "result": _copy(result)}
        self.recorder.save(self, record)


class Recorder:
    def __init__(self, directory: Path) -> None:
        self.directory = directory / f"kernels-{os.getpid()}"
        self.directory.mkdir(parents=True, exist_ok=True)
        self._numbers = itertools.count()
        self._lock = threading.Lock()
        self.full = False

    def begin(self, kernel: str, args: Mapping[str, Any]) -> Recording | None:
        with self._lock:
            sequence = next(self._numbers)
        if sequence >= LIMIT:
            if not self.full:
                self.full = True
                log.warning("ascend-overlay: simulated NPU capture stopped after %d kernel calls in this process",
                            LIMIT)
            return None
        return Recording(self, kernel, sequence, _BEFORE[kernel](args))

    def save(self, recording: Recording, record: dict[str, Any]) -> None:
        target = self.directory / f"{recording.sequence:06d}-{recording.kernel}.pt"
        staging = target.with_suffix(".tmp")
        torch.save(record, staging)
        os.replace(staging, target)


_recorder: Recorder | None = None


def start(directory: str | None) -> None:
    """Record every kernel call of this process under ``directory`` (no-op without one)."""
    global _recorder
    if directory and _recorder is None:
        _recorder = Recorder(Path(directory))
        os.register_at_fork(after_in_child=_restart_in_child)


def _restart_in_child() -> None:
    """A forked child records under its own pid, numbering from zero."""
    global _recorder
    if _recorder is not None:
        _recorder = Recorder(_recorder.directory.parent)


def begin(kernel: str, args: Mapping[str, Any]) -> Recording | None:
    recorder = _recorder
    return None if recorder is None else recorder.begin(kernel, args)


def read(directory: str | os.PathLike[str]) -> dict[int, list[dict[str, Any]]]:
    """Every recorded call per process id, in call order."""
    found: dict[int, list[dict[str, Any]]] = {}
    for folder in sorted(Path(directory).glob("kernels-*")):
        calls = [torch.load(path, weights_only=False) for path in sorted(folder.glob("*.pt"))]
        found[int(folder.name.split("-", 1)[1])] = calls
    return found
