"""Tools for writing and checking hotfixes before they ship: a skeleton with the live target's
contract pinned, and a verifier that runs every check the overlay would, without activating it."""

from __future__ import annotations

import hashlib
import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from ascend_overlay.core import applier, contract, trust
from ascend_overlay.core.catalog import PHASE_FOLDERS, load_catalog, load_patch_source, patch_files
from ascend_overlay.core.errors import OverlayError, PatchDeclarationError
from ascend_overlay.core.files import write_atomic
from ascend_overlay.core.patch import Patch
from ascend_overlay.core.planning import Context, would_apply
from ascend_overlay.core.precheck_cache import PrecheckCache
from ascend_overlay.core.settings import Settings
from ascend_overlay.core.vllm_version import installed_vllm_version
from ascend_overlay.core.vocabulary import Phase, Status


def split_dotted(target: str) -> tuple[str, str]:
    """``a.b.C.meth`` -> (``a.b``, ``C.meth``) by importing the longest module prefix that exists."""
    if ":" in target:
        module, _, attrs = target.partition(":")
        return module, attrs
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        name = ".".join(parts[:cut])
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        return name, ".".join(parts[cut:])
    raise OverlayError(f"no importable module in {target!r}; give e.g. vllm.v1.sample.sampler.Sampler.forward")


SKELETON = '''"""{name}: TODO say in one line what this hotfix fixes."""

from ascend_overlay import Patch

PATCH = Patch(
    name="{name}",
    phase="{phase}",
    vllm=">={version}",
    # The vLLM release that contains the upstream fix: from it on this hotfix is skipped as obsolete.
    fixed_in=None,
    why="TODO: the bug, how it shows, and why this change fixes it",
    upstream="TODO: link to the upstream issue or pull request",
    remove_when="TODO: e.g. once every deployment runs a vLLM with the fix (set fixed_in)",
)


# The contract is the target's shape in vLLM {version}, when this was written. If upstream changes it,
# the overlay skips this hotfix with status `drift` instead of running it against the wrong code.
@PATCH.{kind}("{target}", contract={fingerprint!r})
def {func}({params}):
{body}
'''

_WRAP_BODY = "    # TODO: the fix. `wrapped` is the original; call it, or do not.\n    return wrapped(*args, **kwargs)"


def new_hotfix(name: str, target: str, directory: Path, phase: str = "worker", kind: str = "wrap",
               force: bool = False) -> Path:
    """Write ``DIR/PHASE/patch_<module>.py`` and return its path. Everything is checked before the file
    is written (the name, the target, the skeleton loading): a refusal leaves nothing behind."""
    try:
        Patch(name=name, phase=Phase(phase), vllm=">=0", why="-", remove_when="-")
    except ValueError:
        raise OverlayError(f"phase {phase!r} is not one of {', '.join(p.value for p in Phase)}") from None
    except PatchDeclarationError as exc:
        raise OverlayError(str(exc)) from None
    module, attrs = split_dotted(target)
    resolved = applier.resolve(module, tuple(attrs.split(".")))
    if isinstance(resolved, applier.Precheck):
        reason = resolved.refusal.text if resolved.refusal else "cannot be resolved"
        raise OverlayError(f"cannot pin {target}: {reason}; give the target as it exists in the installed vLLM "
                           "(module path, then attributes), e.g. vllm.v1.sample.sampler.Sampler.forward")
    fingerprint = contract.fingerprint(resolved.unbound)
    version = installed_vllm_version()
    dotted = f"{module}:{attrs}"
    stem = module.removeprefix("vllm.").replace(".", "_")
    path = directory / phase / f"patch_{stem}.py"
    if path.exists() and not force:
        raise OverlayError(f"{path} exists; choose another directory or pass --force")
    if kind == "wrap":
        func, params, body = attrs.split(".")[-1], "wrapped, instance, args, kwargs", _WRAP_BODY
    else:
        func = attrs.split(".")[-1]
        params = fingerprint[1:-1] if fingerprint.startswith("(") else "*args, **kwargs"
        body = "    # TODO: the replacement; it is installed as is (no wrapper), so it must do the whole job.\n" \
               "    raise NotImplementedError"
    text = SKELETON.format(name=name, phase=phase, version=version.base_version if version else "0",
                           kind=kind, target=dotted, fingerprint=fingerprint, func=func, params=params, body=body)
    try:
        load_patch_source(str(path), text.encode(), "new", "authoring")  # the skeleton must itself load
    except PatchDeclarationError as exc:
        raise OverlayError(f"the skeleton for {target} does not load ({exc}); nothing was written") from None
    write_atomic(path, text)
    return path


