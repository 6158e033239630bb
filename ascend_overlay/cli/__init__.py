"""``ascend-overlay``: the command line. One module per subcommand; this one only dispatches.

Every subcommand is always registered: the subcommand modules import nothing optional at module level
(``tests/test_without_optional_parts.py`` holds them to it), so a missing optional package can never make a
command vanish into "invalid choice". What a subcommand needs is imported when it runs, and a missing
package is reported then, by name, with the line that installs it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import ascend_overlay
from ascend_overlay.cli import catalog_cmd, check_cmd, demo_cmd, examples, hotfix_cmd, report_cmd, run_cmd, smoke_cmd

# Optional packages subcommands import when they run, and how to install each.
INSTALL_LINES = {
    "griffe": "pip install 'ascend-overlay[main2main]'",
    "openai": "pip install 'ascend-overlay[smoke]'",
    "ray": "pip install 'ascend-overlay[ray]'",
    "vllm": "pip install vllm (or 'ascend-overlay[cpu]' for the CPU build this project runs on)",
    "torch": "install vLLM, which brings the torch it was built for",
    "transformers": "install vLLM, which brings it",
    "tokenizers": "install vLLM, which brings it",
    "yaml": "pip install pyyaml",
}


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
    for module in (hotfix_cmd, check_cmd, demo_cmd, smoke_cmd):
        module.add_parser(sub)
    examples.attach(parser)
    return parser


def missing_package(exc: ModuleNotFoundError) -> str | None:
    """The sentence for an optional package a subcommand needs and this environment lacks, or None
    when the missing module is the overlay's own (a broken install, which a traceback explains best)."""
    top = (exc.name or "").split(".")[0]
    if not top or top == "ascend_overlay":
        return None
    line = INSTALL_LINES.get(top, f"pip install {top}")
    return f"needs the package {top!r}, which is not installed here; install it with: {line}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ModuleNotFoundError as exc:
        sentence = missing_package(exc)
        if sentence is None:
            raise
        print(f"ascend-overlay {args.command}: {sentence}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `ascend-overlay list | head`: the reader left; exit quietly like other Unix tools.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
