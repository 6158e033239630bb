# ascend-overlay sitecustomize: the overlay's interpreter-start hook.
# `ascend-overlay run` puts this directory first on PYTHONPATH; the repository's own sitecustomize.py
# runs this file too. With VLLM_ASCEND_OVERLAY unset it imports nothing (only `os` and `sys`, which
# every interpreter has already loaded) and hands over to the environment's own sitecustomize, if
# any. Nothing here may raise into the host program.
import os
import sys

_MARKER = b"# ascend-overlay sitecustomize"


def _is_ours(origin):
    try:
        with open(origin, "rb") as fh:
            return fh.read(len(_MARKER)) == _MARKER
    except OSError:
        return False


def _chain_next_sitecustomize():
    """Run the sitecustomize this one shadows (skipping other copies of ours), as site.py would."""
    external = sys.modules.get("_frozen_importlib_external")
    bootstrap = sys.modules.get("_frozen_importlib")
    if external is None or bootstrap is None:
        return None
    search = [p for p in sys.path if p]
    while True:
        spec = external.PathFinder.find_spec("sitecustomize", search)
        if spec is None or spec.loader is None or not spec.origin:
            return None
        if not _is_ours(spec.origin):
            break
        found_in = os.path.dirname(os.path.abspath(spec.origin))
        search = [p for p in search if os.path.abspath(p) != found_in]
    module = bootstrap.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # what site.py does for a failing sitecustomize
        sys.stderr.write(f"Error in sitecustomize ({spec.origin}); set PYTHONVERBOSE for traceback:\n"
                         f"{type(exc).__name__}: {exc}\n")
    return module


def _activate():
    if os.environ.get("VLLM_ASCEND_OVERLAY", "").strip().lower() in ("", "0", "false", "no", "off"):
        return
    strict = os.environ.get("VLLM_ASCEND_OVERLAY_STRICT", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        from ascend_overlay.activation import activate
    except Exception as exc:
        if strict:
            raise SystemExit(f"ascend-overlay (strict): cannot import the overlay: {type(exc).__name__}: {exc}") from None
        sys.stderr.write(f"WARNING [ascend_overlay] cannot import the overlay ({type(exc).__name__}: {exc}); "
                         "is it installed, or is its directory on PYTHONPATH?\n")
        return
    try:
        activate(door="sitecustomize")
    except Exception as exc:
        # Only reached in strict mode (activate() logs and swallows otherwise). site.py would print
        # and carry on after an exception, so strict mode has to stop the interpreter itself.
        import traceback

        traceback.print_exc()
        raise SystemExit(f"ascend-overlay (strict): {type(exc).__name__}: {exc}") from None


# The environment's own sitecustomize runs first, as it would without the overlay.
chained_sitecustomize = _chain_next_sitecustomize()
_activate()
