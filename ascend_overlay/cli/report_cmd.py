"""``ascend-overlay report FILE``: what the overlay did, read back from its report file.

The file is what ``VLLM_ASCEND_OVERLAY_REPORT`` (or ``ascend-overlay run --report``) made: JSON lines,
several snapshots per process. This command shows the latest snapshot of each process as one table
row (role, pid, phases, applied / skipped / failed counts, strict), then, per patch, the processes
where it is in effect and why it is not in the others. ``--json`` gives the same to tools;
``--html OUT`` writes one self-contained page (no network, no script) with two pictures: the
process x patch grid, and the vLLM version x patch matrix that ``check`` gives for the releases
the catalog's version ranges name (``report_html``).

Exit codes: 0 shown; 1 a process reports a failed patch or a problem; 2 the file cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ascend_overlay.cli import term
from ascend_overlay.core.report_view import ReportView, load
from ascend_overlay.core.vocabulary import Status


def process_rows(view: ReportView, hosts: bool) -> tuple[list[str], list[list[Any]]]:
    columns = ["role", "pid", *(["host"] if hosts else []), "phases", "applied", "skipped", "failed", "strict"]
    rows: list[list[Any]] = []
    for p in view.processes:
        strict = "?" if p.strict is None else ("yes" if p.strict else "no")
        rows.append([p.role, p.pid, *([p.host] if hosts else []), ",".join(p.phases) or "-",
                     p.applied, p.skipped, p.failed, strict])
    return columns, rows


def print_processes(view: ReportView, stream: Any = None) -> None:
    """The per-process table (``run`` prints this one when its command exits)."""
    hosts = len({p.host for p in view.processes}) > 1
    columns, rows = process_rows(view, hosts)
    term.print_table(columns, rows, keep=len(columns) - 1, stream=stream)
    for p in view.processes:
        for problem in p.problems:
            print(f"problem in {p.label}: {problem}", file=stream or sys.stdout)


def render_text(view: ReportView, path: str) -> None:
    unreadable = f"; {len(view.bad_lines)} unreadable lines ({', '.join(map(str, view.bad_lines[:10]))})" \
        if view.bad_lines else ""
    print(f"{path}: {view.events} snapshots of {len(view.processes)} processes{unreadable}")
    if not view.processes:
        return
    npu = sorted({p.npu for p in view.processes if p.npu})
    if npu:
        print(f"NPU: {', '.join(npu)}")
    print()
    print_processes(view)
    print()
    rows = []
    for patch in view.patches:
        if patch.internal:
            continue
        rows.append([patch.name, patch.phase, ", ".join(patch.applied_in) or "nowhere",
                     "\n".join(patch.elsewhere()) or "-"])
    term.print_table(["patch", "phase", "in effect in", "not in effect in (why)"], rows, keep=2)
    hooks = [p for p in view.patches if p.internal]
    if hooks:
        # A hook point pending in a process is waiting for a module that process never imports: normal.
        broken = [h for h in hooks if any(e.ran and e.status is not Status.PENDING for e in h.not_in)]
        print()
        if not broken:
            print(f"hook points: {len(hooks)}, each in effect wherever its module is imported")
        else:
            term.print_table(["hook point NOT in effect", "where (why)"],
                             [[h.name, "\n".join(h.elsewhere())] for h in broken])


def _report(args: argparse.Namespace) -> int:
    path = str(args.file)
    try:
        view = load(path)
    except OSError as exc:
        print(f"ascend-overlay report: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if args.html is not None:
        from ascend_overlay.cli.report_html import write_page

        try:
            written = write_page(view, path, Path(args.html), versions=args.vllm, fetch=args.fetch)
        except OSError as exc:
            print(f"ascend-overlay report: cannot write {args.html}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        print(f"wrote {written}", file=sys.stderr)
    if args.json:
        print(json.dumps(view.as_dict(), indent=2))
    elif args.html is None:
        render_text(view, path)
    bad = any(p.failed or p.problems for p in view.processes)
    return 1 if bad else 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "what the overlay did in each process, read from a report file (VLLM_ASCEND_OVERLAY_REPORT)"
    p = sub.add_parser("report", help=text, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE", type=Path, help="the report file (JSON lines)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--html", metavar="OUT", type=Path,
                   help="write a self-contained HTML page with the process x patch grid and the vLLM version x "
                        "patch matrix")
    p.add_argument("--vllm", metavar="VERSION", action="append",
                   help="with --html: the vLLM versions of the matrix (repeatable; default: the versions the "
                        "catalog's ranges name, and the installed one)")
    p.add_argument("--fetch", action="store_true",
                   help="with --html: download the versions not in the cache (a vLLM wheel is ~330 MB); without it "
                        "such a version is left out with a note")
    p.set_defaults(handler=_report)
