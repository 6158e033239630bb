"""``ascend-overlay``: the command line. One module per subcommand; this one only dispatches."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import ascend_overlay
from ascend_overlay.cli import catalog_cmd, examples, report_cmd, run_cmd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ascend-overlay",
        description="Monkey-patch runtime overlay for stock vLLM: run vLLM with it, see what it patches.",
        epilog="examples:\n  ascend-overlay run -- vllm serve MODEL\n  ascend-overlay status\n"
               "  ascend-overlay COMMAND --help      each command's options and examples",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ascend-overlay {ascend_overlay.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_cmd.add_parser(sub)
    catalog_cmd.add_parsers(sub)
    report_cmd.add_parser(sub)
    for module_name in ("hotfix_cmd", "check_cmd", "demo_cmd", "smoke_cmd"):
        try:
            module = __import__(f"ascend_overlay.cli.{module_name}", fromlist=["add_parser"])
        except ImportError:
            continue
        module.add_parser(sub)
    examples.attach(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except BrokenPipeError:
        # `ascend-overlay list | head`: the reader left; exit quietly like other Unix tools.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
