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
from ascend_overlay.core.reliance.model import Hit, HitStatus, UseKind, VerdictStatus
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
    status: VerdictStatus
    found: str | None = None    # the fingerprint read from source, when it could be
    detail: str = ""
    moved_to: list[str] = field(default_factory=list)
    applies: bool = True        # does the patch's vllm range include this version?
    defined_in: str | None = None
    already_broken: bool = False  # broken the same way in a baseline vLLM (``check --baseline``)
    depth: int | None = None      # a relied-on name: how much of its path resolved (where it broke)

    @property
    def breaks(self) -> bool:
        return self.status in BREAKING and self.applies and not self.already_broken

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

    def rows(self) -> list[dict[str, Any]]:
        """One row per relied-on use, as a plugin's maintainer acts on it: the vLLM name, its verdict,
        the plugin file and line, how the code uses it, the version lane it sits in, and why."""
        out = []
        for r in self.results:
            use = r.target.use
            if use is None:
                continue
            file, _, line = use.where.rpartition(":")
            because = r.detail
            if r.moved_to:
                because += f" (now at {', '.join(r.moved_to)})"
            if use.lane and r.breaks:
                serves = lane_serves(use.lane, self.source.version)
                if serves is False:
                    because += (f"; in the lane `{use.lane}`, which does not serve vLLM {self.source.version}: "
                                "deleting the lane is the adaptation")
            out.append({"name": use.target, "status": r.status, "breaks": r.breaks, "file": file,
                        "line": int(line) if line.isdigit() else None, "module": r.target.patch,
                        "use": {"how": str(use.how.value if hasattr(use.how, "value") else use.how),
                                "text": use.text},
                        "lane": use.lane or None, "guard": use.guard or None, "because": because,
                        "moved_to": r.moved_to, "found": r.found,
                        "already_broken": r.already_broken})
        return out

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
            return TargetResult(target, VerdictStatus.MOVED, first_fp,
                                f"not in {target.module}; found as {moved[0]}{compat}", moved, applies)
        return TargetResult(target, VerdictStatus.MISSING, None, self.why_missing(target), [], applies)

    def check_use(self, target: Target, applies: bool) -> TargetResult:
        """A relied-on name: the same judgement as at apply time (``reliance.judge``), from source."""
        use = target.use
        assert use is not None  # a relied-on target carries its use
        if use.how is UseKind.REGISTER_OOT:
            return self.check_register_oot(target, applies)
        if target.subject == "plugin":  # never import torch for a plugin: its own names are "own"
            hit = self.lookup.find(use.module, use.path, external=False, assume_external=not use.own_at)
        else:
            hit = self.lookup.find(use.module, use.path, external=not use.own_at)
        verdict = judge(use, hit)
        detail = f"{use.text} ({use.how} at {use.where}): {verdict.detail}"
        if verdict.status is VerdictStatus.MISSING and hit.depth == 0 and use.path:
            moved = self.moved_candidates(target)
            if moved:
                return TargetResult(target, VerdictStatus.MOVED, None, f"{detail}; found as {moved[0]}", moved, applies)
        return TargetResult(target, verdict.status, verdict.found, detail, [], applies, depth=hit.depth)

    def check_register_oot(self, target: Target, applies: bool) -> TargetResult:
        """``CustomOp.register_oot(name="X")`` swaps in the plugin's class wherever vLLM builds its class
        named X: with no vLLM class of that name, the plugin's op is silently never used."""
        use = target.use
        assert use is not None
        owner = self.lookup.find(use.module, use.path)
        homes = [m for m in self.index().get(use.op_name, []) if (f := self.tree.lookup(m, (use.op_name,)))
                 is not None and f.kind == "class" and f.via_alias is None]
        where = f"{use.text} ({use.how} at {use.where})"
        if owner.status is HitStatus.MISSING:
            return TargetResult(target, VerdictStatus.MISSING, None, f"{where}: {owner.detail}", [], applies)
        if not homes:
            verdict = judge(use, Hit(HitStatus.MISSING, detail=f"no vLLM class is named {use.op_name!r}: the plugin's "
                                                        "replacement is never built"))
            return TargetResult(target, verdict.status, None, f"{where}: {verdict.detail}", [], applies)
        return TargetResult(target, VerdictStatus.OK, None, f"{where}: replaces {homes[0]}:{use.op_name}", [], applies)

    def _judge(self, target: Target, fp: str | None, applies: bool) -> TargetResult:
        if target.contract is None:
            return TargetResult(target, VerdictStatus.OK, fp, "present (unpinned)", applies=applies)
        if fp is None:
            return TargetResult(target, VerdictStatus.UNVERIFIABLE, None,
                                "present, but its shape cannot be read from source (external base, "
                                "decorator or computed value); verify with `ascend-overlay status`",
                                applies=applies)
        if _compatible(target, fp):
            return TargetResult(target, VerdictStatus.OK, fp, "matches pin" if fp == target.contract else
                                "matches a declared compatible shape", applies=applies)
        return TargetResult(target, VerdictStatus.DRIFT, fp, explain_drift(target.contract, fp), applies=applies)

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


