"""``vllm_changes.md``: the drift report as a person adapting the overlay reads it, top priority first.

P0-P2 list one entry per changed object, because each may need its own fix; each P0/P1 entry ends
with the overlay files to adapt (``VLLM_ASCEND_FILES``, as in vllm-ascend's main2main reports).
Models (P3) and minor changes (P4) are grouped per file: hundreds of per-object lines there would
bury the few that matter; other devices' code is one line.
"""

from __future__ import annotations

from collections import defaultdict

from ascend_overlay.main2main.drift import DriftReport, Entry
from ascend_overlay.main2main.priorities import OTHER_DEVICES, TITLES

_LIST_LIMIT = 8


def _cell(value: str | None) -> str:
    return (value or "-").replace("|", "\\|")


def _patches(entry: Entry) -> str:
    if not entry.patches:
        return "none"
    named = ", ".join(f"`{p}`" for p in entry.patches)
    return f"{named} ({', '.join(entry.patch_names)})" if entry.patch_names else named


def _what(entry: Entry) -> str:
    details = [d for d in entry.details if d != entry.change]
    text = f"{entry.change}: " + "; ".join(details) if details else entry.change
    if entry.old_signature and entry.new_signature and entry.old_signature != entry.new_signature \
            and entry.change not in ("signature (compatible)",):
        text += f" (`{entry.old_signature}` -> `{entry.new_signature}`)"
    return text


def _entry_block(entry: Entry) -> list[str]:
    where = f"{entry.file}:{entry.line}" if entry.line else entry.file
    label = "VLLM_ASCEND_FILES" if entry.priority <= 1 else "patches affected"
    return [f"- **`{entry.object}`** ({where})",
            f"  - what changed: {_what(entry)}",
            f"  - impact: {entry.impact}",
            f"  - {label}: {_patches(entry)}"]


def _other_devices(entries: list[Entry]) -> list[str]:
    files = sorted({e.file for e in entries})
    shown = ", ".join(f"`{f}`" for f in files[:12]) + (f" and {len(files) - 12} more" if len(files) > 12 else "")
    return [f"- {OTHER_DEVICES}: {len(entries)} changes in {len(files)} files, on no NPU code path "
            f"(`--json` lists them): {shown}."]


def _grouped(entries: list[Entry]) -> list[str]:
    by_file: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        by_file[e.file].append(e)
    lines = []
    for file, group in sorted(by_file.items()):
        kinds: dict[str, list[str]] = defaultdict(list)
        for e in group:
            kinds[e.change].append(e.object.rsplit(".", 1)[-1] if e.object != e.file else e.details[0])
        parts = []
        for change, names in sorted(kinds.items()):
            shown = ", ".join(f"`{n}`" for n in names[:_LIST_LIMIT]) + (" ..." if len(names) > _LIST_LIMIT else "")
            parts.append(f"{len(names)} {change} ({shown})")
        patches = sorted({p for e in group for p in e.patches})
        lines.append(f"- `{file}`: {'; '.join(parts)}. Impact: {group[0].impact}. Patches affected: "
                     f"{', '.join(f'`{p}`' for p in patches) or 'none'}")
    return lines


def render(report: DriftReport, *, full: bool = True) -> str:
    """The report; ``full=False`` keeps the counts and the P0/P1 entries (what must be adapted),
    and says how to get the rest (``--all``)."""
    if report.subject == "plugin":
        return render_plugin(report, full=full)
    old, new = report.old, report.new
    counts = report.counts()
    out = [f"# vLLM changes: {old.version or '?'} -> {new.version or '?'}", "",
           "| | old | new |", "|---|---|---|",
           f"| version | {_cell(old.version)} | {_cell(new.version)} |",
           f"| commit | {_cell(old.commit)} | {_cell(new.commit)} |",
           f"| source | {_cell(old.kind + ': ' + old.label)} | {_cell(new.kind + ': ' + new.label)} |", "",
           f"Files in `vllm/`: {counts['files_modified']} modified, {counts['files_added']} added, "
           f"{counts['files_removed']} removed, {counts['files_renamed']} renamed/moved"
           + (f"; {counts['other_files_changed']} other files changed" if counts["other_files_changed"] else "")
           + ".",
           "Entries: " + ", ".join(f"{k} {v}" for k, v in counts["entries"].items()) + ".",
           f"Overlay targets checked: {counts['targets_checked']}, breaking in the new tree: "
           f"{counts['targets_breaking']} (already broken in the old one: {counts['targets_already_broken_in_old']}). "
           "Patch files affected by P0: "
           + (", ".join(f"`{p}`" for p in counts["patch_files_affected"]) or "none") + ".",
           "Retired by their range (their declared vLLM range excludes the new version; not P0): "
           + (", ".join(f"`{r}`" for r in report.retired) or "none") + ".", ""]
    for priority in range(5 if full else 2):
        entries = report.by_priority(priority)
        out += [f"## {TITLES[priority]}", ""]
        if not entries:
            out += ["None.", ""]
            continue
        if priority >= 3:
            other = [e for e in entries if e.area == OTHER_DEVICES]
            rest = [e for e in entries if e.area != OTHER_DEVICES]
            out += (_other_devices(other) if other else []) + _grouped(rest) + [""]
            continue
        by_area: dict[str, list[Entry]] = defaultdict(list)
        for e in entries:
            by_area[e.area].append(e)
        for area, group in sorted(by_area.items()):
            out += [f"### {area} ({len(group)})", ""]
            for e in group:
                out += _entry_block(e)
            out.append("")
    if not full:
        out += [f"P2-P4 ({sum(counts['entries'][f'P{p}'] for p in range(2, 5))} entries) and renamed files are left "
                "out: `ascend-overlay drift --all` writes them too.", ""]
        return "\n".join(out)
    out += ["## Renamed / moved files", ""]
    if report.files.renamed:
        out += ["| old | new | similarity |", "|---|---|---|"]
        out += [f"| `{a}` | `{b}` | {s}% |" for a, b, s in report.files.renamed]
    else:
        out.append("None.")
    out.append("")
    return "\n".join(out)


