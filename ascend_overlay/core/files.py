"""Files the overlay writes whole: one way to replace a file so no reader ever sees half of it.

Every writer of a file that someone else may read at the same moment (a cache shared by concurrent
runs, the verified-version file, the generated docs, hotfix skeletons and manifests, smoke's outputs
and artifacts, a downloaded archive, ``report --html``'s page) goes through ``replacing``: the content goes to a
uniquely named file beside the target (same directory, so the same file system), and only a
complete file is renamed over it (``os.replace``, atomic on POSIX). A failure removes the temporary
file and leaves the old target as it was. Two kinds of writing keep their own way, for a reason:
the report file is appended to by many processes at once, which needs a lock, not a rename
(``core/report.py``); a whole directory (an unpacked wheel, the tiny model a library writes file by
file) is made beside its target and published with its completion marker last
(``main2main.sources.staged_tree``, ``serving.tiny_model``), since no single rename can replace a
directory that readers may already hold open.

Also the overlay's cache directory, shared by every tool that keeps something between runs.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

CACHE_ENV = "ASCEND_OVERLAY_CACHE"


def cache_dir() -> Path:
    """``$ASCEND_OVERLAY_CACHE`` or ``~/.cache/ascend-overlay``: shared by runs, so work is done once."""
    raw = os.environ.get(CACHE_ENV, "").strip()
    return Path(raw).expanduser() if raw else Path.home() / ".cache" / "ascend-overlay"


@contextlib.contextmanager
def replacing(target: str | os.PathLike[str], mode: int = 0o644) -> Iterator[Path]:
    """A fresh temporary path beside ``target``; when the block succeeds it becomes ``target``
    (with ``mode``), when it raises it is removed and ``target`` is untouched."""
    final = Path(target)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    staging = Path(name)
    try:
        yield staging
        os.chmod(staging, mode)
        os.replace(staging, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()


def write_atomic(target: str | os.PathLike[str], data: str | bytes, mode: int = 0o644) -> Path:
    """Replace ``target`` with ``data`` (text is written as UTF-8), whole or not at all."""
    with replacing(target, mode) as staging:
        staging.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(target)
