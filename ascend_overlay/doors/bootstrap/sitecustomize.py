# ascend-overlay sitecustomize: the interpreter-start hook (repo root's sitecustomize.py links here).
# With VLLM_ASCEND_OVERLAY unset it imports nothing and only hands over to the environment's own
# sitecustomize. Kept tiny on purpose: every Python process on the path pays for compiling it.
import os
import sys


def _chain() -> "object":
    ext, boot = sys.modules["_frozen_importlib_external"], sys.modules["_frozen_importlib"]
    search = [p for p in sys.path if p]
    while True:
        spec = ext.PathFinder.find_spec("sitecustomize", search)
        if spec is None or not spec.origin:
            return None
        with open(spec.origin, "rb") as fh:
            if fh.read(30) != b"# ascend-overlay sitecustomize":
                break
        own = os.path.dirname(os.path.abspath(spec.origin))
        search = [p for p in search if os.path.abspath(p) != own]
    module = boot.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # as site.py treats a failing sitecustomize
        sys.stderr.write(f"Error in sitecustomize ({spec.origin}): {type(exc).__name__}: {exc}\n")
    return module


try:
    chained_sitecustomize = _chain()
except Exception as exc:
    sys.stderr.write(f"WARNING [ascend_overlay] could not chain to the next sitecustomize: {exc}\n")
if os.environ.get("VLLM_ASCEND_OVERLAY", "").strip().lower() not in ("", "0", "false", "no", "off"):
    from ascend_overlay.doors.bootstrap.start import start

    start("sitecustomize")
