"""The ``vllm serve`` flags of each stage: defaults for where it runs, the user's flags on top.

The flags are read by vLLM's own ``vllm serve`` parser (``FlexibleArgumentParser`` with the serve
arguments: ``EngineArgs`` and the front end's), never re-parsed by hand: an option in any spelling
vLLM accepts (``--max_model_len=1k``, ``-tp 2``, ``--no-enforce-eager``, ``-O3``) means what it means
to vLLM, a value vLLM would reject (``--max-num-seqs 2K``) or an option it does not know is refused
before anything starts, with vLLM's own words. The user's flags still pass through to vLLM as
written; a default is dropped when the user sets the same option (the same destination in vLLM's
parser). smoke owns only what makes it a gate: the loopback host and free port, and
``--load-format dummy`` in stage A, so those are refused up front with a message.

Cost, measured on the project's 2-core machine: building vLLM's parser imports ``vllm`` and its
engine arguments, 5 to 10 s once per smoke run (a stage then serves for a minute or more); the hand
parser it replaces took under a millisecond but accepted values vLLM refuses and knew only the
aliases it listed.
"""

from __future__ import annotations

import argparse
import functools
import importlib
from dataclasses import dataclass
from typing import Any

from ascend_overlay.smoke.model_info import SmokeInputError

# vLLM's CPU backend reads --gpu-memory-utilization as the fraction of the NUMA node's memory; its
# default (0.92) fails on a shared machine, 0.3 works (measured, shared/VLLM_FACTS.md).
CPU_DEFAULTS = ["--gpu-memory-utilization", "0.3"]
# The embedded tiny model: small capacity (fast KV-cache setup), eager (torch.compile of the graph
# takes ~50 s of a ~80 s start on 2 CPU cores; pass --no-enforce-eager to exercise graph mode).
TINY_DEFAULTS = [*CPU_DEFAULTS, "--max-model-len", "256", "--max-num-seqs", "8", "--enforce-eager", "--seed", "0"]

# vLLM's parser destinations smoke owns, and why.
RESERVED = {"host": "smoke serves on 127.0.0.1", "port": "smoke picks a free port",
            "uds": "smoke talks to vLLM over TCP on 127.0.0.1"}
# Where vLLM keeps the serve parser's arguments (it moved between releases).
_PARSER_MODULES = ("vllm.entrypoints.launchers.cli_args", "vllm.entrypoints.common.cli_args",
                   "vllm.entrypoints.openai.cli_args")
_UNSET = object()


@functools.cache
def _parser() -> Any:
    """``vllm serve``'s argument parser, whose errors raise SmokeInputError instead of exiting."""
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    class Parser(FlexibleArgumentParser):
        def error(self, message: str) -> Any:
            raise SmokeInputError(f"vLLM rejected the serve flags: {message}")

        def exit(self, status: int = 0, message: str | None = None) -> Any:
            raise SmokeInputError(f"vLLM's serve parser stopped: {message or 'exit ' + str(status)}")

    for name in _PARSER_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return module.make_arg_parser(Parser(prog="vllm serve"))
    from vllm.engine.arg_utils import AsyncEngineArgs  # front-end options unknown: engine arguments only

    return AsyncEngineArgs.add_cli_args(Parser(prog="vllm serve"))


def _dests(parser: Any) -> list[str]:
    return [a.dest for a in parser._actions if a.dest not in (argparse.SUPPRESS, "help")]


def parse(flags: list[str]) -> argparse.Namespace:
    """The namespace vLLM's serve parser makes of ``flags`` (defaults filled in)."""
    parsed: argparse.Namespace = _parser().parse_args(list(flags))
    return parsed


def set_by(flags: list[str]) -> dict[str, Any]:
    """The destinations ``flags`` set, and their values (as vLLM parsed them): argparse fills in a
    default only where the namespace has no value yet, so a namespace of markers shows what was given."""
    parser = _parser()
    namespace = argparse.Namespace(**{dest: _UNSET for dest in _dests(parser)})
    parsed = vars(parser.parse_args(list(flags), namespace=namespace))
    # An optional positional (``model_tag``) is always "matched", by nothing: given only with a value.
    for action in parser._actions:
        if not action.option_strings and parsed.get(action.dest) == action.default:
            parsed.pop(action.dest, None)
    return {dest: value for dest, value in parsed.items() if value is not _UNSET}


