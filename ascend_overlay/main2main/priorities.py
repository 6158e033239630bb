"""How much a change matters to a hardware plugin, decided by where it happened and what it was.

P0 is never decided here: it is reserved for changes to what a patch or the overlay touches (see
``drift``). The rest follows the file path, because a plugin's exposure follows vLLM's layout: a
signature change in ``platforms/`` or ``fused_moe/`` reaches an NPU backend; one in a model file
reaches only that model.
"""

from __future__ import annotations

import fnmatch

# (path prefix under the vLLM source root, area name). First match wins, so specific before general.
P1_AREAS: tuple[tuple[str, str], ...] = (
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
    0: "P0 — breaking changes for the overlay",
    1: "P1 — important changes in areas hardware plugins depend on",
    2: "P2 — moderate changes",
    3: "P3 — models",
    4: "P4 — minor changes",
}


def area_of(path: str) -> tuple[str, int | None]:
    """The area of a file and the priority the area imposes (None: decided by the kind of change)."""
    for table, priority in ((P1_AREAS, 1), (P3_AREAS, 3), (P4_AREAS, 4)):
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
    """Priority 1-4 and area for a change that touches nothing the overlay relies on."""
    area, imposed = area_of(path)
    if imposed == 4 or not public:
        return 4, area
    if imposed is not None:
        return imposed, area
    return (2 if change in BREAKING_CHANGES else 4), area


def impact(priority: int, change: str, area: str, obj: str) -> str:
    """One sentence a person adapting the overlay can act on."""
    name = obj.rsplit(".", 1)[-1]
    if change == "moved to a base class":
        return f"`{name}` is still reachable through inheritance; only code reading the class body is affected"
    if priority == 1 and area == "dependencies":
        return "build or runtime dependencies moved: check torch / torch_npu and CANN compatibility"
    if priority == 1:
        if change == "added":
            return (f"new in {area}: check whether the NPU backend must provide or override `{name}` "
                    "(out-of-tree platforms inherit vLLM's default)")
        if change == "signature (compatible)":
            return (f"callers still work, but plugin classes overriding `{name}` must accept the new "
                    "parameters, or vLLM's calls into them fail")
        return f"plugin code in {area} that calls, subclasses or overrides `{name}` breaks until adapted"
    if priority == 2:
        return f"code calling or subclassing `{name}` breaks; adapt if the overlay or a hotfix uses it"
    if priority == 3:
        return "model implementation changed: re-check model-specific patches and NPU model support"
    return "informational: unlikely to affect the overlay"
