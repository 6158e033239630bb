"""How much a change matters to this overlay when it touches nothing the overlay uses.

P0 (what a patch edits, relies on, subclasses or calls breaks) and P1 (what the NPU path inherits
or relies on) are decided in ``drift`` from the overlay's own code (``reliance``, ``relevance``).
What is left follows the file path: code of other devices (CUDA, ROCm, XPU, TPU kernels, FlashInfer,
Triton and CUTLASS kernels, CUDA graphs) is P4, counted on one line; breaking changes to public API
elsewhere are P2 (grouped by the areas hardware plugins usually touch); models are P3; additions,
private names, tests and docs are P4.
"""

from __future__ import annotations

import fnmatch
import re

# (path prefix under the vLLM source root, area name): how P2 entries are grouped. First match wins.
PLUGIN_AREAS: tuple[tuple[str, str], ...] = (
    ("vllm/platforms/", "platforms"),
    ("vllm/model_executor/layers/fused_moe/", "fused MoE"),
    ("vllm/model_executor/layers/quantization/", "quantization"),
    ("vllm/model_executor/layers/attention", "attention"),
    ("vllm/attention/", "attention"),
    ("vllm/v1/attention/", "attention"),
    ("vllm/v1/worker/gpu/spec_decode/", "speculative decoding"),
    ("vllm/v1/spec_decode/", "speculative decoding"),
    ("vllm/spec_decode/", "speculative decoding"),
    ("vllm/distributed/", "distributed"),
    ("vllm/v1/worker/", "worker and model runner"),
    ("vllm/worker/", "worker and model runner"),
    ("vllm/model_executor/custom_op.py", "custom ops (NPU kernel slots)"),
    ("vllm/model_executor/layers/activation.py", "custom ops (NPU kernel slots)"),
    ("vllm/model_executor/layers/layernorm.py", "custom ops (NPU kernel slots)"),
    ("vllm/model_executor/layers/rotary_embedding", "custom ops (NPU kernel slots)"),
    ("vllm/forward_context.py", "worker and model runner"),
)
# Code that runs only on other devices: no NPU code path reaches it. Other platforms' files, the MLA
# backends (the NPU platform refuses MLA), and files named after a CUDA/ROCm/XPU/TPU technology (whole
# words of the path: ``rocm_aiter_fa.py``, ``breakable_cudagraph.py``, but not ``output.py``).
OTHER_DEVICE_FILES: tuple[str, ...] = (
    "vllm/platforms/cuda.py", "vllm/platforms/rocm.py", "vllm/platforms/xpu.py", "vllm/platforms/tpu.py",
    "vllm/platforms/cpu.py", "vllm/platforms/zen_cpu.py", "vllm/v1/attention/backends/mla/*", "vllm/_C.pyi",
)
OTHER_DEVICE_WORDS = frozenset({
    "cuda", "rocm", "aiter", "hip", "triton", "cutlass", "flashinfer", "flashmla",
    "marlin", "machete", "deepgemm", "deepep", "nvfp4", "trtllm", "xpu", "tpu", "zentorch", "nvidia", "amd",
    "cublas", "cudnn", "nccl", "rccl", "flash_attn", "fa_utils", "deep_gemm", "cpu_attn",
})
# vLLM's CUDA-graph utilities (``cudagraph_utils.py``, ``cuda_graph.py``) are named after CUDA but are
# the graph-capture machinery every device's runner subclasses (the NPU's ACL graphs included): ranked
# by what relies on them, never dismissed by their name.
GRAPH_UTILITY_WORDS = frozenset({"cudagraph", "cudagraphs"})
OTHER_DEVICES = "other devices (CUDA, ROCm, XPU, TPU, CPU kernels and backends)"
P3_AREAS: tuple[tuple[str, str], ...] = (
    ("vllm/model_executor/models/", "models"),
    ("vllm/models/", "models"),
)
P4_AREAS: tuple[tuple[str, str], ...] = (
    ("tests/", "tests"), ("benchmarks/", "benchmarks"), ("docs/", "docs"), ("examples/", "examples"),
    ("vllm/benchmarks/", "benchmarks"), (".github/", "CI"), ("tools/", "tools"),
)
# Files that pin what vLLM builds and runs against (a torch bump reaches torch_npu first).
DEPENDENCY_FILES: tuple[str, ...] = (
    "requirements*.txt", "requirements/*", "requirements-*.txt", "pyproject.toml", "setup.py", "setup.cfg",
    "*.lock", "constraints*.txt", "CMakeLists.txt", "docker/Dockerfile*",
)
BREAKING_CHANGES = ("removed", "moved", "signature", "kind", "base removed")
TITLES = {
    0: "P0 — breaking changes for the overlay (what it edits, relies on, subclasses or calls)",
    1: "P1 — what the NPU path inherits or relies on",
    2: "P2 — breaking changes to public API elsewhere",
    3: "P3 — models",
    4: "P4 — minor changes",
}


