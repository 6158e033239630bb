"""Which parts of vLLM the overlay's NPU path inherits, so a reviewer sees their changes first.

An NPU platform, worker and kernel patches run inside vLLM classes they subclass or patch: every
public member of those classes and of their bases is behaviour the NPU path gets for free, and a
change there is what ``drift`` ranks P1 ("inherited"). The classes come from the overlay itself:

- the vLLM bases of the overlay's own subclasses (``NPUPlatform(Platform)``, ``NPUWorker(Worker)``,
  and whatever model runner or attention backend lands later), read by ``reliance``;
- the classes whose methods a patch replaces (the kernels' ``RMSNorm``, ``RotaryEmbedding``... and
  their ``CustomOp`` base), and classes a patch replaces with a subclass (the engine-core override);
- the NPU path's interfaces no overlay class subclasses yet (``NPU_PATH_INTERFACES``), named with
  the overlay file that depends on them.

Each class brings its in-tree bases (read from the tree being compared), each with the overlay
files to adapt: the ``VLLM_ASCEND_FILES`` of every P1 entry.
"""

from __future__ import annotations

from pathlib import Path

from ascend_overlay.core.patch import parse_target
from ascend_overlay.core.reliance.model import UseKind
from ascend_overlay.main2main.targets import Target, TargetRole
from ascend_overlay.main2main.tree import StaticTree, is_opaque

# The NPU path's vLLM interfaces that no overlay class subclasses yet, and the overlay file that
# relies on them: the NPU worker builds vLLM's GPU model runner; the NPU platform picks the
# FLEX_ATTENTION backend, so the attention backend interface and that backend are on its path.
# An overlay class that subclasses one of them (an NPU model runner, an NPU attention backend)
# takes over: the derived file is named instead.
NPU_PATH_INTERFACES: dict[str, str] = {
    "vllm.v1.worker.gpu_model_runner:GPUModelRunner": "ascend_overlay/npu/worker.py",
    "vllm.v1.attention.backend:AttentionBackend": "ascend_overlay/npu/platform.py",
    "vllm.v1.attention.backend:AttentionImpl": "ascend_overlay/npu/platform.py",
    "vllm.v1.attention.backend:AttentionMetadataBuilder": "ascend_overlay/npu/platform.py",
    "vllm.v1.attention.backends.flex_attention:FlexAttentionBackend": "ascend_overlay/npu/platform.py",
    "vllm.v1.attention.backends.flex_attention:FlexAttentionImpl": "ascend_overlay/npu/platform.py",
    "vllm.v1.attention.backends.flex_attention:FlexAttentionMetadataBuilder": "ascend_overlay/npu/platform.py",
}
_OVERLAY_ROOT = Path(__file__).resolve().parents[2]


def inherited_roots(targets: list[Target], *, interfaces: bool = True) -> dict[str, set[str]]:
    """``module:Class`` -> subject files, for every class the subject subclasses or patches a method
    of. ``interfaces``: add the overlay's NPU path interfaces (not for a plugin, which brings its own)."""
    roots: dict[str, set[str]] = {}
    for t in targets:
        if t.use is not None and t.use.how is UseKind.OVERRIDE:
            roots.setdefault(_owner(t.target), set()).add(t.patch_file)
        elif t.role is TargetRole.PATCH and len(t.path) > 1:
            roots.setdefault(_owner(t.target), set()).add(t.patch_file)
        elif t.role in (TargetRole.PATCH, TargetRole.HOOK) and t.contract and t.contract.startswith("class"):
            roots.setdefault(t.target, set()).add(t.patch_file)  # replaced by a subclass
    for cls, file in NPU_PATH_INTERFACES.items() if interfaces else ():
        if cls not in roots and (_OVERLAY_ROOT / file).is_file():
            roots[cls] = {file}
    return roots


def _owner(target: str) -> str:
    module, path = parse_target(target)
    return f"{module}:{'.'.join(path[:-1])}"


def inherited_classes(tree: StaticTree, roots: dict[str, set[str]]) -> dict[str, set[str]]:
    """Dotted path of each in-tree class the roots are or inherit from -> the overlay files affected."""
    out: dict[str, set[str]] = {}
    for root, files in roots.items():
        module, path = parse_target(root)
        found = tree.lookup(module, path)
        if found is None or found.kind != "class":
            continue
        for cls, _where in tree.mro(found.obj, found.module):
            if not is_opaque(cls):
                out.setdefault(cls.path, set()).update(files)
    return out


def owning_class(obj: str, classes: dict[str, set[str]]) -> str | None:
    """The inherited class ``obj`` is (or is a public member of), if any."""
    if obj in classes:
        return obj
    owner, _, name = obj.rpartition(".")
    if owner in classes and not (name.startswith("_") and not name.startswith("__")):
        return owner
    return None
