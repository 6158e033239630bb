"""``ascend-overlay report FILE --html OUT``: one self-contained page with two pictures.

1. The process x patch grid: one row per process (the latest snapshot of each), one column per
   patch and hook point, each cell coloured by what became of that patch in that process; a blank
   cell is a patch whose phase never runs in that process.
2. The vLLM version x patch matrix: ``check`` run against each release the catalog's ranges name
   (``main2main.matrix``): which patch applies, breaks, or is out of its range where.

The page is plain HTML with inline CSS and inline SVG: no script, no font or image to fetch, so it
opens offline, from a mail attachment or a CI artifact, and reads the same everywhere. Every cell
carries a ``<title>`` (the browser's tooltip) with its reason, and ``data-*`` attributes naming its
row, column and state, for tools and tests.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

from ascend_overlay.core.files import write_atomic
from ascend_overlay.core.report_view import NOT_RUN, ProcessRow, ReportView, status_of
from ascend_overlay.core.vocabulary import Status

STATUS_COLOURS = {
    Status.APPLIED: "#2e7d32", Status.INHERITED: "#66bb6a", Status.PARTIAL: "#f9a825",
    Status.PENDING: "#64b5f6", Status.WOULD_APPLY: "#a5d6a7", Status.SKIPPED: "#9e9e9e",
    Status.FAILED: "#c62828", Status.UNPATCHED: "#8d6e63",
}
NOT_RUN_COLOUR = "#ffffff"
UNKNOWN_COLOUR = "#7e57c2"     # a status word this version does not know (a report from another version)

CELL = 22
GAP = 2

CSS = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #212121; }
h1 { font-size: 20px; } h2 { font-size: 17px; margin-top: 32px; }
table.procs { border-collapse: collapse; } table.procs td, table.procs th { padding: 2px 10px; text-align: left; }
table.procs th { border-bottom: 1px solid #bbb; } .muted { color: #666; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 12px; height: 12px; border: 1px solid #999; margin-right: 4px;
            vertical-align: -1px; }
svg text { font: 12px system-ui, -apple-system, "Segoe UI", sans-serif; fill: #212121; }
ul.notes li { color: #8d4e00; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _legend(items: list[tuple[str, str]]) -> str:
    return '<p class="legend">' + "".join(f'<span><i style="background:{c}"></i>{_e(name)}</span>'
                                          for name, c in items) + "</p>"


def _grid(svg_id: str, row_labels: list[str], col_labels: list[str],
          cells: list[list[tuple[str, str, str]]]) -> str:
    """An SVG grid; ``cells[r][c]`` is (colour, state, tooltip)."""
    left = max((len(label) for label in row_labels), default=4) * 7 + 12
    top = max((len(label) for label in col_labels), default=4) * 6 + 16
    # Column labels are turned 50 degrees: the last one reaches about 0.65 of its length to the right.
    width = left + len(col_labels) * (CELL + GAP) + max((len(label) for label in col_labels), default=4) * 5 + 20
    height = top + len(row_labels) * (CELL + GAP) + 8
    out = [f'<svg id="{svg_id}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img">']
    for c, label in enumerate(col_labels):
        x = left + c * (CELL + GAP) + CELL // 2
        out.append(f'<text x="{x}" y="{top - 6}" transform="rotate(-50 {x} {top - 6})">{_e(label)}</text>')
    for r, label in enumerate(row_labels):
        y = top + r * (CELL + GAP)
        out.append(f'<text x="{left - 8}" y="{y + CELL - 7}" text-anchor="end">{_e(label)}</text>')
        for c, (colour, state, tip) in enumerate(cells[r]):
            x = left + c * (CELL + GAP)
            out.append(f'<rect class="cell" x="{x}" y="{y}" width="{CELL}" height="{CELL}" fill="{colour}" '
                       f'stroke="#bdbdbd" data-row="{_e(label)}" data-column="{_e(col_labels[c])}" '
                       f'data-state="{_e(state)}"><title>{_e(tip)}</title></rect>')
    out.append("</svg>")
    return "\n".join(out)


def _process_cell(proc: ProcessRow, name: str, phase: str) -> tuple[str, str, str]:
    out = proc.outcomes.get(name)
    if out is None:
        return NOT_RUN_COLOUR, NOT_RUN, f"{name} in {proc.label}: {NOT_RUN} (its {phase} phase does not run there)"
    status = status_of(out)
    colour = STATUS_COLOURS.get(status, UNKNOWN_COLOUR) if status is not None else UNKNOWN_COLOUR
    reason = out.get("reason") or out.get("code") or ""
    return colour, str(out.get("status")), f"{name} in {proc.label}: {out.get('status')}" + (f" ({reason})"
                                                                                              if reason else "")


def process_grid(view: ReportView) -> str:
    patches = view.patches   # patches first, hook points last (report_view's order)
    rows = [p.label + (f" @{p.host}" if len({q.host for q in view.processes}) > 1 else "") for p in view.processes]
    cols = [p.name + (" (hook)" if p.internal else "") for p in patches]
    cells = [[_process_cell(proc, patch.name, patch.phase) for patch in patches] for proc in view.processes]
    used = {status_of(o) for proc in view.processes for o in proc.outcomes.values()}
    legend = [(s.value, c) for s, c in STATUS_COLOURS.items() if s in used] + [("not run here", NOT_RUN_COLOUR)]
    return _grid("process-grid", rows, cols, cells) + _legend(legend)


def _process_table(view: ReportView) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("role", "pid", "host", "phases", "applied", "skipped", "failed",
                                             "strict", "NPU"))
    rows = []
    for p in view.processes:
        strict = "?" if p.strict is None else ("yes" if p.strict else "no")
        cells = (p.role, p.pid, p.host, ",".join(p.phases) or "-", p.applied, p.skipped, p.failed, strict,
                 p.npu or "-")
        rows.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    return f'<table class="procs"><tr>{head}</tr>{"".join(rows)}</table>'


def version_matrix(matrix: Any) -> str:
    from ascend_overlay.main2main.matrix import Verdict

    colours = {Verdict.APPLIES: "#2e7d32", Verdict.BREAKS: "#c62828", Verdict.RETIRED: "#9e9e9e",
               Verdict.NOT_YET: "#e0e0e0"}
    checked = matrix.checked
    rows = [f"{r.name}" + ("" if r.kind == "patch" else f" ({r.kind})") for r in matrix.rows]
    cols = [c.version for c in checked]
    cells = []
    for row in matrix.rows:
        line = []
        for column in checked:
            verdict, why = row.cells[column.version]
            line.append((colours[verdict], verdict.value, f"{row.name} on vLLM {column.version}: {verdict.value}: {why}"))
        cells.append(line)
    parts = []
    if checked:
        parts.append(_grid("version-matrix", rows, cols, cells))
        parts.append(_legend([(v.value, c) for v, c in colours.items()]))
        parts.append("<p class=\"muted\">Read from: " + "; ".join(f"{_e(c.version)}: {_e(c.source)}" for c in checked)
                     + "</p>")
    else:
        parts.append('<p id="version-matrix-empty">No version could be read: see the notes.</p>')
    notes = [c for c in matrix.columns if c.note]
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>vLLM {_e(c.version)} left out: {_e(c.note)}</li>"
                                                    for c in notes) + "</ul>")
    return "\n".join(parts)


def build_matrix(versions: list[str] | None, fetch: bool) -> Any:
    """The version x patch matrix for the catalog of this environment (with progress on a terminal)."""
    from ascend_overlay.cli import term
    from ascend_overlay.core.errors import OverlayError
    from ascend_overlay.core.settings import Settings
    from ascend_overlay.core.vllm_version import installed_from_metadata
    from ascend_overlay.main2main import matrix
    from ascend_overlay.main2main.targets import overlay_targets

    try:
        hotfix_dirs = Settings.from_env().hotfix_dirs
    except OverlayError:
        hotfix_dirs = ()
    targets, _problems = overlay_targets(hotfix_dirs)
    installed = installed_from_metadata()
    wanted = versions or matrix.declared_versions({t.vllm_spec for t in targets if t.vllm_spec},
                                                  str(installed) if installed else None)
    with term.progress("checking vLLM versions", len(wanted)) as advance:
        return matrix.build(targets, wanted, fetch=fetch, step=advance)


def render(view: ReportView, path: str, matrix: Any) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    npu = sorted({p.npu for p in view.processes if p.npu})
    summary = (f"{view.events} snapshots of {len(view.processes)} processes"
               + (f" on the {', '.join(npu)} NPU" if npu else "")
               + (f"; {len(view.bad_lines)} unreadable lines" if view.bad_lines else ""))
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>ascend-overlay report: {_e(Path(path).name)}</title>", f"<style>{CSS}</style></head><body>",
        "<h1>ascend-overlay report</h1>",
        f'<p class="muted">{_e(path)}: {_e(summary)}. Written {_e(when)}.</p>',
        "<h2>Processes x patches</h2>",
        "<p>What became of each patch in each process (its latest snapshot). Hover a cell for the reason.</p>",
        process_grid(view), _process_table(view),
        "<h2>vLLM versions x patches</h2>",
        "<p>Which patch applies, breaks, or lies outside its version range on each vLLM release its ranges "
        "name, read from each release's source by <code>ascend-overlay check</code> (nothing imported).</p>",
        version_matrix(matrix), "</body></html>", ""])


def write_page(view: ReportView, path: str, out: Path, versions: list[str] | None = None,
               fetch: bool = False) -> Path:
    return write_atomic(out, render(view, path, build_matrix(versions, fetch)))
