"""The contracts of the torch_npu kernels the NPU path calls, as the simulated NPU enforces them.

The simulator exists so that a test here fails where a card would fail. Each rule below is one thing
a real kernel refuses (a dtype, an index dtype or range, a shape limit, contiguity, an identical-dtype
rule), with the public source it was read from. Every simulated kernel call is checked against its
kernel's rules before it computes, in every run (there is no permissive mode); a broken rule raises
what torch_npu raises for it, a ``RuntimeError`` (op-plugin's ``TORCH_CHECK`` and the meta kernels'
``torch._check`` both raise that class), whose message names the argument, what the kernel takes,
what it got, torch_npu's error code, and the rule.

``docs/npu.md`` shows this table (``contract_table_markdown``); a test keeps the two equal.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

_HALF = (torch.float16, torch.bfloat16)
_FLOATS = (torch.float16, torch.bfloat16, torch.float32)
_MASK_SIZE = 2048


class ErrCode(enum.Enum):
    """torch_npu's error codes (``torch_npu/utils/_error_code.py``): the tail of its messages."""

    PARAM = (1, "invalid parameter")
    TYPE = (2, "invalid type")
    VALUE = (3, "invalid value")
    NOT_SUPPORT = (7, "feature not supported")

    def tail(self) -> str:
        """What op-plugin appends to a kernel's error (submodule OPS = 1): ``ERR01002 OPS invalid type``."""
        return f"ERR01{self.value[0]:03d} OPS {self.value[1]}"


class SourceKind(enum.Enum):
    """Where a rule was read: the order an operator would trust them in."""

    WHEEL = "torch_npu wheel"
    OP_PLUGIN_SOURCE = "op-plugin source"
    OP_PLUGIN_DOC = "op-plugin doc"
    ATB_REFERENCE = "CANN ATB reference"
    VLLM_ASCEND = "vllm-ascend"


@dataclass(frozen=True)
class Source:
    kind: SourceKind
    where: str

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.where}"


class KernelContractError(RuntimeError):
    """A call a real card refuses. A ``RuntimeError``, as torch_npu raises it, so code that handles
    the card's error handles the simulator's."""

    def __init__(self, rule: Rule, found: str) -> None:
        self.rule = rule
        self.found = found
        super().__init__(f"{rule.kernel}: {rule.argument} must be {rule.requirement}, got {found}. "
                         f"{rule.code.tail()} [simulated NPU contract {rule.name}; {rule.sources[0]}]")


Check = Callable[[Mapping[str, Any]], "str | None"]


@dataclass(frozen=True)
class Rule:
    """One refusal of one kernel. ``check`` returns what it found when the call breaks the rule."""

    name: str
    kernel: str
    argument: str
    requirement: str
    code: ErrCode
    sources: tuple[Source, ...]
    check: Check


# -- sources (public; cited in docs/npu.md) ------------------------------------------------------------

WHEEL_META = Source(SourceKind.WHEEL, "torch_npu/op_plugin/meta/_meta_registrations.py (2.13.0, 2.14.0)")
WHEEL_LIB = Source(SourceKind.WHEEL, "torch_npu/lib/libtorch_npu.so strings (2.13.0, 2.14.0)")
ATB_COMMON = Source(SourceKind.OP_PLUGIN_SOURCE, "op_plugin/utils/custom_functions/atb/AtbCommon.cpp "
                    "(AtTensor2AtbTensor: Long -> ACL_INT64, no cast; outputs must be contiguous)")
ROPE_ATB = Source(SourceKind.OP_PLUGIN_SOURCE, "op_plugin/ops/atb/RopeAtb.cpp (static cos/sin, "
                  "InitializeCosSinCache once per process)")
MROPE_SRC = Source(SourceKind.OP_PLUGIN_SOURCE, "op_plugin/ops/opapi/RopeWithSinCosCacheKernelNpuOpApi.cpp")
FIA_DOC = Source(SourceKind.OP_PLUGIN_DOC, "docs/en/custom_APIs/torch_npu/torch_npu-npu_fused_infer_attention_score.md "
                 "(branch 26.1.0), Parameters and Constraints")