def lane_serves(lane: str, version: str | None) -> bool | None:
    """Does code under this lane (``vllm_version_is("0.19.0")``, ``not vllm_version_is(...)``, ``and``/
    ``or`` of them) run on ``version``? None when the lane tests more than the version."""
    import ast

    if version is None:
        return None
    try:
        node = ast.parse(lane, mode="eval").body
    except SyntaxError:
        return None

    def value(n: ast.expr) -> bool | None:
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.Not):
            inner = value(n.operand)
            return None if inner is None else not inner
        if isinstance(n, ast.BoolOp):
            values = [value(v) for v in n.values]
            if isinstance(n.op, ast.And):
                return False if False in values else (None if None in values else True)
            return True if True in values else (None if None in values else False)
        if isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) == "vllm_version_is" \
                and n.args and isinstance(n.args[0], ast.Constant) and isinstance(n.args[0].value, str):
            try:
                return Version(n.args[0].value) == Version(version)
            except InvalidVersion:
                return n.args[0].value == version
        return None

    return value(node)


def mark_baseline(report: CheckReport, baseline: CheckReport) -> None:
    """A use broken the same way in the baseline vLLM (the one the subject works with today) is not
    this version's doing: marked, and no longer a break of this check."""
    before = {_use_key(r): r for r in baseline.results}
    for r in report.results:
        was = before.get(_use_key(r))
        if was is not None and was.status == r.status and was.found == r.found and r.status in BREAKING:
            r.already_broken = True
        elif was is not None and was.status is VerdictStatus.OK and r.status is VerdictStatus.OWN:
            # vLLM's base had it in the baseline and lost it: the override is never called now, a
            # ``self.x`` read finds nothing. Alone, one tree cannot tell this from a name of the subclass.
            r.status = VerdictStatus.MISSING
            r.detail += f"; it was vLLM's in the baseline ({baseline.source.version}): gone from vLLM, not the plugin's"


def _use_key(r: TargetResult) -> tuple[Any, ...]:
    return (r.target.target, r.target.patch, r.target.use.where if r.target.use else None,
            r.target.use.how if r.target.use else None)


def table_rows(report: CheckReport) -> list[tuple[str, str, str, str]]:
    """What a person reads at a glance: status first, then who suffers, then why (relied-on names that
    hold are counted below the table, not listed)."""
    rows = []
    for r in report.results:
        if r.target.use is not None and r.status in (VerdictStatus.OK, VerdictStatus.UNVERIFIABLE) and not r.breaks:
            continue
        status = str(r.status).upper() if r.breaks else str(r.status)
        detail = r.detail
        if not r.applies:
            status += " (n/a)"
            detail = f"patch range vllm{r.target.vllm_spec} excludes this version; {detail}"
        if r.defined_in:
            detail += f" [defined in {r.defined_in}]"
        rows.append((status, r.target.patch, r.target.target, detail))
    return rows
