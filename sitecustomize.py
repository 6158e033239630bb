# ascend-overlay sitecustomize (checkout copy): `PYTHONPATH=/path/to/repo VLLM_ASCEND_OVERLAY=1 ...`.
# It runs the packaged bootstrap (ascend_overlay/bootstrap/sitecustomize.py) in this module's
# namespace, so the logic exists once; with the variable unset it imports nothing new.
import os as _os

_path = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "ascend_overlay", "bootstrap", "sitecustomize.py")
with open(_path, encoding="utf-8") as _fh:
    exec(compile(_fh.read(), _path, "exec"))
del _path, _fh
