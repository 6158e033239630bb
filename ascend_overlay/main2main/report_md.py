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


def render(report: DriftReport) -> str:
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
           + (", ".join(f"`{p}`" for p in counts["patch_files_affected"]) or "none") + ".", ""]
    for priority in range(5):
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
    out += ["## Renamed / moved files", ""]
    if report.files.renamed:
        out += ["| old | new | similarity |", "|---|---|---|"]
        out += [f"| `{a}` | `{b}` | {s}% |" for a, b, s in report.files.renamed]
    else:
        out.append("None.")
    out.append("")
    return "\n".join(out)