MROPE_DOC = Source(SourceKind.OP_PLUGIN_DOC, "docs/zh/custom_APIs/torch_npu/torch_npu-npu_mrope.md, 约束说明")
SCATTER_DOC = Source(SourceKind.OP_PLUGIN_DOC, "docs/zh/custom_APIs/torch_npu/torch_npu-npu_scatter_pa_kv_cache.md "
                     "(slot_mapping in [0, num_blocks * block_size - 1])")
PA_DOC = Source(SourceKind.OP_PLUGIN_DOC, "op_plugin/python/atb/_atb_api_docs.py, _npu_paged_attention_v2 "
                "(the same ATB PagedAttentionOperation), 规格约束")
SWIGLU_DOC = Source(SourceKind.OP_PLUGIN_DOC, "docs/en/custom_APIs/torch_npu/(beta)torch_npu-npu_swiglu.md")
RMS_DOC = Source(SourceKind.OP_PLUGIN_DOC, "docs/en/custom_APIs/torch_npu/(beta)torch_npu-npu_rms_norm.md")
ADD_RMS_DOC = Source(SourceKind.OP_PLUGIN_DOC, "docs/en/custom_APIs/torch_npu/torch_npu-npu_add_rms_norm.md")
ATB_RESHAPE = Source(SourceKind.ATB_REFERENCE, "ReshapeAndCacheOperation, https://www.hiascend.com/document/detail/"
                     "zh/canncommercial/80RC22/apiref/ascendtbapi/ascendtb_01_0073.html")
ATB_ROPE = Source(SourceKind.ATB_REFERENCE, "RopeOperation, https://hiascend.com/document/detail/zh/canncommercial/"
                  "80RC3/apiref/ascendtbapi/ascendtb_01_0091.html")
VA_706 = Source(SourceKind.VLLM_ASCEND, "PR #706: reshape_and_cache 'expected torch.int32 tensor, but a torch.int64 "
                "tensor was provided'; 0.23.0 worker/block_table.py keeps slot_mapping int32")
VA_SLICE = Source(SourceKind.VLLM_ASCEND, "0.23.0 attention/attention_v1.py reshape_and_cache: "
                  "slots[:num_actual_tokens] (vLLM pads with -1)")


# -- checks ----------------------------------------------------------------------------------------------

def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _names(dtypes: Sequence[torch.dtype]) -> str:
    return "/".join(_name(d) for d in dtypes)


def dtype_in(argument: str, allowed: Sequence[torch.dtype]) -> Check:
    def check(args: Mapping[str, Any]) -> str | None:
        value = args.get(argument)
        if isinstance(value, torch.Tensor) and value.dtype not in allowed:
            return _name(value.dtype)
        return None
    return check


def same_dtype(*arguments: str) -> Check:
    def check(args: Mapping[str, Any]) -> str | None:
        seen = {name: args[name].dtype for name in arguments if isinstance(args.get(name), torch.Tensor)}
        if len(set(seen.values())) > 1:
            return ", ".join(f"{name} {_name(dtype)}" for name, dtype in seen.items())
        return None
    return check


def contiguous(*arguments: str) -> Check:
    def check(args: Mapping[str, Any]) -> str | None:
        strided = [name for name in arguments
                   if isinstance(args.get(name), torch.Tensor) and not args[name].is_contiguous()]
        return f"a strided view ({', '.join(strided)})" if strided else None
    return check


def _slots_in_range(args: Mapping[str, Any]) -> str | None:
    slots, cache = args["slot_indices"], args["key_cache"]
    if slots.numel() == 0:
        return None
    capacity = cache.shape[0] * cache.shape[1]
    low, high = int(slots.min()), int(slots.max())
    if low < 0 or high >= capacity:
        return f"slots from {low} to {high} (capacity {capacity})"
    return None


