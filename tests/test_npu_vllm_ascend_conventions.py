"""The NPU path calls the attention kernels the way vllm-ascend, the reference NPU plugin, calls them:
same layout, sparse mode, mask, cache views and index dtypes; where it does not, docs/npu.md says why.

A pinned vllm-ascend release is fetched once from the package index (its wheel, read and never
imported: it needs CANN) and its call sites are read from their syntax trees next to ours
(``ascend_overlay/npu/attention.py``). Skipped, with pip's error as the reason, when the index is
unreachable. Pinned to 0.23.0, the newest release when this was written; a new pin is a new read of
its call sites, and the documented differences say what changed.
"""

from __future__ import annotations

import ast
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from ascend_overlay.main2main.sources import FetchError, fetch_wheel
from ascend_overlay.npu import attention

pytestmark = pytest.mark.network

VLLM_ASCEND = "0.23.0"
ATTENTION = "vllm_ascend/attention/attention_v1.py"
MASKS = "vllm_ascend/attention/attention_mask.py"
BLOCK_TABLE = "vllm_ascend/worker/block_table.py"
DEVICE_OP = "vllm_ascend/device/device_op.py"
ROTARY = "vllm_ascend/ops/rotary_embedding.py"
PLATFORM = "vllm_ascend/platform.py"
OURS = Path(attention.__file__)

# Where the NPU path departs from the pinned release, each explained in docs/npu.md under this text.
DOCUMENTED_DIFFERENCES = (
    "KV cache: one region per layer, read as key and value caches",
    "Cache write: `_npu_reshape_and_cache`, not `npu_scatter_pa_kv_cache`",
    "Rotary: `npu_mrope`, not `_npu_rotary_embedding`",
    "`rotary_mode=\"interleave\"`",
    "Device memory: asked only where the NPU is initialised",
)


@pytest.fixture(scope="module")
def theirs() -> dict[str, ast.Module]:
    try:
        wheel = fetch_wheel(VLLM_ASCEND, "vllm-ascend")
    except FetchError as exc:
        pytest.skip(f"cannot fetch vllm-ascend {VLLM_ASCEND} (registry unreachable?): {exc}")
    with zipfile.ZipFile(wheel) as archive:
        return {name: ast.parse(archive.read(name).decode("utf-8"))
                for name in (ATTENTION, MASKS, BLOCK_TABLE, DEVICE_OP, ROTARY, PLATFORM)}


@pytest.fixture(scope="module")
def ours() -> ast.Module:
    return ast.parse(OURS.read_text(encoding="utf-8"))


def calls_of(tree: ast.AST, name: str) -> list[ast.Call]:
    """Every call of an attribute or function named ``name`` (``torch_npu.name(...)``, ``npu.name(...)``)."""
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and (getattr(node.func, "attr", None) == name or getattr(node.func, "id", None) == name)]


def keywords(call: ast.Call) -> dict[str, ast.expr]:
    return {k.arg: k.value for k in call.keywords if k.arg is not None}


def constant(node: ast.expr, module: Any = None) -> Any:
    """A literal, or a module-level constant of ``module`` named by the expression."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and module is not None:
        return getattr(module, node.id)
    raise AssertionError(f"not a constant: {ast.unparse(node)}")


def _their_causal_fia(theirs: dict[str, ast.Module]) -> ast.Call:
    """vllm-ascend's FIA call for causal attention without sliding window or sinks: TND, sparse_mode 3."""
    found = [c for tree in (theirs[ATTENTION],) for c in calls_of(tree, "npu_fused_infer_attention_score")
             if isinstance(keywords(c).get("sparse_mode"), ast.Constant) and keywords(c)["sparse_mode"].value == 3
             and "pre_tokens" not in keywords(c)]
    assert found, "vllm-ascend's causal FIA call moved: read its attention_v1.py again"
    return found[0]


def test_fused_attention_layout_sparse_mode_and_arguments_are_vllm_ascends(theirs, ours):
    their_call = keywords(_their_causal_fia(theirs))
    (our_call,) = calls_of(ours, "npu_fused_infer_attention_score")
    mine = keywords(our_call)
    assert constant(their_call["input_layout"]) == constant(mine["input_layout"]) == "TND"
    assert constant(their_call["sparse_mode"]) == constant(mine["sparse_mode"], attention) == 3
    shared = {"atten_mask", "block_table", "input_layout", "block_size", "actual_seq_lengths",
              "actual_seq_lengths_kv", "num_key_value_heads", "num_heads", "scale", "sparse_mode"}
    assert shared <= set(their_call), f"vllm-ascend's call changed: {sorted(their_call)}"
    assert set(mine) == shared, f"ours passes {sorted(mine)}"


