"""The overlay's exception types.

Every error the overlay raises on purpose is an ``OverlayError``, so a host that opted into strict
mode can tell an overlay refusal from a vLLM failure, and the non-strict bootstrap can catch exactly
what it owns.
"""

from __future__ import annotations


class OverlayError(Exception):
    """Base of everything the overlay raises deliberately."""


class ConfigError(OverlayError, ValueError):
    """An environment variable or option holds a value the overlay cannot accept."""

    def __init__(self, variable: str, value: str, accepted: str, hint: str = "") -> None:
        self.variable = variable
        self.value = value
        self.accepted = accepted
        message = f"{variable}={value!r} is not valid; accepted values: {accepted}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class PatchDeclarationError(OverlayError):
    """A patch file does not declare a valid patch; it is refused as a whole."""


class PatchApplyError(OverlayError):
    """Applying a patch failed; every edit it had made was rolled back before this was raised."""