def _reshape_shapes(args: Mapping[str, Any]) -> str | None:
    key, value, key_cache, value_cache, slots = (args[n] for n in ("key", "value", "key_cache", "value_cache",
                                                                     "slot_indices"))
    if key.dim() != 3 or value.dim() != 3 or key_cache.dim() != 4 or value_cache.dim() != 4 or slots.dim() != 1:
        return (f"key {tuple(key.shape)}, value {tuple(value.shape)}, key_cache {tuple(key_cache.shape)}, "
                f"value_cache {tuple(value_cache.shape)}, slot_indices {tuple(slots.shape)}")
    if key.shape[0] != slots.shape[0] or value.shape[0] != slots.shape[0]:
        return f"{key.shape[0]} key rows, {value.shape[0]} value rows and {slots.shape[0]} slots"
    if key.shape[1:] != key_cache.shape[2:] or value.shape[1:] != value_cache.shape[2:]:
        return f"key {tuple(key.shape)} into key_cache {tuple(key_cache.shape)}"
    return None


def _head_size_at_most(argument: str, dim: int, limit: int) -> Check:
    def check(args: Mapping[str, Any]) -> str | None:
        size = args[argument].shape[dim]
        return str(size) if not 0 < size <= limit else None
    return check


def _block_size_paged(args: Mapping[str, Any]) -> str | None:
    size = args["key_cache"].shape[1]
    return str(size) if size > 128 or size % 16 else None


def _int32(argument: str) -> Check:
    return dtype_in(argument, (torch.int32,))


def _gqa(heads_arg: str, kv_heads_arg: str, limit: int | None) -> Check:
    def check(args: Mapping[str, Any]) -> str | None:
        heads = int(args[heads_arg])
        kv_heads = int(args[kv_heads_arg]) or heads
        if kv_heads <= 0 or heads % kv_heads:
            return f"num_heads={heads}, num_kv_heads={kv_heads}"
        if limit is not None and heads // kv_heads > limit:
            return f"a ratio of {heads // kv_heads}"
        return None
    return check


def _fia_prefill(args: Mapping[str, Any]) -> bool:
    """True when some sequence has more than one query token (the kernel's Q_S > 1 path)."""
    ends = [int(x) for x in (args.get("actual_seq_lengths") or [])]
    starts = [0, *ends[:-1]]
    return any(end - start > 1 for start, end in zip(starts, ends, strict=True))


def _fia_head_size(args: Mapping[str, Any]) -> str | None:
    size = args["query"].shape[-1]
    if size > 512:
        return str(size)
    if _fia_prefill(args) and size % 16:
        return f"{size} with more than one query token"
    return None


def _fia_heads(args: Mapping[str, Any]) -> str | None:
    heads = int(args["num_heads"])
    return str(heads) if not 0 < heads <= 256 else None


def _fia_batch(args: Mapping[str, Any]) -> str | None:
    batch = len(args.get("actual_seq_lengths") or [])
    return str(batch) if batch > 4096 else None


def _fia_block_size(args: Mapping[str, Any]) -> str | None:
    if args.get("block_table") is None:
        return None
    size = int(args["block_size"])
    if _fia_prefill(args):
        return f"{size} with more than one query token" if size % 128 or not 128 <= size <= 512 else None
    return f"{size} (one query token per sequence)" if size % 16 or not 0 < size <= 512 else None


def _fia_mask(args: Mapping[str, Any]) -> str | None:
    if int(args.get("sparse_mode", 0)) not in (2, 3, 4):
        return None
    mask = args.get("atten_mask")
    if mask is None:
        return "no atten_mask"
    shape = tuple(mask.shape)
    if shape not in ((_MASK_SIZE, _MASK_SIZE), (1, _MASK_SIZE, _MASK_SIZE), (1, 1, _MASK_SIZE, _MASK_SIZE)):
        return f"shape {shape}"
    if mask.dtype not in (torch.bool, torch.int8, torch.uint8):
        return _name(mask.dtype)
    return None


def _fia_lengths(args: Mapping[str, Any]) -> str | None:
    if args.get("input_layout") != "TND":
        return None
    q, kv = args.get("actual_seq_lengths"), args.get("actual_seq_lengths_kv")
    if q is None or kv is None:
        return "actual_seq_lengths or actual_seq_lengths_kv missing"
    ends = [int(x) for x in q]
    if any(b < a for a, b in zip([0, *ends], ends, strict=False)) or (ends and ends[-1] != args["query"].shape[0]):
        return f"{ends} for {args['query'].shape[0]} query tokens"
    if len(list(kv)) != len(ends):
        return f"{len(ends)} query lengths and {len(list(kv))} KV lengths"
    return None


