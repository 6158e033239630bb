"""The words the overlay answers in: what became of a patch, why, and what to do next.

Outcomes are objects, not prose to parse back: a status, a reason code that tools can match on, the
sentence for a person, and the next step when there is one. The runtime, ``ascend-overlay status``,
``list`` and ``hotfix verify`` all speak this vocabulary, so they cannot disagree on the words.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Status(str, enum.Enum):
    WOULD_APPLY = "would apply"  # planned, not yet applied (status, verify, an unfired phase)
    PENDING = "pending"          # import phase: waiting for its module to be imported
    APPLIED = "applied"
    INHERITED = "inherited"      # a forked child: applied in the parent, present in memory
    SKIPPED = "skipped"
    FAILED = "failed"            # raised while applying; every edit was rolled back
    UNPATCHED = "unpatched"      # applied, then undone (deactivate, tests)


class Reason(str, enum.Enum):
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
    DRIFT = "drift"                  # a target's shape differs from its contract pin
    ERROR = "error"                  # raised while applying (rolled back) or undoing
    WAITING = "waiting"              # import phase: not imported yet
    UNDONE = "undone"


# Reasons under which a patch that should run does not: an operator has something to fix.
PROBLEMS = frozenset({Reason.BAD_SETTING, Reason.MISSING, Reason.DRIFT, Reason.ERROR, Reason.CONFLICT})


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
