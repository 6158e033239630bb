"""``ascend-overlay status`` and ``ascend-overlay list``: what the overlay would do here, and why."""

from __future__ import annotations

import argparse
import json

from ascend_overlay.status import collect


def _status(args: argparse.Namespace) -> int:
    data = collect(check_contracts=not args.no_contracts)
    if args.json:
        print(json.dumps(data, indent=2))
        return 1 if data["errors"] else 0
    state = "ON" if data["overlay_enabled"] else "off (set VLLM_ASCEND_OVERLAY=1 or use `ascend-overlay run`)"
    print(f"overlay: {state}{'  [strict]' if data['strict'] else ''}")
    print(f"vLLM:    {data['vllm_version'] or 'not installed'} ({data['vllm_distribution'] or '-'})")
    for error in data["errors"]:
        print(f"error:   {error}")
    for ref in data["refused"]:
        print(f"refused: {ref['path']}: {ref['message']}")
    print()
    width = max((len(r["name"]) for r in data["patches"]), default=10)
    for row in data["patches"]:
        print(f"  {row['status']:<12} {row['name']:<{width}}  {row['phase']:<11} {row['source']:<10} {row['reason']}")
    return 1 if data["errors"] else 0


def _list(args: argparse.Namespace) -> int:
    data = collect(check_contracts=not args.no_contracts)
    if args.json:
        print(json.dumps(data["patches"], indent=2))
        return 0
    for row in data["patches"]:
        print(f"{row['name']}  [{row['status']}{': ' + row['reason'] if row['reason'] else ''}]")
        print(f"  phase {row['phase']}, vLLM {row['vllm']}, default {row['default']}, kind {row['kind']}, "
              f"source {row['source']}")
        if row["requires"]:
            print(f"  requires: {', '.join(row['requires'])}")
        for t in row["targets"]:
            print(f"  {t['kind']:<8} {t['target']}  contract {t['contract'] or '(unpinned)'}")
        print(f"  why: {row['why']}")
        if row["upstream"]:
            print(f"  upstream: {row['upstream']}")
        print(f"  remove when: {row['remove_when']}")
        print()
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    for name, handler, text in (("status", _status, "what would apply on this install, without starting an engine"),
                                ("list", _list, "every patch with its declaration and its status here")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("--no-contracts", action="store_true",
                       help="skip contract checks (they import the target modules)")
        p.set_defaults(handler=handler)
