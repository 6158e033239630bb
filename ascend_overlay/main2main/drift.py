"""``ascend-overlay drift OLD NEW``: what changed in vLLM, ranked by what it means for the overlay.

The comparison runs in three parts: file hashes say which modules changed (cheap), griffe compares
just those modules in worker processes (the expensive part, split over the cores), and the overlay's
own targets are checked on both trees meanwhile. Each API difference then becomes an entry with a
priority: P0 when it touches a patch target or hook point (or adds an abstract ``Platform`` method),
else by area (see ``priorities``).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from typing import Any

from ascend_overlay.core.reliance.model import UseKind, VerdictStatus
from ascend_overlay.main2main import api_diff, files, platform_api, priorities, relevance
from ascend_overlay.main2main.check import BREAKING, Checker, TargetResult, source_dict
from ascend_overlay.main2main.sources import VllmSource
from ascend_overlay.main2main.targets import Target, patches_by_module
from ascend_overlay.main2main.tree import StaticTree

PACKAGE = "vllm"


@dataclass
class Entry:
    priority: int
    area: str
    file: str
    object: str
    change: str            # removed | moved | signature | signature (compatible) | added | kind | ...
    details: list[str]
    impact: str
    patches: list[str]     # overlay patch files affected (P0) or holding targets in the same module
    line: int | None = None
    old_signature: str | None = None
    new_signature: str | None = None
    patch_names: list[str] = field(default_factory=list)
    confirmed: bool = False  # a break ``check`` also finds in NEW (only these make drift exit 1)


@dataclass
class DriftReport:
    old: VllmSource
    new: VllmSource
    files: files.FileChanges
    entries: list[Entry]
    old_targets: list[TargetResult]
    new_targets: list[TargetResult]
    other_files: list[tuple[str, int]] = field(default_factory=list)  # git mode: non-package files, lines
    seconds: float = 0.0
    retired: list[str] = field(default_factory=list)  # patches whose declared range excludes NEW
    subject: str = "overlay"

    @property
    def confirmed_p0(self) -> list[Entry]:
        """P0 entries ``check`` would also call a break: what decides drift's exit code."""
        return [e for e in self.by_priority(0) if e.confirmed]

    def by_priority(self, priority: int) -> list[Entry]:
        return [e for e in self.entries if e.priority == priority]

    @property
    def affected_patches(self) -> list[str]:
        return sorted({p for e in self.by_priority(0) for p in e.patches})

    def counts(self) -> dict[str, Any]:
        return {"files_modified": len(self.files.modified), "files_added": len(self.files.added),
                "files_removed": len(self.files.removed), "files_renamed": len(self.files.renamed),
                "other_files_changed": len(self.other_files),
                "entries": {f"P{p}": len(self.by_priority(p)) for p in range(5)},
                "targets_checked": len(self.new_targets),
                "targets_breaking": sum(1 for r in self.new_targets if r.status in BREAKING),
                "targets_already_broken_in_old": sum(1 for r in self.old_targets if r.status in BREAKING),
                "patch_files_affected": self.affected_patches, "p0_confirmed_by_check": len(self.confirmed_p0),
                "retired_by_range": list(self.retired)}

    def as_dict(self) -> dict[str, Any]:
        return {"old": source_dict(self.old), "new": source_dict(self.new), "counts": self.counts(),
                "entries": [asdict(e) for e in self.entries],
                "renamed_files": [{"old": a, "new": b, "similarity": s} for a, b, s in self.files.renamed],
                "targets": {"old": [r.as_dict() for r in self.old_targets],
                            "new": [r.as_dict() for r in self.new_targets]},
                "other_files": [{"file": f, "lines": n} for f, n in self.other_files],
                "retired_by_range": list(self.retired), "subject": self.subject,
                "seconds": round(self.seconds, 2)}


# -- running the API comparison in parallel ------------------------------------------------------

