"""The ``vllm serve`` flags of each stage: defaults for where it runs, the user's flags on top.

The user's flags pass through to vLLM unchanged; a default is dropped when the user gives the same
option (in any spelling vLLM accepts: ``--max-model-len 1k``, ``--max_model_len=1k``,
``--no-enforce-eager``). smoke owns only what makes it a gate: the loopback host and free port, and
``--load-format dummy`` in stage A, so those are refused up front with a message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ascend_overlay.smoke.model_info import SmokeInputError

# vLLM's CPU backend reads --gpu-memory-utilization as the fraction of the NUMA node's memory; its
# default (0.92) fails on a shared machine, 0.3 works (measured, shared/VLLM_FACTS.md).
CPU_DEFAULTS = ["--gpu-memory-utilization", "0.3"]
# The embedded tiny model: small capacity (fast KV-cache setup), eager (torch.compile of the graph
# takes ~50 s of a ~80 s start on 2 CPU cores; pass --no-enforce-eager to exercise graph mode).
TINY_DEFAULTS = [*CPU_DEFAULTS, "--max-model-len", "256", "--max-num-seqs", "8", "--enforce-eager", "--seed", "0"]

ALIASES = {"-tp": "--tensor-parallel-size", "-pp": "--pipeline-parallel-size", "-dp": "--data-parallel-size",
           "-ep": "--enable-expert-parallel", "-q": "--quantization", "-cc": "--compilation-config",
           "-O": "--compilation-config"}
RESERVED = {"--host": "smoke serves on 127.0.0.1", "--port": "smoke picks a free port",
            "--uds": "smoke talks to vLLM over TCP on 127.0.0.1"}


def option_key(token: str) -> str:
    """The canonical option a flag token sets: ``--max_model_len=1k`` -> ``--max-model-len``."""
    name = token.split("=", 1)[0]
    for short, long in ALIASES.items():
        if name == short or (short == "-O" and name.startswith("-O") and not name.startswith("--")):
            return long
    name = "--" + name.lstrip("-").replace("_", "-")
    if name.startswith("--no-"):
        name = "--" + name[len("--no-"):]
    return name


def _is_value(token: str) -> bool:
    return not token.startswith("-") or bool(re.match(r"^-\d", token))


def split_options(flags: list[str]) -> list[list[str]]:
    """Group flags into options, each with its values: ``[["--max-model-len", "256"], ["--enforce-eager"]]``."""
    groups: list[list[str]] = []
    for token in flags:
        if groups and _is_value(token) and "=" not in groups[-1][0]:
            groups[-1].append(token)
        else:
            groups.append([token])
    return groups


def option_value(flags: list[str], key: str) -> str | None:
    """The value the last occurrence of ``key`` sets (vLLM's argparse: the last one wins)."""
    value = None
    for group in split_options(flags):
        if option_key(group[0]) != key:
            continue
        if "=" in group[0]:
            value = group[0].split("=", 1)[1]
        elif len(group) > 1:
            value = group[1]
        else:
            value = "false" if group[0].lstrip("-").replace("_", "-").startswith("no-") else "true"
    return value


def merge(defaults: list[str], user: list[str]) -> list[str]:
    """Defaults the user did not set, then the user's flags as given."""
    taken = {option_key(group[0]) for group in split_options(user)}
    kept = [token for group in split_options(defaults) if option_key(group[0]) not in taken for token in group]
    return kept + list(user)


def without(flags: list[str], key: str) -> list[str]:
    return [token for group in split_options(flags) if option_key(group[0]) != key for token in group]


def check_user_flags(user: list[str]) -> None:
    """Refuse, before anything starts, the flags that would make the run not the gate."""
    for group in split_options(user):
        key = option_key(group[0])
        if key in RESERVED:
            raise SmokeInputError(f"{group[0]}: {RESERVED[key]}; leave it out (the serve command in smoke.md "
                                  "and the tutorial shows where to put it for deployment)")
        if not group[0].startswith("-"):
            raise SmokeInputError(f"unexpected argument {group[0]!r} among the vllm serve flags "
                                  "(MODEL comes first, once)")
    if (option_value(user, "--load-format") or "").lower() == "dummy":
        raise SmokeInputError("--load-format dummy: smoke runs the dummy-weights stage itself (--stage dummy); "
                              "the flags you pass are the real-weights stage's")


@dataclass(frozen=True)
class StageFlags:
    dummy: list[str]
    real: list[str]


def stage_flags(defaults: list[str], user: list[str]) -> StageFlags:
    real = merge(defaults, user)
    return StageFlags(dummy=[*without(real, "--load-format"), "--load-format", "dummy"], real=real)


def parse_int(text: str | None) -> int | None:
    """vLLM's human-readable integers (``1k`` = 1000, ``1K`` = 1024, ``-1``/``auto``: None = auto)."""
    if text is None:
        return None
    text = text.strip()
    if text in ("-1", "auto"):
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmMgG]?)", text)
    if not match:
        return None
    number, unit = match.groups()
    scale = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "K": 2**10, "M": 2**20, "G": 2**30}[unit]
    return int(float(number) * scale)


@dataclass(frozen=True)
class Asked:
    """The settings the run asked for, as the user (or the defaults) spelled them."""

    max_model_len: int | None
    max_num_seqs: int | None
    tensor_parallel_size: int
    expert_parallel: bool
    enforce_eager: bool

    @classmethod
    def from_flags(cls, flags: list[str]) -> Asked:
        return cls(max_model_len=parse_int(option_value(flags, "--max-model-len")),
                   max_num_seqs=parse_int(option_value(flags, "--max-num-seqs")),
                   tensor_parallel_size=parse_int(option_value(flags, "--tensor-parallel-size")) or 1,
                   expert_parallel=option_value(flags, "--enable-expert-parallel") == "true",
                   enforce_eager=option_value(flags, "--enforce-eager") == "true")


def api_key(flags: list[str]) -> str:
    """The key the client must send when the server was told to require one."""
    return option_value(flags, "--api-key") or "EMPTY"