def _rms_gamma(args: Mapping[str, Any]) -> str | None:
    x, gamma = args["self"], args["gamma"]
    pairs = {(torch.float16, torch.float32), (torch.bfloat16, torch.float32), (torch.float16, torch.float16),
             (torch.bfloat16, torch.bfloat16), (torch.float32, torch.float32)}
    return None if (x.dtype, gamma.dtype) in pairs else f"self {_name(x.dtype)} with gamma {_name(gamma.dtype)}"


def _swiglu_split(args: Mapping[str, Any]) -> str | None:
    x, dim = args["self"], int(args.get("dim", -1))
    if not -x.dim() <= dim < x.dim():
        return f"dim {dim} of a {x.dim()}-d tensor"
    return f"{x.shape[dim]} channels" if x.shape[dim] % 2 else None


def _mrope_multiple(args: Mapping[str, Any]) -> str | None:
    query, cache, head_size = args["query"], args["cos_sin_cache"], int(args["head_size"])
    step = 16 if query.dtype == torch.float32 else 32
    rotary_dim = cache.shape[-1]
    if head_size % step or rotary_dim % step or rotary_dim > head_size:
        return f"head_size {head_size}, rotary_dim {rotary_dim} ({_name(query.dtype)})"
    return None


def _mrope_layout(args: Mapping[str, Any]) -> str | None:
    positions, query, key, head_size = args["positions"], args["query"], args["key"], int(args["head_size"])
    section = args.get("mrope_section")
    if section not in (None, [0, 0, 0], (0, 0, 0)):
        return f"mrope_section {section} (multimodal RoPE is not simulated)"
    if positions.dim() != 1 or query.dim() != 2 or key.dim() != 2 or query.shape[0] != positions.shape[0] \
            or key.shape[0] != positions.shape[0] or query.shape[1] % head_size or key.shape[1] % head_size:
        return f"positions {tuple(positions.shape)}, query {tuple(query.shape)}, key {tuple(key.shape)}"
    return None


def _one_of(argument: str, allowed: Sequence[str]) -> Check:
    def check(args: Mapping[str, Any]) -> str | None:
        value = args.get(argument)
        return repr(value) if value is not None and value not in allowed else None
    return check


def _positions_in_cache(cache_argument: str) -> Check:
    def check(args: Mapping[str, Any]) -> str | None:
        positions, rows = args["positions"], args[cache_argument].shape[0]
        if positions.numel() and (int(positions.min()) < 0 or int(positions.max()) >= rows):
            return f"positions up to {int(positions.max())} for a cache of {rows} rows"
        return None
    return check


# -- the table -----------------------------------------------------------------------------------------

def _rules(kernel: str, *rows: tuple[str, str, str, ErrCode, tuple[Source, ...], Check]) -> tuple[Rule, ...]:
    return tuple(Rule(f"{kernel.lstrip('_')}.{name}", kernel, argument, requirement, code, sources, check)
                 for name, argument, requirement, code, sources, check in rows)


T, V, P, N = ErrCode.TYPE, ErrCode.VALUE, ErrCode.PARAM, ErrCode.NOT_SUPPORT

