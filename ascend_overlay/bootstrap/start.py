"""Activation at interpreter start, once the variable says the overlay is on.

Never raises into the host program: a failure is one warning line and vLLM runs stock. Strict mode
(``VLLM_ASCEND_OVERLAY_STRICT=1``) stops the interpreter instead, because site.py would print an
exception from sitecustomize and carry on.
"""

from __future__ import annotations


def start() -> None:
    from ascend_overlay.activation import activate

    try:
        activate(door="sitecustomize")
    except Exception as exc:  # only reached in strict mode: activate() logs and swallows otherwise
        import traceback

        traceback.print_exc()
        raise SystemExit(f"ascend-overlay (strict): {type(exc).__name__}: {exc}") from None