def test_the_causal_mask_is_vllm_ascends(theirs):
    """Their mask expression (``torch.triu(torch.ones(2048, 2048), diagonal=1).to(torch.int8)``, then
    moved to the device) evaluated with torch alone, against ours, element by element."""
    triu = [c for c in calls_of(theirs[MASKS], "triu") if len(c.args) == 1 and isinstance(c.args[0], ast.Call)
            and getattr(c.args[0].func, "attr", None) == "ones" and len(c.args[0].args) == 2]
    assert triu, "vllm-ascend's split-fuse mask moved: read its attention_mask.py again"
    cast = next(node for node in ast.walk(theirs[MASKS]) if isinstance(node, ast.Call)
                and getattr(node.func, "attr", None) == "to" and node.func.value is triu[0])
    expression = ast.unparse(cast)
    assert "self" not in expression
    theirs_mask = eval(compile(ast.Expression(cast), MASKS, "eval"), {"__builtins__": {}, "torch": torch})  # noqa: S307
    ours_mask = attention.causal_mask()
    assert ours_mask.dtype == theirs_mask.dtype == torch.int8
    assert torch.equal(ours_mask, theirs_mask), expression


def test_the_cache_views_are_vllm_ascends(theirs, ours):
    """FIA reads each cache as ``[blocks, block_size, kv_heads * head_size]``: a view of the 4-D
    ``[blocks, block_size, kv_heads, head_size]`` cache, as vllm-ascend's ``_get_fia_params`` makes it."""
    def views(tree: ast.AST) -> list[str]:
        return [ast.unparse(c) for c in calls_of(tree, "view") if len(c.args) == 3
                and isinstance(c.args[2], ast.UnaryOp) and constant(c.args[2].operand) == 1]
    assert any("key_cache.view(num_block, block_size, -1)" in v for v in views(theirs[ATTENTION]))
    assert "key_cache.view(num_blocks, block_size, -1)" in views(ours)
    key_cache, value_cache = attention.paged_caches(torch.zeros(3, 2, 128, 2 * 64), num_kv_heads=2, head_size=64)
    assert key_cache.shape == value_cache.shape == (3, 128, 2, 64) and key_cache.is_contiguous()


def test_index_dtypes_are_vllm_ascends(theirs, ours):
    """vllm-ascend keeps its slot mapping and block table as int32 buffers; ours casts vLLM's int64
    slots to int32 once per step, and vLLM's block table is int32 already."""
    buffers = {}
    for node in ast.walk(theirs[BLOCK_TABLE]):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                and getattr(node.value.func, "attr", None) == "_make_buffer":
            target = ast.unparse(node.targets[0])
            buffers[target] = ast.unparse(keywords(node.value).get("dtype", ast.Constant(None)))
    assert buffers.get("self.slot_mapping") == "torch.int32" and buffers.get("self.block_table") == "torch.int32"
    (build,) = [n for n in ast.walk(ours) if isinstance(n, ast.FunctionDef) and n.name == "build"]
    (slots,) = [k.value for k in ast.walk(build) if isinstance(k, ast.keyword) and k.arg == "slot_indices"]
    assert ast.unparse(slots).endswith(".to(torch.int32)") and "num_actual_tokens" in ast.unparse(slots)
    from vllm.v1.worker.block_table import BlockTable

    table = BlockTable(block_size=128, max_num_reqs=2, max_num_blocks_per_req=4, max_num_batched_tokens=16,
                       pin_memory=False, device=torch.device("cpu"), cp_kv_cache_interleave_size=1)
    assert table.block_table.gpu.dtype == torch.int32, "vLLM's block table: handed to the kernels as is"
    assert table.slot_mapping.gpu.dtype == torch.int64, "vLLM's slot mapping: why ours casts"


def test_paged_attention_and_cache_write_take_vllm_ascends_keywords(theirs, ours):
    (their_paged,) = [c for c in calls_of(theirs[ATTENTION], "_npu_paged_attention") if "out" in keywords(c)
                      and "workspace" not in keywords(c)][:1]
    (our_paged,) = calls_of(ours, "_npu_paged_attention")
    assert set(keywords(our_paged)) == set(keywords(their_paged))
    (their_write,) = calls_of(theirs[DEVICE_OP], "_npu_reshape_and_cache")
    (our_write,) = calls_of(ours, "_npu_reshape_and_cache")
    assert set(keywords(our_write)) == set(keywords(their_write)) == {"key", "value", "key_cache", "value_cache",
                                                                     "slot_indices"}
    # Both cut the step's padding: vllm-ascend slices slots and keys to num_actual_tokens at the call.
    their_slots = [ast.unparse(keywords(c)["slot_mapping"]) for c in calls_of(theirs[ATTENTION], "reshape_and_cache")
                   if "slot_mapping" in keywords(c)]
    assert any("num_actual_tokens" in s for s in their_slots), their_slots
    assert ast.unparse(keywords(our_write)["key"]) == "key[:tokens]"


def test_the_differences_are_documented(theirs, repo):
    """Each departure is still a departure (else its explanation is stale) and docs/npu.md explains it."""
    assert calls_of(theirs[ATTENTION], "npu_scatter_pa_kv_cache"), "their main cache write"
    assert calls_of(theirs[ROTARY], "_npu_rotary_embedding"), "their rotary kernel in this release"
    their_memory = [n for n in ast.walk(theirs[PLATFORM]) if isinstance(n, ast.FunctionDef)
                    and n.name == "get_device_total_memory"]
    assert their_memory and any(isinstance(n, ast.Raise) for n in ast.walk(their_memory[0]))
    docs = (repo / "docs" / "npu.md").read_text(encoding="utf-8")
    missing = [text for text in DOCUMENTED_DIFFERENCES if text not in docs]
    assert not missing, f"docs/npu.md does not explain: {missing}"
