"""``ascend-overlay hotfix new|verify|manifest``: write, check and sign hotfixes (docs/hotfixes.md)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ascend_overlay.core.errors import OverlayError


def _new(args: argparse.Namespace) -> int:
    from ascend_overlay.cli.authoring import new_hotfix

    try:
        path = new_hotfix(args.name, args.target, Path(args.dir).resolve(), args.phase, args.kind, args.force)
    except (OverlayError, ValueError) as exc:
        print(f"ascend-overlay hotfix new: {exc}", file=sys.stderr)
        return 2
    print(path)
    print(f"next: edit the TODOs, then `ascend-overlay hotfix verify {args.dir}`", file=sys.stderr)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from ascend_overlay.cli import term
    from ascend_overlay.cli.authoring import verify

    # Made absolute, never resolved: a symlink on the way is judged as the runtime meets it (resolving it
    # here would check wherever it pointed at this moment, and not the directory holding the link).
    directory = os.path.abspath(args.dir)
    result = verify(directory, use_cache=not args.no_cache)
    if args.json:
        print(json.dumps({"directory": directory, "ok": result.ok,
                          "findings": [{"path": f.path, "ok": f.ok, "message": f.message} for f in result.findings]},
                         indent=2))
        return 0 if result.ok else 1
    term.print_table(("", "file", "finding"), [("ok" if f.ok else "FAIL", f.path, f.message) for f in result.findings],
                     header=False, keep=1)
    print("verified: all checks passed" if result.ok else "verification FAILED", file=sys.stderr)
    return 0 if result.ok else 1


def _manifest(args: argparse.Namespace) -> int:
    from ascend_overlay.cli.authoring import write_manifest

    try:
        print(write_manifest(Path(args.dir).resolve()))
    except OverlayError as exc:
        print(f"ascend-overlay hotfix manifest: {exc}", file=sys.stderr)
        return 2
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hotfix", help="write, verify and sign drop-in hotfixes")
    hsub = p.add_subparsers(dest="hotfix_command", required=True, metavar="ACTION")
    n = hsub.add_parser("new", help="write a patch skeleton with the live target's contract pinned")
    n.add_argument("name", help="patch name, lower_snake_case")
    n.add_argument("--target", required=True, help="what to patch, e.g. vllm.v1.sample.sampler.Sampler.forward")
    n.add_argument("--phase", default="worker", choices=["import", "platform", "engine_core", "worker"])
    n.add_argument("--kind", default="wrap", choices=["wrap", "replace"])
    n.add_argument("--dir", default=".", help="hotfix directory (default: here)")
    n.add_argument("--force", action="store_true", help="overwrite an existing file")
    n.set_defaults(handler=_new)
    v = hsub.add_parser("verify", help="check a hotfix directory as the overlay would, activating nothing")
    v.add_argument("dir")
    v.add_argument("--json", action="store_true", help="machine-readable output")
    v.add_argument("--no-cache", action="store_true",
                   help="check the built-in patches against the live vLLM too, ignoring remembered answers")
    v.set_defaults(handler=_verify)
    m = hsub.add_parser("manifest", help="write SHA256SUMS pinning every patch file of a directory")
    m.add_argument("dir")
    m.set_defaults(handler=_manifest)
