"""Per-patch on/off switches from ``VLLM_ASCEND_OVERLAY_ENABLE`` / ``VLLM_ASCEND_OVERLAY_DISABLE``.

Precedence, most specific first: a name in DISABLE, a name in ENABLE, ``*`` in DISABLE, ``*`` in
ENABLE, then the patch's declared default. So ``DISABLE=*`` with ``ENABLE=x`` runs only ``x``.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable

from ascend_overlay.core.errors import ConfigError
from ascend_overlay.core.settings import DISABLE, ENABLE, split_names
from ascend_overlay.core.vocabulary import Decision, Reason


def unknown_name_error(variable: str, names: tuple[str, ...], unknown: str, known: Iterable[str]) -> ConfigError:
    known = sorted(known)
    close = difflib.get_close_matches(unknown, known, n=1, cutoff=0.5)
    hint = f"unknown patch {unknown!r}"
    if close:
        hint += f"; did you mean {close[0]!r}?"
    # Quote the value as it was written when the environment holds it, not as it was re-joined.
    raw = os.environ.get(variable)
    shown = raw if raw is not None and split_names(raw) == names else ",".join(names)
    return ConfigError(variable, shown, "patch names from `ascend-overlay list`: " + ", ".join(known), hint)


def validate(enable: tuple[str, ...], disable: tuple[str, ...], known: Iterable[str]) -> list[ConfigError]:
    """Every unknown name, as an error that names the variable, the known names and the nearest."""
    known = set(known)
    errors = []
    for variable, names in ((ENABLE, enable), (DISABLE, disable)):
        for name in names:
            if name != "*" and name not in known:
                errors.append(unknown_name_error(variable, names, name, known))
    return errors


def switch(name: str, default: bool, enable: tuple[str, ...], disable: tuple[str, ...]) -> Decision:
    """Whether the patch is switched on, and the words that say why."""
    if name in disable:
        return Decision(False, Reason.DISABLED, f"disabled by {DISABLE}")
    if name in enable:
        return Decision(True, Reason.ENABLED, f"enabled by {ENABLE}")
    if "*" in disable:
        return Decision(False, Reason.DISABLED, f"disabled by {DISABLE}=*")
    if "*" in enable:
        return Decision(True, Reason.ENABLED, f"enabled by {ENABLE}=*")
    if default:
        return Decision(True, Reason.ON_BY_DEFAULT, "on by default")
    return Decision(False, Reason.EXPERIMENTAL, "experimental: off by default", f"set {ENABLE}={name} to try it")
