"""Activation at interpreter start, once the variable says the overlay is on.

Reached from the installed package's ``.pth`` start-up line and from the ``sitecustomize`` hook,
whichever runs first (the ``.pth`` line does: site.py processes it before importing sitecustomize).
Never raises into the host program: a failure is reported and vLLM runs stock. In strict mode a
failure refuses the program instead, with one line that says why (also written to the report file),
and exit status 78 (EX_CONFIG) -- not a traceback through site.py.

The overlay's own command (``ascend-overlay status`` and friends) is never refused or patched: it is
what explains a refusal, so it must run in the environment that caused it.
"""

from __future__ import annotations

import os
import sys

REFUSED_EXIT = 78  # EX_CONFIG
_said_shadowed = False  # a venv's site-packages is often processed twice (lib and its lib64 link): say it once


def _is_overlay_cli() -> bool:
    argv = getattr(sys, "orig_argv", None) or sys.argv
    for index, arg in enumerate(argv[1:4], 1):
        if arg == "-m" and index + 1 < len(argv):
            return bool(argv[index + 1].split(".")[0] == "ascend_overlay")
        if not arg.startswith("-"):
            return bool(os.path.basename(arg) == "ascend-overlay")
    return False


def start(door: str) -> None:
    if _is_overlay_cli():
        return
    from ascend_overlay.doors import activation

    try:
        overlay = activation.activate(door=door)
    except Exception as exc:  # only reached in strict mode: activate() reports and swallows otherwise
        refuse(exc)
        return
    if overlay is not None and door == "pth":
        _say_if_sitecustomize_is_shadowed()


def refuse(exc: BaseException) -> None:
    """Stop this program before it runs, saying why in one line (strict mode)."""
    program = " ".join(getattr(sys, "orig_argv", sys.argv)[:3])
    message = (f"ascend-overlay (strict): refusing to start `{program}` (pid {os.getpid()}): "
               f"{type(exc).__name__}: {exc}")
    _record_refusal(message)
    sys.stderr.write(message + "\n  unset VLLM_ASCEND_OVERLAY_STRICT to run with the problem reported instead; "
                     "`ascend-overlay status` explains the configuration\n")
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(REFUSED_EXIT)


def _record_refusal(message: str) -> None:
    path = os.environ.get("VLLM_ASCEND_OVERLAY_REPORT")
    if not path:
        return
    try:
        from ascend_overlay.core import report

        record = report.ProcessReport(problems=[{"source": "strict", "path": "-", "message": message}], strict=True)
        report.append_jsonl(path, record.snapshot("refused"))
    except Exception as exc:  # the refusal itself must still be printed
        sys.stderr.write(f"ascend-overlay: could not write the refusal to {path}: {exc}\n")


def _say_if_sitecustomize_is_shadowed() -> None:
    """Our sitecustomize on PYTHONPATH after someone else's never runs; say so once, since the
    package's start-up line has activated the overlay anyway."""
    global _said_shadowed
    if _said_shadowed:
        return
    _said_shadowed = True
    import importlib.machinery

    from ascend_overlay.doors.bootstrap import precompile

    ours = {str(precompile.HOOK), str(precompile.CHECKOUT_LINK)}
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize")
    if spec is None or not spec.origin or os.path.abspath(spec.origin) in ours:
        return
    later = [p for p in sys.path if p and os.path.abspath(os.path.join(p, "sitecustomize.py")) in ours]
    if later:
        import logging

        logging.getLogger("ascend_overlay").warning(
            "ascend-overlay: %s comes first on the path and shadows ascend-overlay's sitecustomize (%s); "
            "the overlay was activated by the installed package's start-up line instead",
            spec.origin, os.path.join(later[0], "sitecustomize.py"))
