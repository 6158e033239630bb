"""Which modules define a top-level name: the cheap way to find where a vanished target went.

Parsing 3,000 files to answer "where is ``WorkerWrapperBase`` now?" would cost seconds; a line scan
for top-level ``class``/``def``/assignments costs a fraction of that and is cached per tree (keyed
by the files' sizes and times), so only the first miss on a tree pays it. Candidates found here are
confirmed by a real (griffe) lookup before anything is reported.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from ascend_overlay.core.files import write_atomic
from ascend_overlay.main2main.sources import cache_dir

_DEF = re.compile(rb"^(?:async[ \t]+def|def|class)[ \t]+([A-Za-z_]\w*)|^([A-Za-z_]\w*)[ \t]*(?::[^=\n]*)?=(?!=)",
                  re.MULTILINE)
_VERSION = 1


def _files(package_dir: Path) -> list[Path]:
    return sorted(package_dir.rglob("*.py"))


def _key(package_dir: Path, files: list[Path]) -> str:
    digest = hashlib.sha1(f"{_VERSION}:{package_dir.resolve()}".encode())
    for path in files:
        st = path.stat()
        digest.update(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def build(root: Path, package: str = "vllm") -> dict[str, list[str]]:
    """name -> modules defining it at top level, for the ``package`` under ``root`` (cached)."""
    package_dir = root / package
    files = _files(package_dir)
    key = _key(package_dir, files)
    cached = cache_dir() / "index" / f"{key}.json"
    try:
        return json.loads(cached.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    index: dict[str, list[str]] = {}
    for path in files:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        module = _module_name(root, path)
        for match in _DEF.finditer(data):
            name = (match.group(1) or match.group(2)).decode()
            modules = index.setdefault(name, [])
            if not modules or modules[-1] != module:
                modules.append(module)
    try:
        write_atomic(cached, json.dumps(index))
    except OSError:
        pass  # a read-only cache only costs speed
    return index
