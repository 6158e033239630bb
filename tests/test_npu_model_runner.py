"""The pieces that keep vLLM's GPU model runner off CUDA on an NPU: the scoped redirection of
``torch.cuda``'s stream/event API to ``torch.npu``, and the slot-mapping kernel vLLM launches with
Triton, replaced by tensor operations.

The redirection is checked with a stand-in for ``torch.npu`` (a namespace of marker objects): which
object ``torch.cuda.Stream`` is, inside and outside the runner's calls, is all it changes.
"""

from __future__ import annotations

import threading
import types

import pytest
import torch

from ascend_overlay.npu import model_runner, triton_overrides


@pytest.fixture
def npu_module(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    names = {name: type(f"Npu{name}", (), {}) for name in model_runner._CUDA_NAMES}
    fake = types.SimpleNamespace(**names)
    monkeypatch.setattr(torch, "npu", fake, raising=False)
    return fake


def test_cuda_stream_and_event_calls_reach_torch_npu_inside_and_are_restored_after(npu_module):
    before = {name: torch.cuda.__dict__.get(name) for name in model_runner._CUDA_NAMES}
    event_before = torch.Event
    with model_runner.cuda_calls_on_npu():
        for name in model_runner._CUDA_NAMES:
            assert getattr(torch.cuda, name) is getattr(npu_module, name), name
        assert torch.Event is npu_module.Event
        with model_runner.cuda_calls_on_npu():  # the runner's calls nest
            assert torch.cuda.Stream is npu_module.Stream
        assert torch.cuda.Stream is npu_module.Stream, "leaving a nested call must not restore early"
    assert {name: torch.cuda.__dict__.get(name) for name in model_runner._CUDA_NAMES} == before
    assert torch.Event is event_before


def test_the_redirection_is_undone_when_the_call_raises(npu_module):
    stream_before = torch.cuda.Stream
    with pytest.raises(RuntimeError, match="boom"), model_runner.cuda_calls_on_npu():
        raise RuntimeError("boom")
    assert torch.cuda.Stream is stream_before


def test_concurrent_callers_keep_the_redirection_until_the_last_leaves(npu_module):
    inside, release = threading.Event(), threading.Event()

    def other_caller():
        with model_runner.cuda_calls_on_npu():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=other_caller)
    thread.start()
    inside.wait(10)
    with model_runner.cuda_calls_on_npu():
        pass
    assert torch.cuda.Stream is npu_module.Stream, "another caller is still inside"
    release.set()
    thread.join(10)
    assert torch.cuda.Stream is not npu_module.Stream


def test_the_runner_is_vllms_gpu_runner_with_its_entry_points_wrapped():
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    assert issubclass(model_runner.NPUModelRunner, GPUModelRunner)
    for name in ("__init__", "load_model", "profile_run", "_dummy_run", "_dummy_sampler_run",
                 "initialize_kv_cache", "execute_model", "sample_tokens"):
        assert name in model_runner.NPUModelRunner.__dict__, name
        assert callable(getattr(GPUModelRunner, name)), f"vLLM no longer has GPUModelRunner.{name}"


# -- slot mapping -------------------------------------------------------------------------------------

def _slot_mapping_by_hand(query_start_loc, positions, block_table, block_size):
    slots = []
    for req in range(len(query_start_loc) - 1):
        for t in range(query_start_loc[req], query_start_loc[req + 1]):
            pos = positions[t]
            slots.append(block_table[req][pos // block_size] * block_size + pos % block_size)
    return slots


def test_slot_mapping_equals_the_triton_kernels_definition():
    block_size, stride, max_tokens = 4, 5, 16
    query_start_loc = [0, 3, 4, 9]                  # a chunk, a decode, a prefill
    positions = [5, 6, 7, 12, 0, 1, 2, 3, 4]
    block_table = torch.randint(0, 50, (6, stride), generator=torch.Generator().manual_seed(0), dtype=torch.int32)
    slot_mapping = torch.full((max_tokens,), 12345, dtype=torch.int64)
    triton_overrides.compute_slot_mapping(
        len(positions), max_tokens, torch.tensor(query_start_loc, dtype=torch.int32),
        torch.tensor(positions, dtype=torch.int64), block_table, stride, slot_mapping, block_size)
    expected = _slot_mapping_by_hand(query_start_loc, positions, block_table.tolist(), block_size)
    assert slot_mapping[:len(positions)].tolist() == expected
    assert slot_mapping[len(positions):].tolist() == [-1] * (max_tokens - len(positions)), "the rest is padding"


def test_slot_mapping_refuses_context_parallelism():
    with pytest.raises(NotImplementedError, match="context parallelism"):
        triton_overrides.compute_slot_mapping(1, 1, torch.tensor([0, 1]), torch.tensor([0]),
                                              torch.zeros(1, 1, dtype=torch.int32), 1,
                                              torch.zeros(1, dtype=torch.int64), 4, TOTAL_CP_WORLD_SIZE=2)


def test_the_override_names_a_kernel_vllm_has_and_takes_its_arguments():
    import importlib
    import inspect

    from vllm.triton_utils.dispatcher import _kernel_arg_names  # how vLLM itself reads them

    module_name, cls_name, attr = triton_overrides.SLOT_MAPPING_KERNEL.rsplit(".", 2)
    kernel = getattr(getattr(importlib.import_module(module_name), cls_name), attr)
    ours = tuple(inspect.signature(triton_overrides.compute_slot_mapping).parameters)
    assert ours == _kernel_arg_names(kernel), "vLLM forwards the launch arguments by these names"
