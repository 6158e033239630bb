"""``ascend-overlay check``: would each patch target and hook point survive this vLLM source?

For every target: is it there, does its shape still match the pin (or a shape declared compatible),
and if it vanished, does it live on under another module? Only the modules that hold targets are
read, so the answer comes in about a second even for a version that cannot run here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from packaging.version import InvalidVersion, Version

from ascend_overlay.core.contract import explain_drift
from ascend_overlay.core.reliance import judge
from ascend_overlay.core.vllm_version import version_matches
from ascend_overlay.main2main import name_index
from ascend_overlay.main2main.fingerprints import fingerprint
from ascend_overlay.main2main.reliance_static import StaticLookup
from ascend_overlay.main2main.sources import VllmSource
from ascend_overlay.main2main.targets import Target
from ascend_overlay.main2main.tree import Found, StaticTree

BREAKING = ("missing", "moved", "drift")
_MAX_MOVED = 3


@dataclass
class TargetResult:
    target: Target
    status: str                 # ok | drift | missing | moved | unverifiable
    found: str | None = None    # the fingerprint read from source, when it could be
    detail: str = ""
    moved_to: list[str] = field(default_factory=list)
    applies: bool = True        # does the patch's vllm range include this version?
    defined_in: str | None = None

    @property
    def breaks(self) -> bool:
        return self.status in BREAKING and self.applies

    def as_dict(self) -> dict[str, Any]:
        t = self.target
        data = {"target": t.target, "patch": t.patch, "patch_file": t.patch_file, "role": t.role,
                "vllm_range": t.vllm_spec, "applies": self.applies, "status": self.status,
                "breaks": self.breaks, "pinned": t.contract, "compatible": list(t.compatible),
                "found": self.found, "detail": self.detail, "moved_to": self.moved_to,
                "defined_in": self.defined_in}
        if t.use is not None:
            data["relied_on"] = t.use.name
            data["use"] = {"how": t.use.how, "where": t.use.where, "text": t.use.text, "owner": t.use.owner}
        return data


@dataclass
class CheckReport:
    source: VllmSource
    results: list[TargetResult]
    problems: list[str] = field(default_factory=list)

    @property
    def broken(self) -> list[TargetResult]:
        return [r for r in self.results if r.breaks]

    @property
    def broken_patches(self) -> list[str]:
        return sorted({r.target.patch for r in self.broken})

    def patches(self) -> list[dict[str, Any]]:
        """One row per patch (or overlay module): does it break, and because of which names."""
        rows: dict[str, dict[str, Any]] = {}
        for r in self.results:
            row = rows.setdefault(r.target.patch, {"patch": r.target.patch, "patch_file": r.target.patch_file,
                                                   "applies": r.applies, "breaks": False, "because": []})
            if r.breaks:
                row["breaks"] = True
                what = f"relies on {r.target.use.name}" if r.target.use is not None else f"edits {r.target.target}"
                row["because"].append({"target": r.target.target, "relied_on": r.target.use.name if r.target.use
                                       else None, "status": r.status, "detail": f"{what}: {r.detail}"})
        return list(rows.values())

    def as_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r.status] = counts.get(r.status, 0) + 1
        return {"vllm": source_dict(self.source), "targets": [r.as_dict() for r in self.results],
                "patches": self.patches(),
                "summary": {"targets": len(self.results), "by_status": counts,
                            "breaking": len(self.broken), "broken_patches": self.broken_patches},
                "problems": self.problems}


def source_dict(source: VllmSource) -> dict[str, Any]:
    return {"label": source.label, "kind": source.kind, "root": str(source.root),
            "version": source.version, "commit": source.commit}


def _applies(spec: str, version: str | None) -> bool:
    """Unknown versions count as in range: better a reported break than a silent pass."""
    if not spec or version is None:
        return True
    try:
        return version_matches(spec, Version(version))
    except (InvalidVersion, ValueError):
        return True


class Checker:
    """Checks targets against one tree; the name index for "moved" is built only on the first miss."""

    def __init__(self, tree: StaticTree) -> None:
        self.tree = tree
        self.lookup = StaticLookup(tree)
        self._index: dict[str, list[str]] | None = None

    def index(self) -> dict[str, list[str]]:
        if self._index is None:
            self._index = name_index.build(self.tree.root, self.tree.package)
        return self._index

    def locate(self, target: Target) -> tuple[Found | None, str | None]:
        """What the target resolves to here, and its fingerprint (None when not statically knowable)."""
        found = self.tree.lookup(target.module, target.path)
        if found is None:
            return None, None
        return found, fingerprint(self.tree, found)

    def check(self, target: Target, version: str | None = None, *, ignore_ranges: bool = False) -> TargetResult:
        applies = True if ignore_ranges else _applies(target.vllm_spec, version)
        if target.use is not None:
            return self.check_use(target, applies)
        found, fp = self.locate(target)
        if found is not None:
            result = self._judge(target, fp, applies)
            if found.via_alias and found.kind not in ("module", "external-module"):
                result.defined_in = found.module  # patching a re-export leaves the original in place
            return result
        moved = self.moved_candidates(target)
        if moved:
            first_fp = self.locate(_at(target, moved[0]))[1]
            compat = ""
            if target.contract is not None and first_fp is not None:
                compat = "; shape unchanged" if _compatible(target, first_fp) else \
                    "; and " + explain_drift(target.contract, first_fp)
            return TargetResult(target, "moved", first_fp,
                                f"not in {target.module}; found as {moved[0]}{compat}", moved, applies)
        return TargetResult(target, "missing", None, self.why_missing(target), [], applies)

    def check_use(self, target: Target, applies: bool) -> TargetResult:
        """A relied-on name: the same judgement as at apply time (``reliance.judge``), from source."""
        use = target.use
        hit = self.lookup.find(use.module, use.path)
        verdict = judge(use, hit)
        detail = f"{use.text} ({use.how} at {use.where}): {verdict.detail}"
        if verdict.status == "missing" and hit.depth == 0 and use.path:
            moved = self.moved_candidates(target)
            if moved:
                return TargetResult(target, "moved", None, f"{detail}; found as {moved[0]}", moved, applies)
        return TargetResult(target, verdict.status, verdict.found, detail, [], applies)

    def _judge(self, target: Target, fp: str | None, applies: bool) -> TargetResult:
        if target.contract is None:
            return TargetResult(target, "ok", fp, "present (unpinned)", applies=applies)
        if fp is None:
            return TargetResult(target, "unverifiable", None,
                                "present, but its shape cannot be read from source (external base, "
                                "decorator or computed value); verify with `ascend-overlay status`",
                                applies=applies)
        if _compatible(target, fp):
            return TargetResult(target, "ok", fp, "matches pin" if fp == target.contract else
                                "matches a declared compatible shape", applies=applies)
        return TargetResult(target, "drift", fp, explain_drift(target.contract, fp), applies=applies)

    def why_missing(self, target: Target) -> str:
        if self.tree.module_file(target.module) is None:
            return f"module {target.module} does not exist in this vLLM"
        if self.tree.module(target.module) is None:
            reason = self.tree.failed.get(target.module, "unreadable")
            return f"module {target.module} cannot be parsed ({reason})"
        path = target.path
        for cut in range(1, len(path) + 1):
            if self.tree.lookup(target.module, path[:cut]) is None:
                owner = ".".join((target.module, *path[:cut - 1]))
                return f"{owner} has no attribute {path[cut - 1]!r}"
        return "not found"

    def moved_candidates(self, target: Target) -> list[str]:
        """Other modules where the whole attribute path resolves, best guesses first."""
        head = target.path[0]
        short = target.module.rsplit(".", 1)[-1]
        candidates = list(self.index().get(head, []))
        if self.tree.module_file(target.module) is None:
            candidates += [m for m in self.tree.module_names() if m.rsplit(".", 1)[-1] == short]
        seen: set[str] = set()
        ranked = sorted(dict.fromkeys(candidates),
                        key=lambda m: (m.rsplit(".", 1)[-1] != short, _distance(m, target.module), m))
        out = []
        for module in ranked:
            if module == target.module or module in seen:
                continue
            seen.add(module)
            found = self.tree.lookup(module, target.path)
            if found is not None and found.via_alias is None:
                out.append(f"{module}:{'.'.join(target.path)}")
            if len(out) >= _MAX_MOVED:
                break
        return out


def _distance(a: str, b: str) -> int:
    pa, pb = a.split("."), b.split(".")
    common = 0
    for x, y in zip(pa, pb, strict=False):
        if x != y:
            break
        common += 1
    return len(pa) + len(pb) - 2 * common


def _compatible(target: Target, fp: str) -> bool:
    return fp == target.contract or fp in target.compatible


def _at(target: Target, new_target: str) -> Target:
    return Target(new_target, target.contract, target.compatible, target.patch, target.patch_file,
                  target.vllm_spec, target.role)


def run_check(source: VllmSource, targets: list[Target], *, ignore_ranges: bool = False,
              problems: list[str] | None = None) -> CheckReport:
    from ascend_overlay.core.reliance import gc_paused

    checker = Checker(StaticTree(source.root))
    with gc_paused():  # a tree of parsed modules: see gc_paused
        results = [checker.check(t, source.version, ignore_ranges=ignore_ranges) for t in targets]
    return CheckReport(source, results, list(problems or []))


def table_rows(report: CheckReport) -> list[tuple[str, str, str, str]]:
    """What a person reads at a glance: status first, then who suffers, then why (relied-on names that
    hold are counted below the table, not listed)."""
    rows = []
    for r in report.results:
        if r.target.use is not None and r.status in ("ok", "unverifiable") and not r.breaks:
            continue
        status = r.status.upper() if r.breaks else r.status
        detail = r.detail
        if not r.applies:
            status += " (n/a)"
            detail = f"patch range vllm{r.target.vllm_spec} excludes this version; {detail}"
        if r.defined_in:
            detail += f" [defined in {r.defined_in}]"
        rows.append((status, r.target.patch, r.target.target, detail))
    return rows