_RULE = "=" * 80
_PLUGIN_TITLES = {0: "P0 - Breaking Changes (Must Adapt)", 1: "P1 - Important Changes (Should Adapt)",
                  2: "P2 - Moderate Changes (Review Needed)", 3: "P3 - Model Changes",
                  4: "P4 - Configuration/Minor Changes"}


def _plugin_entry(index: int, entry: Entry) -> list[str]:
    where = f"{entry.file}:{entry.line}" if entry.line else entry.file
    lines = [f"### {index}. `{entry.object}` ({entry.change})", f"FILE: {where}", f"CHANGE: {_what(entry)}",
             f"IMPACT: {entry.impact}", "VLLM_ASCEND_FILES:"]
    lines += [f"  - {p}" for p in _grouped_files(entry.patches)] or ["  - (none found)"]
    return lines + [""]


def _grouped_files(places: list[str]) -> list[str]:
    """``a.py:3``, ``a.py:9`` -> ``a.py (lines 3, 9)``: one line per plugin file, with its lines."""
    by_file: dict[str, list[str]] = defaultdict(list)
    for place in places:
        file, _, line = place.rpartition(":")
        if line.isdigit():
            by_file[file].append(line)
        else:
            by_file.setdefault(place, [])
    return [f"{f} (line{'s' if len(ls) > 1 else ''} {', '.join(sorted(set(ls), key=int))})" if ls else f
            for f, ls in sorted(by_file.items())]


def render_plugin(report: DriftReport, *, full: bool = True) -> str:
    """The vllm-ascend main2main skill's ``vllm_changes.md`` template, filled in: P0 are the plugin's
    breaks, P1 what its subclasses inherit and relied-on names that changed but still hold, each
    with ``VLLM_ASCEND_FILES`` (the plugin files and lines to adapt); the rest ranked as for the overlay."""
    import datetime

    old, new = report.old, report.new
    counts = report.counts()
    out = ["# vLLM Changes Relevant to vLLM Ascend", f"# Generated: {datetime.date.today().isoformat()}",
           f"# Old commit: {old.commit or '?'} ({old.version or '?'})",
           f"# New commit: {new.commit or '?'} ({new.version or '?'})",
           f"# Files in vllm/: {counts['files_modified']} modified, {counts['files_added']} added, "
           f"{counts['files_removed']} removed",
           "# Entries: " + ", ".join(f"{k} {v}" for k, v in counts["entries"].items())
           + f"; plugin uses checked: {counts['targets_checked']}", ""]
    for priority in range(5 if full else 2):
        entries = report.by_priority(priority)
        out += [_RULE, f"## {_PLUGIN_TITLES[priority]}", _RULE, ""]
        if not entries:
            out += ["None.", ""]
            continue
        if priority >= 3:
            other = [e for e in entries if e.area == OTHER_DEVICES]
            rest = [e for e in entries if e.area != OTHER_DEVICES]
            out += (_other_devices(other) if other else []) + _grouped(rest) + [""]
            continue
        for index, entry in enumerate(entries, 1):
            out += _plugin_entry(index, entry) if priority <= 1 else _entry_block(entry) + [""]
    if not full:
        out += [f"P2-P4 ({sum(counts['entries'][f'P{p}'] for p in range(2, 5))} entries) are left out: "
                "`ascend-overlay drift --all` writes them too.", ""]
    return "\n".join(out)
