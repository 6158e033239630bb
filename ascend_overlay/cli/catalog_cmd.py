"""``ascend-overlay status`` and ``ascend-overlay list``: what the overlay would do here, and why.

Both exit 0 when nothing needs fixing and 1 when something does (a bad setting, a refused hotfix, a
patch or hook point that should apply but cannot), so scripts and CI can gate on them.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ascend_overlay.cli import term
from ascend_overlay.core.status import collect
from ascend_overlay.core.vocabulary import Status, Word


def _vllm_line(data: dict[str, Any]) -> str:
    dist = data["vllm_distribution"] or "-"
    if data["version_override"] and data["vllm_version"] != data["vllm_installed"]:
        return (f"{data['vllm_version']} (from VLLM_VERSION; installed: {data['vllm_installed'] or 'none'}, "
                f"{dist})")
    return f"{data['vllm_version'] or 'not installed'} ({dist})"


def _shown(default: Any) -> str:
    """A default as it would be typed (an enum member as its value, not its repr)."""
    return repr(default.value if isinstance(default, Word) else default)


def _status(args: argparse.Namespace) -> int:
    data = collect(check_contracts=not args.no_contracts, use_cache=not args.no_cache)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0 if data["ok"] else 1
    state = "ON" if data["overlay_enabled"] else "off (set VLLM_ASCEND_OVERLAY=1 or use `ascend-overlay run`)"
    facts = [("overlay:", f"{state}{'  [strict]' if data['strict'] else ''}"), ("vLLM:", _vllm_line(data)),
             ("host:", data["host"])]
    if data["npu"]:
        facts.append(("npu:", data["npu"]))
    for error in data["errors"]:
        facts.append(("error:", error))
    for ref in data["refused"]:
        facts.append(("refused:", f"{ref['path']}: {ref['message']}"))
    broken_hooks = [h for h in data["hooks"] if Status(h["status"]) is not Status.WOULD_APPLY]
    for hook in broken_hooks:
        facts.append(("error:", f"hook point {hook['name']} would not apply ({hook['reason']}): its phase never fires"))
    for warning in data["warnings"]:
        facts.append(("warning:", warning))
    term.print_table(("", ""), facts, header=False, gap=1)
    print()
    rows = [(row["status"], row["name"], row["phase"], row["source"],
             row["reason"] + (f"; {row['hint']}" if row["hint"] and row["problem"] else ""))
            for row in data["patches"]]
    term.print_table(("status", "patch", "phase", "source", "why"), rows, keep=4)
    if not data["ok"]:
        print("\nsomething needs fixing (see error/refused lines and the skipped patches' reasons)")
    return 0 if data["ok"] else 1


def _list(args: argparse.Namespace) -> int:
    data = collect(check_contracts=not args.no_contracts, use_cache=not args.no_cache)
    if args.json:
        print(json.dumps({key: data[key] for key in ("patches", "hooks", "variables")}, indent=2))
        return 0 if data["ok"] else 1
    for row in data["patches"] + data["hooks"]:
        facts = [("phase", row["phase"]), ("vLLM", row["vllm"]), ("default", row["default"]), ("kind", row["kind"]),
                 ("source", row["source"] + (", internal hook point" if row["internal"] else ""))]
        if row["requires"]:
            facts.append(("requires", ", ".join(row["requires"])))
        for t in row["targets"]:
            facts.append((t["kind"], f"{t['target']}  contract {t['contract'] or '(unpinned)'}"))
        for v in row["variables"]:
            facts.append(("variable", f"{v['name']}: {v['doc']} ({v['accepted']}; default {_shown(v['default'])})"))
        facts.append(("why", row["why"]))
        if row["upstream"]:
            facts.append(("upstream", row["upstream"]))
        facts.append(("remove when", row["remove_when"]))
        print(f"{row['name']}  [{row['status']}{': ' + row['reason'] if row['reason'] else ''}]")
        term.print_table(("", ""), facts, header=False, indent=2)
        print()
    print("variables:")
    rows = [(v["name"], v["owner"], f"{v['doc']} ({v['accepted']}; default {_shown(v['default'])})")
            for v in data["variables"]]
    term.print_table(("variable", "owner", "meaning"), rows, indent=2)
    return 0 if data["ok"] else 1


def add_parsers(sub: argparse._SubParsersAction) -> None:
    for name, handler, text in (("status", _status, "what would apply on this install, without starting an engine"),
                                ("list", _list, "every patch, hook point and variable, with its status here")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("--no-contracts", action="store_true",
                       help="skip contract checks (they import the target modules)")
        p.add_argument("--no-cache", action="store_true",
                       help="check every target against the live vLLM, ignoring (and refreshing) the answers "
                            "remembered from earlier runs")
        p.set_defaults(handler=handler)