_MANY = -1   # an option that takes any number of values (nargs ?, *, +)


def _action(table: dict[str, Any], token: str) -> Any:
    name = token.split("=", 1)[0]
    if name in table:
        return table[name]
    return table.get("--" + name[2:].replace("_", "-")) if name.startswith("--") else None


def _groups(flags: list[str]) -> list[list[str]]:
    """Split flags into options with their values, by what each option takes in vLLM's parser
    (``nargs``), so a value that looks like an option (``-1``) stays with its option."""
    table = _parser()._option_string_actions
    groups: list[list[str]] = []
    owed = 0
    for token in flags:
        action = None if owed > 0 else _action(table, token)
        if action is None and groups and (owed > 0 or (owed == _MANY and not token.startswith("-"))):
            groups[-1].append(token)
            owed = owed - 1 if owed > 0 else _MANY
            continue
        groups.append([token])
        if action is None or "=" in token or action.nargs == 0:
            owed = 0
        elif action.nargs is None:
            owed = 1
        else:
            owed = action.nargs if isinstance(action.nargs, int) else _MANY
    return groups


def _dest_of(group: list[str]) -> str | None:
    given = set_by(group)
    return next(iter(given), None) if len(given) == 1 else None


def merge(defaults: list[str], user: list[str]) -> list[str]:
    """Defaults the user did not set (by vLLM's destination), then the user's flags as given."""
    taken = set(set_by(user))
    kept = [token for group in _groups(defaults) if _dest_of(group) not in taken for token in group]
    return kept + list(user)


def without(flags: list[str], dest: str) -> list[str]:
    """``flags`` less every option that sets ``dest``."""
    return [token for group in _groups(flags) if _dest_of(group) != dest for token in group]


def option_value(flags: list[str], option: str) -> Any:
    """The value vLLM reads for ``option`` (e.g. ``--gpu-memory-utilization``) from ``flags``, its
    default when they do not set it."""
    action = _parser()._option_string_actions[option]
    return getattr(parse(flags), action.dest)


def check_user_flags(user: list[str]) -> None:
    """Refuse, before anything starts, the flags vLLM would reject and those that would make the run
    not the gate."""
    given = set_by(user)
    for dest, why in RESERVED.items():
        if dest in given:
            raise SmokeInputError(f"--{dest}: {why}; leave it out (the serve command in smoke.md and the tutorial "
                                  "shows where to put it for deployment)")
    if given.get("model_tag") is not None:
        raise SmokeInputError(f"unexpected argument {given['model_tag']!r} among the vllm serve flags "
                              "(MODEL comes first, once)")
    if str(given.get("load_format", "")).lower() == "dummy":
        raise SmokeInputError("--load-format dummy: smoke runs the dummy-weights stage itself (--stage dummy); "
                              "the flags you pass are the real-weights stage's")


@dataclass(frozen=True)
class StageFlags:
    dummy: list[str]
    real: list[str]


def stage_flags(defaults: list[str], user: list[str]) -> StageFlags:
    real = merge(defaults, user)
    return StageFlags(dummy=[*without(real, "load_format"), "--load-format", "dummy"], real=real)


def _positive(value: Any) -> int | None:
    """A size vLLM was given, or None for its automatic choice (unset, -1, ``auto``)."""
    return value if isinstance(value, int) and value > 0 else None


@dataclass(frozen=True)
class Asked:
    """The settings the run asked for, as vLLM reads the flags (defaults included)."""

    max_model_len: int | None
    max_num_seqs: int | None
    tensor_parallel_size: int
    expert_parallel: bool
    enforce_eager: bool

    @classmethod
    def from_flags(cls, flags: list[str]) -> Asked:
        ns = parse(flags)
        return cls(max_model_len=_positive(ns.max_model_len), max_num_seqs=_positive(ns.max_num_seqs),
                   tensor_parallel_size=ns.tensor_parallel_size or 1,
                   expert_parallel=bool(ns.enable_expert_parallel), enforce_eager=bool(ns.enforce_eager))


def api_key(flags: list[str]) -> str:
    """The key the client must send when the server was told to require one."""
    keys = getattr(parse(flags), "api_key", None)
    if isinstance(keys, list):
        return str(keys[0]) if keys else "EMPTY"
    return str(keys) if keys else "EMPTY"
