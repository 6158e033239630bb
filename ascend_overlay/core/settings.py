"""Every environment variable the overlay reads, declared in one place, parsed once per process.

Environment variables are the overlay's whole configuration surface because they are the one thing
vLLM passes unchanged to every process it starts, by spawn or fork, under ``vllm serve`` or Ray.

A bad value affects only what that variable controls: it falls back to the variable's default and is
reported (in strict mode: refused), so a typo in the log level can never switch patches off. The one
exception is ``VLLM_ASCEND_OVERLAY`` itself: when it cannot be read the overlay stays off, because
neither reading is safe to guess. Patches declare their own variables (``Patch.variable``); those
are parsed when the patch is planned, and a bad value skips that patch alone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ascend_overlay.core.errors import ConfigError
from ascend_overlay.core.vllm_version import parse_version
from ascend_overlay.core.vocabulary import LogLevel

ACTIVATE = "VLLM_ASCEND_OVERLAY"
STRICT = "VLLM_ASCEND_OVERLAY_STRICT"
REPORT = "VLLM_ASCEND_OVERLAY_REPORT"
ENABLE = "VLLM_ASCEND_OVERLAY_ENABLE"
DISABLE = "VLLM_ASCEND_OVERLAY_DISABLE"
PATH = "VLLM_ASCEND_OVERLAY_PATH"
LOG = "VLLM_ASCEND_OVERLAY_LOG"
VERSION = "VLLM_VERSION"
SIMULATE_NPU = "VLLM_ASCEND_OVERLAY_SIMULATE_NPU"
SIMULATE_NPU_STATS = "VLLM_ASCEND_OVERLAY_SIMULATE_NPU_STATS"
SIMULATE_NPU_CAPTURE = "VLLM_ASCEND_OVERLAY_SIMULATE_NPU_CAPTURE"
PREFIX = "VLLM_ASCEND_OVERLAY"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
LOG_LEVELS = tuple(level.value for level in LogLevel)
_NAME = re.compile(r"^[a-z][a-z0-9_]*$|^\*$")

Environ = Mapping[str, str]


def is_on(raw: str | None) -> bool:
    """The bootstrap's cheap test, identical to ``parse_flag`` for every valid value."""
    return (raw or "").strip().lower() not in _FALSE


def parse_flag(raw: str) -> bool:
    """``1``/``0`` and friends, case-blind, the way vLLM's own ``VLLM_*`` flags read."""
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(", ".join(_TRUE) + " (on) or " + ", ".join(v or "''" for v in _FALSE) + " (off)")


def split_names(raw: str) -> tuple[str, ...]:
    """The one reading of a list of names, wherever the overlay takes one (these variables, the pytest
    plugin's options and marker, ``make upstream-tests PATCHES=``): separated by commas, with semicolons
    and spaces read as commas too, so ``a;b`` is always two names and never one unknown name."""
    return tuple(part for part in re.split(r"[,;\s]+", raw.strip()) if part)


def parse_names(raw: str) -> tuple[str, ...]:
    """Patch names separated by commas (spaces and semicolons tolerated); ``*`` stands for all."""
    names = split_names(raw)
    bad = [name for name in names if not _NAME.match(name)]
    if bad:
        raise ValueError(f"a comma-separated list of patch names (lower_snake_case) or *; "
                         f"{', '.join(repr(b) for b in bad)} is not a patch name")
    return names


def parse_dirs(raw: str) -> tuple[str, ...]:
    return tuple(p for p in raw.split(os.pathsep) if p.strip())


def parse_log_level(raw: str) -> LogLevel:
    try:
        return LogLevel(raw.strip().lower() or LogLevel.INFO.value)
    except ValueError:
        raise ValueError(", ".join(LOG_LEVELS)) from None


def parse_text(raw: str) -> str | None:
    return raw.strip() or None


def parse_directory(raw: str) -> str | None:
    """A directory that is there or can be made: not a file, not under a file (no write is tried)."""
    text = raw.strip()
    if not text:
        return None
    path = os.path.abspath(os.path.expanduser(text))
    while not os.path.exists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise ValueError(f"a directory ({path} is not one)")
    return text


def parse_report_path(raw: str) -> str | None:
    """An absolute path: a relative one would land in each process's own working directory."""
    text = raw.strip()
    if text and not os.path.isabs(text):
        raise ValueError("an absolute file path (a relative one lands in each process's working directory), "
                         "e.g. under the service's own state directory")
    return text or None