CONTRACTS: dict[str, tuple[Rule, ...]] = {
    "_npu_reshape_and_cache": _rules(
        "_npu_reshape_and_cache",
        ("slot_dtype", "slot_indices", "int32", T, (ATB_RESHAPE, ATB_COMMON, VA_706), _int32("slot_indices")),
        ("float_dtype", "key", _names(_HALF), T, (ATB_RESHAPE,), dtype_in("key", _HALF)),
        ("same_dtype", "key, value, key_cache, value_cache", "one identical dtype", T, (ATB_RESHAPE,),
         same_dtype("key", "value", "key_cache", "value_cache")),
        ("shapes", "key, value, key_cache, value_cache, slot_indices",
         "[tokens, kv_heads, head_size] x2, [blocks, block_size, kv_heads, head_size] x2, [tokens]", P,
         (ATB_RESHAPE,), _reshape_shapes),
        ("slot_range", "slot_indices", "in [0, blocks * block_size)", V, (SCATTER_DOC, ATB_RESHAPE, VA_SLICE),
         _slots_in_range),
        ("contiguous", "key_cache, value_cache", "contiguous (written in place)", P, (ATB_COMMON,),
         contiguous("key_cache", "value_cache")),
    ),
    "_npu_paged_attention": _rules(
        "_npu_paged_attention",
        ("float_dtype", "query", _names(_HALF), T, (PA_DOC,), dtype_in("query", _HALF)),
        ("same_dtype", "query, key_cache, value_cache, out", "one identical dtype", T, (PA_DOC,),
         same_dtype("query", "key_cache", "value_cache", "out")),
        ("head_size", "query", "a head size in (0, 256]", V, (PA_DOC,), _head_size_at_most("query", 2, 256)),
        ("block_size", "key_cache", "a block size <= 128 and a multiple of 16", V, (PA_DOC,), _block_size_paged),
        ("block_table_dtype", "block_table", "int32", T, (PA_DOC,), _int32("block_table")),
        ("context_lens_dtype", "context_lens", "int32", T, (PA_DOC,), _int32("context_lens")),
        ("gqa", "num_heads, num_kv_heads", "num_heads a multiple of num_kv_heads", V, (PA_DOC,),
         _gqa("num_heads", "num_kv_heads", None)),
        ("contiguous", "out", "contiguous (written in place)", P, (ATB_COMMON,), contiguous("out")),
    ),
    "npu_fused_infer_attention_score": _rules(
        "npu_fused_infer_attention_score",
        ("float_dtype", "query", _names(_HALF), T, (FIA_DOC,), dtype_in("query", _HALF)),
        ("same_dtype", "query, key, value", "one identical dtype (no quantisation here)", T, (FIA_DOC,),
         same_dtype("query", "key", "value")),
        ("head_size", "query", "a head size <= 512, a multiple of 16 when a sequence has more than one query "
         "token", V, (FIA_DOC,), _fia_head_size),
        ("heads", "num_heads", "in (0, 256]", V, (FIA_DOC, WHEEL_META), _fia_heads),
        ("gqa", "num_heads, num_key_value_heads", "num_heads a multiple of num_key_value_heads, ratio <= 64", V,
         (FIA_DOC,), _gqa("num_heads", "num_key_value_heads", 64)),
        ("tnd_batch", "actual_seq_lengths", "at most 4096 sequences (TND)", V, (FIA_DOC,), _fia_batch),
        ("tnd_lengths", "actual_seq_lengths, actual_seq_lengths_kv",
         "cumulative query ends ending at the query's token count, one KV length per sequence (TND)", V,
         (FIA_DOC,), _fia_lengths),
        ("block_size", "block_size", "a multiple of 128 in 128..512 when a sequence has more than one query "
         "token, else a multiple of 16 up to 512 (paged KV)", V, (FIA_DOC,), _fia_block_size),
        ("block_table_dtype", "block_table", "int32", T, (FIA_DOC,), _int32("block_table")),
        ("mask", "atten_mask", "a 2048x2048 bool/int8/uint8 mask for sparse_mode 2/3/4", P, (FIA_DOC,), _fia_mask),
        ("contiguous", "query, key, value", "contiguous", P, (FIA_DOC,), contiguous("query", "key", "value")),
    ),
    "_npu_rotary_embedding": _rules(
        "_npu_rotary_embedding",
        ("float_dtype", "query", _names(_HALF), T, (ATB_ROPE,), dtype_in("query", _HALF)),
        ("same_dtype", "query, key", "one identical dtype", T, (ATB_ROPE,), same_dtype("query", "key")),
        ("contiguous", "query, key", "contiguous (written in place)", P, (ATB_COMMON,), contiguous("query", "key")),
    ),
    "npu_mrope": _rules(
        "npu_mrope",
        ("float_dtype", "query", _names(_FLOATS), T, (MROPE_DOC,), dtype_in("query", _FLOATS)),
        ("same_dtype", "query, key, cos_sin_cache", "one identical dtype", T, (MROPE_DOC,),
         same_dtype("query", "key", "cos_sin_cache")),
        ("positions_dtype", "positions", "int32/int64", T, (MROPE_DOC,),
         dtype_in("positions", (torch.int32, torch.int64))),
        ("sizes", "head_size, cos_sin_cache", "head_size and rotary_dim multiples of 32 (16 for float32), "
         "rotary_dim <= head_size", V, (MROPE_DOC,), _mrope_multiple),
        ("layout", "positions, query, key", "[tokens], [tokens, heads * head_size] x2 (RoPE mode)", P,
         (MROPE_DOC,), _mrope_layout),
        ("positions_range", "positions", "rows of cos_sin_cache", V, (MROPE_DOC,), _positions_in_cache("cos_sin_cache")),
        ("rotary_mode", "rotary_mode", "'half' or 'interleave'", V, (WHEEL_LIB, MROPE_SRC),
         _one_of("rotary_mode", ("half", "interleave"))),
        ("cache_mode", "cache_mode", "'default' (RoPE mode)", V, (MROPE_DOC, MROPE_SRC),
         _one_of("cache_mode", ("default",))),
    ),
    "npu_swiglu": _rules(
        "npu_swiglu",
        ("float_dtype", "self", _names(_FLOATS), T, (SWIGLU_DOC,), dtype_in("self", _FLOATS)),
        ("split", "self", "an even size along dim", V, (SWIGLU_DOC, WHEEL_META), _swiglu_split),
        ("contiguous", "self", "contiguous", P, (SWIGLU_DOC,), contiguous("self")),
    ),
    "npu_rms_norm": _rules(
        "npu_rms_norm",
        ("float_dtype", "self", _names(_FLOATS), T, (RMS_DOC,), dtype_in("self", _FLOATS)),
        ("gamma_dtype", "gamma", "float32 or self's dtype", T, (RMS_DOC,), _rms_gamma),
    ),
    "npu_add_rms_norm": _rules(
        "npu_add_rms_norm",
        ("float_dtype", "x1", _names(_FLOATS), T, (ADD_RMS_DOC,), dtype_in("x1", _FLOATS)),
        ("same_dtype", "x1, x2, gamma", "one identical dtype", T, (ADD_RMS_DOC,), same_dtype("x1", "x2", "gamma")),
    ),
}