def is_other_device(path: str) -> bool:
    if any(fnmatch.fnmatch(path, pattern) for pattern in OTHER_DEVICE_FILES):
        return True
    words = [w for w in re.split(r"[/_.\-]", path.lower()) if w]
    words = [w for i, w in enumerate(words) if w not in GRAPH_UTILITY_WORDS
             and not (w == "cuda" and i + 1 < len(words) and words[i + 1] in ("graph", "graphs"))]
    pairs = {f"{a}_{b}" for a, b in zip(words, words[1:], strict=False)}
    return bool(OTHER_DEVICE_WORDS.intersection(words) or OTHER_DEVICE_WORDS.intersection(pairs))


def area_of(path: str) -> tuple[str, int | None]:
    """The area of a file and the priority the area imposes (None: decided by the kind of change)."""
    if is_other_device(path):
        return OTHER_DEVICES, 4
    for table, priority in ((PLUGIN_AREAS, None), (P3_AREAS, 3), (P4_AREAS, 4)):
        for prefix, area in table:
            if path.startswith(prefix):
                return area, priority
    parts = path.split("/")
    if parts[0] == "vllm" and len(parts) > 2:
        return ("v1/" + parts[2] if parts[1] == "v1" and len(parts) > 3 else parts[1]), None
    if parts[0] == "vllm":
        return "vllm (top level)", None
    return parts[0] if len(parts) > 1 else "repository root", 4


def is_dependency_file(path: str) -> bool:
    return any(fnmatch.fnmatch(path, pattern) for pattern in DEPENDENCY_FILES)


def classify_file(path: str) -> tuple[int, str]:
    """Priority and area of a changed file outside the vLLM package (git mode)."""
    if is_dependency_file(path):
        return 1, "dependencies"
    area, imposed = area_of(path)
    return (imposed if imposed is not None else 4), area


def classify(path: str, change: str, public: bool) -> tuple[int, str]:
    """Priority 2-4 and area for a change that touches nothing the overlay uses or inherits."""
    area, imposed = area_of(path)
    if imposed == 4 or not public:
        return 4, area
    if imposed is not None:
        return imposed, area
    return (2 if is_breaking(change) else 4), area


def is_breaking(change: str) -> bool:
    """A change that breaks code written against the old API (removals, moves, signatures that no
    longer fit callers or subclasses, a return tuple of another length)."""
    return change in BREAKING_CHANGES or change.startswith(("signature (breaks", "return type (breaks"))


def impact(priority: int, change: str, area: str, obj: str) -> str:
    """One sentence a person adapting the overlay can act on."""
    name = obj.rsplit(".", 1)[-1]
    if change == "moved to a base class":
        return f"`{name}` is still reachable through inheritance; only code reading the class body is affected"
    if priority == 1 and area == "dependencies":
        return "build or runtime dependencies moved: check torch / torch_npu and CANN compatibility"
    if priority == 1:
        if change == "added":
            return (f"new in a class the NPU path inherits: check whether the NPU code must provide or "
                    f"override `{name}` (it gets vLLM's default)")
        if change in ("signature (compatible)", "signature (breaks subclasses)"):
            return (f"callers still work, but an NPU class overriding `{name}` must accept the new "
                    "parameters, or vLLM's calls into it fail")
        return f"the NPU path inherits `{name}`: re-check what it runs there, and adapt overrides and callers"
    if priority == 2:
        return f"code calling or subclassing `{name}` breaks; adapt if the overlay or a hotfix uses it"
    if priority == 3:
        return "model implementation changed: re-check model-specific patches and NPU model support"
    return "informational: unlikely to affect the overlay"
