"""Reads the overlay's environment variables, once per process, with errors that name the variable.

Environment variables are the overlay's whole configuration surface because they are the one thing
vLLM passes unchanged to every process it starts, by spawn or fork, under ``vllm serve`` or Ray.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ascend_overlay.errors import ConfigError

ACTIVATE = "VLLM_ASCEND_OVERLAY"
STRICT = "VLLM_ASCEND_OVERLAY_STRICT"
REPORT = "VLLM_ASCEND_OVERLAY_REPORT"
ENABLE = "VLLM_ASCEND_OVERLAY_ENABLE"
DISABLE = "VLLM_ASCEND_OVERLAY_DISABLE"
PATH = "VLLM_ASCEND_OVERLAY_PATH"
LOG = "VLLM_ASCEND_OVERLAY_LOG"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
_LOG_LEVELS = ("off", "info", "debug")


def parse_flag(variable: str, environ: dict[str, str] | os._Environ | None = None) -> bool:
    """Parse a boolean variable the way vLLM's own ``VLLM_*`` flags read (``1``/``0``, case-blind)."""
    env = os.environ if environ is None else environ
    raw = env.get(variable, "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(variable, raw, ", ".join(_TRUE) + " (on) or " + ", ".join(v or "''" for v in _FALSE) + " (off)")


def parse_name_list(variable: str, environ: dict[str, str] | os._Environ | None = None) -> tuple[str, ...]:
    """Parse a comma list of patch names; ``*`` stands for every patch."""
    env = os.environ if environ is None else environ
    raw = env.get(variable, "")
    names = tuple(part.strip() for part in raw.split(",") if part.strip())
    for name in names:
        if name != "*" and not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise ConfigError(variable, raw, "a comma-separated list of patch names, or *",
                              f"{name!r} is not a patch name")
    return names


@dataclass(frozen=True)
class Settings:
    """A snapshot of the overlay's variables for one process."""

    enabled: bool = False
    strict: bool = False
    report_path: str | None = None
    enable: tuple[str, ...] = ()
    disable: tuple[str, ...] = ()
    hotfix_dirs: tuple[str, ...] = field(default_factory=tuple)
    log_level: str = "info"

    @classmethod
    def from_env(cls, environ: dict[str, str] | os._Environ | None = None) -> Settings:
        env = os.environ if environ is None else environ
        log_level = env.get(LOG, "info").strip().lower() or "info"
        if log_level not in _LOG_LEVELS:
            raise ConfigError(LOG, env.get(LOG, ""), ", ".join(_LOG_LEVELS))
        return cls(
            enabled=parse_flag(ACTIVATE, env),
            strict=parse_flag(STRICT, env),
            report_path=env.get(REPORT) or None,
            enable=parse_name_list(ENABLE, env),
            disable=parse_name_list(DISABLE, env),
            hotfix_dirs=tuple(p for p in env.get(PATH, "").split(os.pathsep) if p),
            log_level=log_level,
        )