def _partition(modules: list[str], sizes: dict[str, int], workers: int) -> list[list[str]]:
    """Balanced groups (by bytes) that keep each directory together, so cross-module resolution
    (aliases, inherited members) stays inside one worker as often as possible."""
    packages = _packages(modules)
    groups: dict[str, list[str]] = {}
    for name in modules:
        # A package travels with its own modules: a removed package must be seen whole by one worker.
        key = name if name in packages else name.rpartition(".")[0]
        groups.setdefault(".".join(key.split(".")[:3]), []).append(name)
    buckets: list[tuple[int, list[str]]] = [(0, []) for _ in range(workers)]
    for _key, names in sorted(groups.items(), key=lambda kv: -sum(sizes.get(n, 0) for n in kv[1])):
        weight = sum(sizes.get(n, 0) for n in names)
        index = min(range(workers), key=lambda i: buckets[i][0])
        buckets[index] = (buckets[index][0] + weight, buckets[index][1] + names)
    return [names for _, names in buckets if names]


def _packages(modules: list[str]) -> set[str]:
    names = set(modules)
    return {n.rpartition(".")[0] for n in names if n.rpartition(".")[0] in names}


def _merge_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Workers may both report what sits on their shared parent chain (a removed package): keep one."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for item in items:
        key = (item["object"], item["change"])
        if key in merged:
            merged[key]["details"] += [d for d in item["details"] if d not in merged[key]["details"]]
        else:
            merged[key] = item
    return list(merged.values())