@dataclass(frozen=True)
class Behaviour:
    """What a kernel does that is no refusal but that the simulator reproduces because code can get
    it wrong silently (listed in the docs' table with the rules)."""

    name: str
    kernel: str
    argument: str
    behaviour: str
    sources: tuple[Source, ...]


BEHAVIOURS = (
    Behaviour("rotary_embedding.first_cache", "_npu_rotary_embedding", "cos_sin_cache",
              "cos/sin are built once per process from the first cache passed; later caches are ignored",
              (ROPE_ATB, WHEEL_LIB)),
)


def check(kernel: str, args: Mapping[str, Any]) -> None:
    """Raise ``KernelContractError`` for the first rule of ``kernel`` that ``args`` break."""
    for rule in CONTRACTS.get(kernel, ()):
        found = rule.check(args)
        if found is not None:
            raise KernelContractError(rule, found)


def all_rules() -> list[Rule]:
    return [rule for rules in CONTRACTS.values() for rule in rules]


def contract_table_markdown() -> str:
    """The table docs/npu.md carries: one row per rule, then the behaviours the simulator reproduces."""
    lines = ["| rule | kernel | argument | the kernel takes | a call outside it raises | sources |",
             "| --- | --- | --- | --- | --- | --- |"]
    for rule in all_rules():
        sources = "; ".join(str(s) for s in rule.sources)
        lines.append(f"| `{rule.name}` | `{rule.kernel}` | {rule.argument} | {rule.requirement} | "
                     f"`RuntimeError` ({rule.code.tail()}) | {sources} |")
    for item in BEHAVIOURS:
        sources = "; ".join(str(s) for s in item.sources)
        lines.append(f"| `{item.name}` | `{item.kernel}` | {item.argument} | {item.behaviour} | "
                     f"(reproduced, not refused) | {sources} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(contract_table_markdown())
