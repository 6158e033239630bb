"""``ascend-overlay smoke [MODEL] [vllm serve flags...]``: the model bring-up gate.

Stage A serves MODEL with dummy weights, stage B with its real checkpoint, each through
``ascend-overlay run -- vllm serve`` on 127.0.0.1; each passes only if vLLM answers GET /v1/models
and a text request (and a text+image request for a vision-language model) and stops with no orphan.
Writes smoke.json and smoke.md to --out; with --artifacts also the test config YAML and the tutorial.

MODEL is a local model directory (or a Hugging Face id already in the local cache); without it, the
embedded tiny model is made and used. Flags after MODEL go to vllm serve (yours override smoke's
defaults); smoke's own options may stand anywhere. With no MODEL, put vLLM flags after --:
``ascend-overlay smoke -- --max-model-len 128``.

Exit codes: 0 every requested stage passed; 1 a stage failed; 2 bad input (nothing was started).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _add_options(p: argparse.ArgumentParser, suppress: bool = False) -> None:
    d = (lambda value: argparse.SUPPRESS) if suppress else (lambda value: value)  # noqa: E731
    p.add_argument("--stage", choices=["dummy", "real", "both"], default=d("both"),
                   help="dummy weights, real weights, or both in order (default: both; dummy alone is never "
                        "signed off)")
    p.add_argument("--out", type=Path, default=d(Path("smoke-out")), metavar="DIR",
                   help="where smoke.json, smoke.md and the stage logs go (default: ./smoke-out)")
    p.add_argument("--artifacts", type=Path, default=d(None), metavar="DIR",
                   help="also write the test config YAML and the tutorial page for the model here")
    p.add_argument("--accuracy", type=Path, default=d(None), metavar="FILE",
                   help="lm-eval's results JSON (or the directory it wrote): the only source of accuracy values")
    p.add_argument("--model-name", default=d(None), metavar="NAME",
                   help="the name in the YAML and tutorial (default: MODEL as given), e.g. Qwen/Qwen3-8B")
    p.add_argument("--hardware", default=d(None), metavar="TEXT",
                   help="the hardware line of the YAML (default: what was detected), e.g. 'Atlas A2 Series'")
    p.add_argument("--ready-timeout", type=float, default=d(900.0), metavar="S",
                   help="seconds a stage may take to answer GET /v1/models (default: 900)")
    p.add_argument("--request-timeout", type=float, default=d(300.0), metavar="S",
                   help="seconds one request may take (default: 300)")
    p.add_argument("--capacity", action=argparse.BooleanOptionalAction, default=d(True),
                   help="check that max-model-len and max-num-seqs held: a full-window request and "
                        "max-num-seqs requests at once (default: on)")
    p.add_argument("--keep-going", action="store_true", default=d(False),
                   help="run stage B even when stage A failed")
    p.add_argument("--json", action="store_true", default=d(False),
                   help="print smoke.json (the whole report) on stdout when done")


def _options_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ascend-overlay smoke", add_help=False, allow_abbrev=False)
    _add_options(p, suppress=True)
    return p


def split_argv(argv: list[str], namespace: argparse.Namespace) -> tuple[str | None, list[str]]:
    """MODEL and the vllm serve flags from what followed ``smoke``; smoke's own options found there
    are set on ``namespace``. Everything after a ``--`` is vLLM's, untouched."""
    if argv[:1] == ["--"]:
        argv = argv[1:]
    model = None
    if argv and not argv[0].startswith("-"):
        model, argv = argv[0], argv[1:]
    if "--" in argv:
        at = argv.index("--")
        mine, theirs = argv[:at], argv[at + 1:]
    else:
        mine, theirs = argv, []
    _, rest = _options_parser().parse_known_args(mine, namespace)
    return model, rest + theirs


def _smoke(args: argparse.Namespace) -> int:
    from ascend_overlay.smoke.runner import SmokeOptions, main_entry

    model, flags = split_argv(list(args.argv), args)
    options = SmokeOptions(model=model, serve_flags=flags, stage=args.stage, out_dir=args.out,
                           artifacts=args.artifacts, accuracy=args.accuracy, ready_timeout=args.ready_timeout,
                           request_timeout=args.request_timeout, capacity=args.capacity, keep_going=args.keep_going,
                           hardware=args.hardware, model_name=args.model_name)
    return main_entry(options, print_json=args.json)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("smoke", help="model bring-up gate: dummy then real weights, matrices, YAML and tutorial",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                       allow_abbrev=False)
    _add_options(p)
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="[MODEL] [VLLM_SERVE_FLAGS ...]",
                   help="the model directory, then any vllm serve flags")
    p.set_defaults(handler=_smoke)