def _workers() -> int:
    raw = os.environ.get("ASCEND_OVERLAY_WORKERS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return max(1, min(2, os.cpu_count() or 1))


def _run_api_diff(old: VllmSource, new: VllmSource, modules: list[str], sizes: dict[str, int],
                  meanwhile: Callable[[], Any], relevant: frozenset[str] = frozenset()
                  ) -> tuple[list[dict[str, Any]], Any]:
    workers = _workers()
    if workers == 1 or len(modules) < 40:
        return api_diff.analyze(str(old.root), str(new.root), modules, PACKAGE, relevant), meanwhile()
    parts = _partition(modules, sizes, workers)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    side = None
    try:
        with ProcessPoolExecutor(max_workers=len(parts), mp_context=multiprocessing.get_context(method)) as pool:
            futures = [pool.submit(api_diff.analyze, str(old.root), str(new.root), part, PACKAGE, relevant)
                       for part in parts]
            side = meanwhile()
            items = [item for f in futures for item in f.result()]
    except (BrokenProcessPool, OSError):  # no processes to be had (limits, memory): do it here instead
        items = api_diff.analyze(str(old.root), str(new.root), modules, PACKAGE, relevant)
        if side is None:
            side = meanwhile()
    return _merge_items(items), side


# -- turning items into entries --------------------------------------------------------------------

def _module_of_object(path: str, module_names: set[str]) -> str:
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        if ".".join(parts[:cut]) in module_names:
            return ".".join(parts[:cut])
    return path


def _merge_moves(items: list[dict[str, Any]], renamed: dict[str, str]) -> list[dict[str, Any]]:
    """A removed class/function whose name appears as new in another module was moved, not lost."""
    added: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for item in items:
        if item["change"] == "added" and item["kind"] in ("class", "function") and item["public"] \
                and item.get("toplevel"):
            added.setdefault((item["object"].rsplit(".", 1)[-1], item["kind"]), []).append(item)
    consumed: set[int] = set()
    for item in items:
        if item["change"] != "removed":
            continue
        if item["kind"] == "module" and item["file"] in renamed:
            item["change"] = "moved"
            item["details"] = [f"module file renamed to {renamed[item['file']]}"]
            continue
        if not item.get("toplevel"):
            continue  # a method name recurs in many classes: a name match proves nothing
        candidates = [c for c in added.get((item["object"].rsplit(".", 1)[-1], item["kind"]), [])
                      if id(c) not in consumed]
        if candidates:
            target = candidates[0]
            consumed.add(id(target))
            item["change"] = "moved"
            item["details"] = [f"now {target['object']} ({target['file']})"]
            item["moved_to"] = target["object"]
    return [i for i in items if id(i) not in consumed]


def _target_key(t: Target) -> str:
    return ".".join((t.module, *t.path))


class _TargetIndex:
    """Which targets a change touches: the target itself; for an edited target (not a merely relied-on
    name), a member of it (a member of a targeted class changed); and for a removal or move, every
    target inside what went (a removed class or module). Indexed, because a plugin brings thousands
    of targets and a release thousands of changes."""

    def __init__(self, targets: list[Target]) -> None:
        self.by_key: dict[str, list[Target]] = {}
        self.by_ancestor: dict[str, list[Target]] = {}
        self.by_module: dict[str, list[Target]] = {}
        for t in targets:
            key = _target_key(t)
            self.by_key.setdefault(key, []).append(t)
            self.by_module.setdefault(t.module, []).append(t)
            parts = key.split(".")
            for cut in range(1, len(parts)):
                self.by_ancestor.setdefault(".".join(parts[:cut]), []).append(t)

    def hits(self, obj: str, change: str) -> list[Target]:
        found: dict[int, Target] = {id(t): t for t in self.by_key.get(obj, [])}
        if change != "added":  # a member of an edited (not merely relied-on) target changed
            parts = obj.split(".")
            for cut in range(1, len(parts)):
                for t in self.by_key.get(".".join(parts[:cut]), []):
                    if t.use is None:
                        found.setdefault(id(t), t)
        if change in ("removed", "moved"):
            for t in self.by_ancestor.get(obj, []) + self.by_module.get(obj, []):
                found.setdefault(id(t), t)
        return list(found.values())


def build_entries(items: list[dict[str, Any]], targets: list[Target], old_results: list[TargetResult],
                  new_results: list[TargetResult], new_abstract: dict[str, int],
                  module_names: set[str], renamed: dict[str, str],
                  inherited: dict[str, set[str]] | None = None, *, new_version: str | None = None,
                  retired: list[str] | None = None, platform_files: list[str] | None = None) -> list[Entry]:
    """One entry per change, ranked: P0 when it touches what the overlay edits, or a relied-on name
    that ``check`` finds broken in NEW (the use, not the kind of change, decides: a renamed
    parameter breaks nothing when the overlay passes it by position); P1 when it touches a
    relied-on name that still holds, or a public member of a class the NPU path inherits
    (``relevance``); the rest by area (``priorities``)."""
    near = patches_by_module(targets)
    inherited = inherited or {}
    entries: list[Entry] = []
    p0_objects: dict[str, Entry] = {}
    from ascend_overlay.main2main.check import _applies

    index = _TargetIndex(targets)
    for item in _merge_moves(items, renamed):
        hits = index.hits(item["object"], item["change"])
        details = list(item["details"])
        gone = [t for t in hits if t.vllm_spec and not _applies(t.vllm_spec, new_version)]
        for t in gone:  # a patch whose range excludes NEW is retired by it, whatever changed
            label = f"{t.patch} (vllm{t.vllm_spec})"
            if retired is not None and label not in retired:
                retired.append(label)
        hits = [t for t in hits if not any(t is g for g in gone)]
        edited = [t for t in hits if t.use is None]
        relied = [t for t in hits if t.use is not None]
        if edited:
            entry = Entry(0, priorities.area_of(item["file"])[0], item["file"], item["object"], item["change"],
                          details, _p0_impact(item["change"], hits), sorted({t.where for t in hits}),
                          item.get("line"), item.get("old_signature"), item.get("new_signature"),
                          sorted({t.patch for t in hits}))
            p0_objects[item["object"]] = entry
        elif relied:
            who = "the plugin" if any(t.subject == "plugin" for t in relied) else "the overlay"
            entry = Entry(1, f"relied on by {who}", item["file"], item["object"], item["change"], details,
                          _relied_impact(item["change"], relied), sorted({t.where for t in relied}),
                          item.get("line"), item.get("old_signature"), item.get("new_signature"),
                          sorted({t.patch for t in relied}))
            p0_objects[item["object"]] = entry  # promoted to P0 below if check finds it broken
        elif (owner := relevance.owning_class(item["object"], inherited)) is not None and item["public"]:
            area = f"inherited: {owner.rsplit('.', 1)[-1]}"
            entry = Entry(1, area, item["file"], item["object"], item["change"], details,
                          priorities.impact(1, item["change"], area, item["object"]), sorted(inherited[owner]),
                          item.get("line"), item.get("old_signature"), item.get("new_signature"))
        else:
            if item["object"].rsplit(".", 1)[-1] in new_abstract and item["object"].startswith(
                    f"{platform_api.PLATFORM_MODULE}.{platform_api.PLATFORM_CLASS}."):
                continue  # reported as a new abstract method below
            priority, area = priorities.classify(item["file"], item["change"], item["public"])
            module = _module_of_object(item["object"], module_names)
            entry = Entry(priority, area, item["file"], item["object"], item["change"], details,
                          priorities.impact(priority, item["change"], area, item["object"]),
                          sorted(near.get(module, ())), item.get("line"), item.get("old_signature"),
                          item.get("new_signature"))
        entries.append(entry)
    entries += _target_entries(old_results, new_results, p0_objects, new_version, retired)
    entries += _abstract_entries(new_abstract, targets, platform_files)
    entries.sort(key=lambda e: (e.priority, e.area, e.file, e.object))
    return entries


def _relied_impact(change: str, hits: list[Target]) -> str:
    names = ", ".join(sorted({t.patch for t in hits}))
    uses = "; ".join(sorted({f"{t.use.text} ({t.use.where})" for t in hits if t.use is not None})[:3])
    if change == "added":
        return f"{names}: uses it ({uses}); it is new here, check the use still means what it did"
    return f"{names}: uses it ({uses}); `check` finds the use still holds, re-check its behaviour"


def _p0_impact(change: str, hits: list[Target]) -> str:
    names = ", ".join(sorted({t.patch for t in hits}))
    if change in ("removed", "moved"):
        return f"{names}: target gone from where the patch looks; the patch is skipped (or fails in strict mode)"
    if change == "added":
        return f"{names}: the patched class gained a member; check the override still covers it"
    return f"{names}: the patched code changed shape; re-pin the contract after adapting the patch"


def _newly_broken(was: TargetResult | None, now: TargetResult) -> bool:
    """Broken in NEW and not the same way in OLD; or an override that vLLM's base stopped having (it
    held in OLD, and is only the subclass's own now: vLLM never calls it)."""
    if now.status is VerdictStatus.OWN:
        return was is not None and was.status is VerdictStatus.OK
    if now.status not in BREAKING:
        return False
    return was is None or not (was.status == now.status and was.found == now.found and was.moved_to == now.moved_to)


def _target_entries(old_results: list[TargetResult], new_results: list[TargetResult],
                    p0_objects: dict[str, Entry], new_version: str | None = None,
                    retired: list[str] | None = None) -> list[Entry]:
    """Every target the new tree breaks gets a P0 entry, even when no griffe difference named it
    (a private target, a hook point whose pin drifted, a module that moved). A patch whose declared
    range excludes NEW is retired by its range instead: listed, never P0."""
    from ascend_overlay.main2main.check import _applies

    before = {r.target.target: r for r in old_results}
    paired = len(old_results) == len(new_results)
    out = []
    for index, r in enumerate(new_results):
        t = r.target
        was = old_results[index] if paired and old_results[index].target is t else before.get(t.target)
        if not _newly_broken(was, r):
            continue  # broken the same way in OLD: not a change between the two (see the targets table)
        if t.vllm_spec and not _applies(t.vllm_spec, new_version):
            if retired is not None:
                label = f"{t.patch} (vllm{t.vllm_spec})"
                if label not in retired:
                    retired.append(label)
            continue
        key = _target_key(t)
        if r.status in (VerdictStatus.MISSING, VerdictStatus.OWN) and r.depth is not None and r.depth + 1 < len(t.path):
            key = ".".join((t.module, *t.path[:r.depth + 1]))  # ``X.gone.append``: the entry is ``X.gone``
        text = f"check: {r.status}: {r.detail}"
        if r.status is VerdictStatus.OWN:
            dead = "the override is never called" if t.use is not None and t.use.how is UseKind.OVERRIDE \
                else "reading it finds nothing"
            text = f"check: vLLM's base no longer has it, so {dead}: {r.detail}"
        existing = p0_objects.get(key)
        if existing is not None:
            if existing.priority != 0:  # a P1 relied-on entry that check finds broken is P0
                existing.impact = _use_impact(r) if t.subject == "plugin" else _p0_impact(existing.change, [t])
            existing.priority = 0
            existing.confirmed = True
            if text not in existing.details and len(existing.details) < 6:
                existing.details.append(text)
            if t.where not in existing.patches:
                existing.patches = sorted({*existing.patches, t.where})
                existing.patch_names = sorted({*existing.patch_names, t.patch})
            continue
        change = {"missing": "removed", "moved": "moved", "drift": "signature", "own": "removed"}[r.status]
        file = t.module.replace(".", "/") + ".py"
        impact = _use_impact(r) if t.subject == "plugin" else _p0_impact(change, [t])
        entry = Entry(0, priorities.area_of(file)[0], file, key, change, [text], impact,
                      [t.where], None, t.contract, r.found, [t.patch], confirmed=True)
        p0_objects[key] = entry
        out.append(entry)
    return out


def _use_impact(r: TargetResult) -> str:
    """What a plugin's broken use does in NEW, and the adaptation, in its maintainer's terms."""
    use = r.target.use
    how = use.how if use is not None else None
    if r.status is VerdictStatus.OWN:
        what = "vLLM no longer calls this override" if how is UseKind.OVERRIDE else "the name is gone from vLLM's base"
    elif r.status is VerdictStatus.MOVED:
        what = f"the name moved ({', '.join(r.moved_to) or 'see above'}): import it from its new home"
    elif r.status is VerdictStatus.MISSING:
        what = {"import": "the import fails (ImportError) when the file loads",
                "patch": "the monkey patch's target is gone: it patches nothing, or fails",
                "register_oot": "no vLLM class of that name is left: the plugin's op is never built",
                "override": "vLLM's base no longer has this method: the override is never called"}.get(
            str(how), "the name is gone: AttributeError where the plugin reads or calls it")
    else:
        what = {"override": "vLLM now calls this method with a shape the override does not accept",
                "patch": "the replacement no longer accepts vLLM's calls",
                "call": "the call no longer fits vLLM's new shape"}.get(str(how), "its shape changed")
    lane = f"; it sits in the lane `{use.lane}`: if that lane is for the old release, delete the lane" \
        if use is not None and use.lane else ""
    return what + lane


def _abstract_entries(new_abstract: dict[str, int], targets: list[Target],
                      platform_files: list[str] | None = None) -> list[Entry]:
    if not new_abstract:
        return []
    if platform_files is None:
        platform_files = platform_api.overlay_platform_files()
    platform_targets = [t for t in targets if t.module.startswith("vllm.platforms")
                        and (t.subject != "plugin" or (t.use is not None and t.use.how is UseKind.OVERRIDE))]
    patches = sorted({*platform_files, *(t.patch_file for t in platform_targets)})
    names = sorted({t.patch for t in platform_targets})
    file = platform_api.PLATFORM_MODULE.replace(".", "/") + ".py"
    implemented = {t.path[-1] for t in targets if t.use is not None and t.use.how is UseKind.OVERRIDE
                   and t.module.startswith("vllm.platforms") and len(t.path) == 2}
    out = []
    for name, line in sorted(new_abstract.items()):
        obj = f"{platform_api.PLATFORM_MODULE}.{platform_api.PLATFORM_CLASS}.{name}"
        out.append(Entry(0, "platforms", file, obj, "new abstract method",
                         [f"Platform.{name} is new and abstract (raises NotImplementedError or @abstractmethod)"],
                         "every out-of-tree platform, the NPU platform included, must implement it or fail "
                         "when vLLM calls it", patches or ["(no overlay platform class found)"], line,
                         patch_names=names, confirmed=name not in implemented))
    return out


# -- the whole comparison --------------------------------------------------------------------------

def relevant_private(targets: list[Target]) -> frozenset[str]:
    """Dotted paths of private vLLM members a subject overrides, calls or patches: compared by drift
    even though they are not public API (they are exactly what plugins touch)."""
    out = set()
    for t in targets:
        if any(p.startswith("_") and not (p.startswith("__") and p.endswith("__")) for p in t.path) \
                or t.path[-1:] == ("__init__",):
            out.add(_target_key(t))
    return frozenset(out)


def api_items(old: VllmSource, new: VllmSource, relevant: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """The API differences of two trees alone (what ``compare`` spends its time on), to reuse."""
    changes = files.compare(old.root, new.root, PACKAGE)
    names = {files.module_name(p): p for p in changes.changed_python}
    modules = sorted(n for n in names if n)
    sizes = {n: changes.sizes.get(p, 0) for n, p in names.items() if n}
    return _run_api_diff(old, new, modules, sizes, lambda: None, relevant)[0]


def compare(old: VllmSource, new: VllmSource, targets: list[Target],
            other_files: list[tuple[str, int]] | None = None,
            renames: list[tuple[str, str, int]] | None = None, *, subject: str = "overlay",
            progress: Callable[[str], None] | None = None,
            api_items: list[dict[str, Any]] | None = None) -> DriftReport:
    """Compare two trees. ``renames`` (from git) replaces content-based rename detection. ``subject``
    "plugin": the targets are a plugin's uses (no overlay interfaces or platform files are added)."""
    start = time.perf_counter()
    say = progress or (lambda _text: None)
    say("hashing files")
    changes = files.compare(old.root, new.root, PACKAGE)
    if renames is not None:
        changes.renamed = [r for r in renames if r[0].startswith(PACKAGE + "/")]
    names = {files.module_name(p): p for p in changes.changed_python}
    modules = sorted(n for n in names if n)
    sizes = {n: changes.sizes.get(p, 0) for n, p in names.items() if n}

    def targets_and_platform() -> tuple[list[TargetResult], list[TargetResult], dict[str, int], dict[str, set[str]]]:
        from ascend_overlay.core.reliance import gc_paused

        old_tree, new_tree = StaticTree(old.root), StaticTree(new.root)
        old_checker, new_checker = Checker(old_tree), Checker(new_tree)
        say(f"checking {len(targets)} uses on both trees")
        with gc_paused():
            old_results = [old_checker.check(t, old.version, ignore_ranges=True) for t in targets]
            new_results = [new_checker.check(t, new.version, ignore_ranges=True) for t in targets]
        roots = relevance.inherited_roots(targets, interfaces=subject != "plugin")
        inherited = relevance.inherited_classes(old_tree, roots)
        for cls, overlay_files in relevance.inherited_classes(new_tree, roots).items():
            inherited.setdefault(cls, set()).update(overlay_files)
        return old_results, new_results, platform_api.new_abstract_methods(old_tree, new_tree), inherited

    say(f"comparing {len(modules)} changed modules")
    if api_items is not None:  # the same two trees compared before (an evaluation over many plugin versions)
        items, (old_results, new_results, new_abstract, inherited) = api_items, targets_and_platform()
    else:
        items, (old_results, new_results, new_abstract, inherited) = _run_api_diff(
            old, new, modules, sizes, targets_and_platform, relevant_private(targets))
    say("ranking")
    module_names = set(modules) | {t.module for t in targets}
    retired: list[str] = []
    entries = build_entries(items, targets, old_results, new_results, new_abstract, module_names,
                            {a: b for a, b, _ in changes.renamed}, inherited, new_version=new.version,
                            retired=retired, platform_files=[] if subject == "plugin" else None)
    for path, lines in other_files or []:
        priority, area = priorities.classify_file(path)
        entries.append(Entry(priority, area, path, path, "file changed", [f"{lines} lines changed"],
                             priorities.impact(priority, "file changed", area, path), []))
    report = DriftReport(old, new, changes, entries, old_results, new_results, list(other_files or []),
                         retired=retired, subject=subject)
    report.seconds = time.perf_counter() - start
    return report