@dataclass
class Finding:
    path: str
    ok: bool
    message: str


@dataclass
class Verification:
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)


def verify(directory: str, use_cache: bool = True) -> Verification:
    """Every check the overlay makes when it loads and applies a hotfix directory, nothing activated.

    The directory is judged together with everything else this environment would load (built-in
    patches, ``VLLM_ASCEND_OVERLAY_PATH``, entry points), through the runtime's own planning, so a
    conflict with another patch shows here exactly as the runtime would see it.
    """
    result = Verification()
    try:
        with trust.open_hotfix_directory(directory, PHASE_FOLDERS) as opened:
            empty = not opened.patch_files(PHASE_FOLDERS)
    except trust.Refused as exc:
        result.findings.append(Finding(directory, False, str(exc)))
        return result
    if empty:
        result.findings.append(Finding(directory, False, "no patch_*.py files (layout: DIR/<phase>/patch_*.py)"))
        return result
    settings = Settings.from_env()
    dirs = list(settings.hotfix_dirs)
    same = [d for d in dirs if os.path.abspath(d) == os.path.abspath(directory)]
    label = same[0] if same else directory
    if not same:
        dirs.append(directory)  # judged as if appended to VLLM_ASCEND_OVERLAY_PATH
    combined = load_catalog(dirs)
    source = f"path:{label}"
    for problem in combined.problems:
        if problem.source == source:
            result.findings.append(Finding(problem.path, False, problem.message))
    ours = [p for p in combined.patches if p.source == source]
    version = installed_vllm_version()
    cache = PrecheckCache(enabled=use_cache)  # the built-in patches' answers rarely change: remembered
    decisions = would_apply(combined.patches,
                            Context(Settings(enabled=True, enable=settings.enable, disable=settings.disable,
                                             version_override=settings.version_override),
                                    version, combined.blocked), refusal=cache.refusal)
    cache.save()
    for patch in ours:
        path = patch.file or "?"
        todo = [f for f in ("why", "remove_when", "upstream") if "TODO" in (getattr(patch, f) or "")]
        if todo:
            result.findings.append(Finding(path, False, f"{patch.name}: TODO left in {', '.join(todo)}"))
            continue
        unpinned = [e.target for e in patch.edits if e.contract is None]
        if unpinned:
            result.findings.append(Finding(path, False, f"{patch.name}: no contract pinned for {', '.join(unpinned)}; "
                                                        "`ascend-overlay hotfix new` writes the pin for you"))
            continue
        decision = decisions[patch.name]
        if decision.is_problem:
            result.findings.append(Finding(path, False, f"{patch.name}: {decision.sentence()}"))
            continue
        state = Status.WOULD_APPLY.value if decision.applies else f"would be skipped here: {decision.text}"
        result.findings.append(Finding(path, True, f"{patch.name}: ok ({patch.phase.value} phase; {state})"))
    return result


def write_manifest(directory: Path) -> Path:
    """(Re)write ``SHA256SUMS`` for every patch file, in the format ``sha256sum -c`` reads. Files are read
    as the loader reads them (no symlink followed, a FIFO refused at once), and the manifest is written
    without following a link planted at its name."""
    if not directory.is_dir():
        raise OverlayError(f"{directory} is not a directory; give the hotfix directory (the one that holds "
                           "<phase>/patch_*.py)")
    files = list(patch_files(directory))
    if not files:
        raise OverlayError(f"{directory} holds no patch_*.py files (layout: DIR/<phase>/patch_*.py); nothing to sign")
    try:
        lines = [f"{hashlib.sha256(trust.read_regular(str(p))).hexdigest()}  {p.relative_to(directory)}" for p in files]
    except trust.Refused as exc:
        raise OverlayError(f"cannot sign: {exc}") from None
    # Replaced by a rename (core/files.py): a link or FIFO planted at the manifest's name is replaced,
    # never followed or opened.
    return write_atomic(directory / trust.MANIFEST_NAME, "\n".join(lines) + "\n", mode=0o644)
