"""``ascend-overlay status`` and ``ascend-overlay list``: what the overlay would do here, and why.

Both exit 0 when nothing needs fixing and 1 when something does (a bad setting, a refused hotfix, a
patch or hook point that should apply but cannot), so scripts and CI can gate on them.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ascend_overlay.core.status import collect
from ascend_overlay.core.vocabulary import Status


def _vllm_line(data: dict[str, Any]) -> str:
    dist = data["vllm_distribution"] or "-"
    if data["version_override"] and data["vllm_version"] != data["vllm_installed"]:
        return (f"{data['vllm_version']} (from VLLM_VERSION; installed: {data['vllm_installed'] or 'none'}, "
                f"{dist})")
    return f"{data['vllm_version'] or 'not installed'} ({dist})"


def _status(args: argparse.Namespace) -> int:
    data = collect(check_contracts=not args.no_contracts)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0 if data["ok"] else 1
    state = "ON" if data["overlay_enabled"] else "off (set VLLM_ASCEND_OVERLAY=1 or use `ascend-overlay run`)"
    print(f"overlay: {state}{'  [strict]' if data['strict'] else ''}")
    print(f"vLLM:    {_vllm_line(data)}")
    print(f"host:    {data['host']}")
    if data["npu"]:
        print(f"npu:     {data['npu']}")
    for error in data["errors"]:
        print(f"error:   {error}")
    for ref in data["refused"]:
        print(f"refused: {ref['path']}: {ref['message']}")
    broken_hooks = [h for h in data["hooks"] if Status(h["status"]) is not Status.WOULD_APPLY]
    for hook in broken_hooks:
        print(f"error:   hook point {hook['name']} would not apply ({hook['reason']}): its phase never fires")
    print()
    width = max((len(r["name"]) for r in data["patches"]), default=10)
    for row in data["patches"]:
        hint = f"; {row['hint']}" if row["hint"] and row["problem"] else ""
        print(f"  {row['status']:<12} {row['name']:<{width}}  {row['phase']:<11} {row['source']:<10} "
              f"{row['reason']}{hint}")
    if not data["ok"]:
        print("\nsomething needs fixing (see error/refused lines and the skipped patches' reasons)")
    return 0 if data["ok"] else 1


def _list(args: argparse.Namespace) -> int:
    data = collect(check_contracts=not args.no_contracts)
    if args.json:
        print(json.dumps({key: data[key] for key in ("patches", "hooks", "variables")}, indent=2))
        return 0 if data["ok"] else 1
    for row in data["patches"] + data["hooks"]:
        print(f"{row['name']}  [{row['status']}{': ' + row['reason'] if row['reason'] else ''}]")
        print(f"  phase {row['phase']}, vLLM {row['vllm']}, default {row['default']}, kind {row['kind']}, "
              f"source {row['source']}{', internal hook point' if row['internal'] else ''}")
        if row["requires"]:
            print(f"  requires: {', '.join(row['requires'])}")
        for t in row["targets"]:
            print(f"  {t['kind']:<8} {t['target']}  contract {t['contract'] or '(unpinned)'}")
        for v in row["variables"]:
            print(f"  variable {v['name']}: {v['doc']} ({v['accepted']}; default {v['default']!r})")
        print(f"  why: {row['why']}")
        if row["upstream"]:
            print(f"  upstream: {row['upstream']}")
        print(f"  remove when: {row['remove_when']}")
        print()
    print("variables:")
    for v in data["variables"]:
        print(f"  {v['name']}  [{v['owner']}] {v['doc']} ({v['accepted']}; default {v['default']!r})")
    return 0 if data["ok"] else 1


def add_parsers(sub: argparse._SubParsersAction) -> None:
    for name, handler, text in (("status", _status, "what would apply on this install, without starting an engine"),
                                ("list", _list, "every patch, hook point and variable, with its status here")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("--no-contracts", action="store_true",
                       help="skip contract checks (they import the target modules)")
        p.set_defaults(handler=handler)
