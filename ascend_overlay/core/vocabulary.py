"""The words the overlay answers in: every closed set it uses, and the decision built from them.

Each closed set is an enum here and nowhere else, and code compares members, never their spelling:
a typo in a string comparison is a branch silently not taken, an unknown enum member is an error at
once. The values are the stable spellings written to JSON reports and read back by tools
(``Status("applied")``), so a report from any process, or an older overlay, reads into the same
members. ``tests/test_vocabulary.py`` holds the rest of the package to it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Word(str, enum.Enum):
    """A member that reads as its value wherever text is made: ``str()``, f-strings, JSON (what
    ``enum.StrEnum`` does from Python 3.11; the overlay supports 3.10)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    # Equal to its value (str's __eq__), so it must hash like it: Enum hashes by name, which would
    # make ``"platform" in {Phase.PLATFORM}`` false while ``"platform" == Phase.PLATFORM`` is true.
    __hash__ = str.__hash__


class Phase(Word):
    """When in a vLLM process's life a patch lands (see docs/phases.md)."""

    IMPORT = "import"            # the moment its target module finishes importing, in every process
    PLATFORM = "platform"        # main process, before the engine config is built
    ENGINE_CORE = "engine_core"  # EngineCore process, before the engine core object is built
    WORKER = "worker"            # each worker process, before the worker class is built


class Role(Word):
    """Which of vLLM's processes a report comes from."""

    MAIN = "main"                # a script building ``LLM`` (the engine core may run inside it)
    API_SERVER = "api_server"    # ``vllm serve`` and its API-server processes
    ENGINE_CORE = "engine_core"
    WORKER = "worker"


class Status(Word):
    """What became of a patch in one process (or would, for ``status`` and ``hotfix verify``)."""

    WOULD_APPLY = "would apply"  # planned, not yet applied (status, verify, an unfired phase)
    PENDING = "pending"          # import phase: waiting for its module to be imported
    APPLIED = "applied"
    PARTIAL = "partial"          # applied, but some ``from x import y`` copies still hold the original
    INHERITED = "inherited"      # a forked child: applied in the parent, present in memory
    SKIPPED = "skipped"
    FAILED = "failed"            # raised while applying; every edit was rolled back
    UNPATCHED = "unpatched"      # applied, then undone (deactivate, tests)

    @property
    def in_effect(self) -> bool:
        """The patch's code runs in this process."""
        return self in _IN_EFFECT

    @property
    def not_applied(self) -> bool:
        """The patch should have run and does not (skipped or failed), as a summary counts it."""
        return self in (Status.SKIPPED, Status.FAILED)


_IN_EFFECT = frozenset({Status.APPLIED, Status.PARTIAL, Status.INHERITED})


class Reason(Word):
    """Why a patch applies or not. The value is the stable code written to JSON reports."""

    ON_BY_DEFAULT = "on_by_default"
    ENABLED = "enabled"              # by VLLM_ASCEND_OVERLAY_ENABLE
    HOOK = "hook"                    # the overlay's own hook point: always on while the overlay is
    DISABLED = "disabled"            # by VLLM_ASCEND_OVERLAY_DISABLE
    EXPERIMENTAL = "experimental"    # off by default
    CONFLICT = "conflict"
    SUPERSEDED = "superseded"
    NO_VLLM = "no_vllm"
    VERSION = "version"
    OBSOLETE = "obsolete"
    REQUIREMENT = "requirement"
    BAD_SETTING = "bad_setting"      # one of the patch's own variables holds a bad value
    MISSING = "missing"              # a target (or something it relies on) is not in this vLLM
    UNRESOLVABLE = "unresolvable"    # a target's module raised while importing (not an ImportError)
    DRIFT = "drift"                  # a target's shape differs from its contract pin
    ERROR = "error"                  # raised while applying (rolled back) or undoing
    WAITING = "waiting"              # import phase: not imported yet
    UNDONE = "undone"


# Reasons under which a patch that should run does not: an operator has something to fix.
PROBLEMS = frozenset({Reason.BAD_SETTING, Reason.MISSING, Reason.UNRESOLVABLE, Reason.DRIFT, Reason.ERROR,
                      Reason.CONFLICT})


class LogLevel(Word):
    """``VLLM_ASCEND_OVERLAY_LOG``: how much each process says on stderr."""

    OFF = "off"      # nothing (errors about a report you asked for are still printed)
    INFO = "info"    # one summary line per process
    DEBUG = "debug"  # every decision


class EditKind(Word):
    REPLACE = "replace"  # the target attribute becomes the replacement itself: zero per-call cost
    WRAP = "wrap"        # the target is wrapped; the wrapper sees every call


@dataclass(frozen=True)
class Decision:
    """The answer to "would this patch apply here?", and why."""

    applies: bool
    reason: Reason
    text: str
    hint: str = ""

    @property
    def is_problem(self) -> bool:
        return not self.applies and self.reason in PROBLEMS

    def sentence(self) -> str:
        return f"{self.text}; {self.hint}" if self.hint else self.text