@dataclass(frozen=True)
class Variable:
    """One environment variable: its default, how it is read, and what it is for."""

    name: str
    default: Any
    parse: Callable[[str], Any]
    accepted: str
    doc: str
    owner: str = "overlay"   # "overlay", or the name of the patch that declared it

    def read(self, environ: Environ | None = None) -> Any:
        """The value in ``environ`` (default: the process's); unset is the default. Raises
        ``ConfigError`` naming the variable, the value and what is accepted."""
        env = os.environ if environ is None else environ
        raw = env.get(self.name)
        if raw is None:
            return self.default
        try:
            return self.parse(raw)
        except ValueError as exc:
            detail = str(exc)
            accepted = self.accepted if detail in ("", self.accepted) else detail
            raise ConfigError(self.name, raw, accepted) from None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "owner": self.owner, "default": self.default, "accepted": self.accepted,
                "doc": self.doc}


def _version(raw: str) -> str | None:
    text = raw.strip()
    if not text:
        return None
    try:
        parse_version(text)
    except ConfigError as exc:
        raise ValueError(exc.accepted) from None
    return text


VARIABLES: tuple[Variable, ...] = (
    Variable(ACTIVATE, False, parse_flag, "1/true/yes/on or 0/false/no/off/''",
             "turns the overlay on in this process and every process it starts"),
    Variable(STRICT, False, parse_flag, "1/true/yes/on or 0/false/no/off/''",
             "a broken patch, refused hotfix or bad setting stops the process instead of being skipped"),
    Variable(REPORT, None, parse_report_path, "an absolute file path",
             "append one JSON line per process event to this file (your own file, created 0600; "
             "keep it under the service's own state directory, not /tmp)"),
    Variable(ENABLE, (), parse_names, "comma-separated patch names, or *", "patches to switch on"),
    Variable(DISABLE, (), parse_names, "comma-separated patch names, or *",
             "patches to switch off (a name here beats ENABLE)"),
    Variable(PATH, (), parse_dirs, f"absolute directories separated by {os.pathsep!r}",
             "directories of hotfixes (patch files) to load"),
    Variable(LOG, LogLevel.INFO, parse_log_level, ", ".join(LOG_LEVELS),
             "info: one summary line per process; debug: every decision; off: none (errors about a "
             "report you asked for are still printed)"),
    Variable(VERSION, None, _version, "a PEP 440 version such as 0.32.0, 0.33.1rc1 or 0.33.1.dev12+gabc123",
             "the vLLM version patches are gated on, for dev builds whose metadata says nothing useful",
             owner="vllm-ascend convention"),
    Variable(SIMULATE_NPU, False, parse_flag, "1/true/yes/on or 0/false/no/off/''",
             "run the NPU platform on the simulated Ascend NPU (ascend_overlay/npu/sim; set by `ascend-overlay run "
             "--simulate-npu`; refused where a real torch_npu is importable)"),
    Variable(SIMULATE_NPU_STATS, None, parse_directory, "a directory",
             "simulated NPU: each process keeps DIR/kernels-<pid>.json with its kernel call counts and NPU "
             "initialisations"),
    Variable(SIMULATE_NPU_CAPTURE, None, parse_directory, "a directory",
             "simulated NPU: each process saves every kernel call's inputs and outputs under "
             "DIR/kernels-<pid>/ (bounded), to compare the kernels with vLLM's own path"),
)
BY_NAME = {v.name: v for v in VARIABLES}


def read(name: str, environ: Environ | None = None) -> Any:
    """One of the overlay's own variables, parsed (``ConfigError`` on a bad value)."""
    return BY_NAME[name].read(environ)


@dataclass(frozen=True)
class Settings:
    """The overlay's variables for one process, with every value that could not be read."""

    enabled: bool = False
    strict: bool = False
    report_path: str | None = None
    enable: tuple[str, ...] = ()
    disable: tuple[str, ...] = ()
    hotfix_dirs: tuple[str, ...] = ()
    log_level: LogLevel = LogLevel.INFO
    version_override: str | None = None
    problems: tuple[ConfigError, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "log_level", LogLevel(self.log_level))  # "off" from a caller reads as the member

    @classmethod
    def from_env(cls, environ: Environ | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[ConfigError] = []
        for variable in VARIABLES:
            try:
                values[variable.name] = variable.read(env)
            except ConfigError as exc:
                problems.append(exc)
                values[variable.name] = variable.default
        return cls(enabled=values[ACTIVATE], strict=values[STRICT], report_path=values[REPORT],
                   enable=values[ENABLE], disable=values[DISABLE], hotfix_dirs=values[PATH],
                   log_level=values[LOG], version_override=values[VERSION], problems=tuple(problems))

    @property
    def activation_problem(self) -> ConfigError | None:
        """The bad value of ``VLLM_ASCEND_OVERLAY`` itself, which keeps the overlay off."""
        return next((p for p in self.problems if p.variable == ACTIVATE), None)
