"""The one place that says which vLLM the overlay is verified against, and the way to move it.

The value lives in ``ascend_overlay/core/verified_vllm.py`` (a module, so it ships in every wheel and any
code can import it); this module reads it without importing (so a ``--set`` is seen at once) and
rewrites it whole, so the file never holds a half-edited value.
"""

from __future__ import annotations

import ast
import datetime
import re
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from ascend_overlay.core.errors import OverlayError
from ascend_overlay.core.files import write_atomic

FILE = Path(__file__).resolve().parent.parent / "core" / "verified_vllm.py"
_COMMIT = re.compile(r"^[0-9a-f]{7,40}$")

_TEMPLATE = '''"""The vLLM version (and commit) the overlay is verified against: the single source of truth.

Written by ``ascend-overlay verified --set VERSION [--commit SHA]``; edit with that command so the
format stays machine-readable. ``ascend-overlay check`` compares the vLLM it checks with this, and
``ascend-overlay drift verified NEW`` is the usual way to see what moving it would take.
"""

VERSION = {version!r}
COMMIT = {commit!r}
VERIFIED_ON = {date!r}
'''


class VerifiedError(OverlayError):
    """The verified-version file is unreadable, or a new value is malformed."""


@dataclass(frozen=True)
class Verified:
    version: str
    commit: str | None
    verified_on: str | None
    path: Path


def read(path: Path | None = None) -> Verified:
    path = path or FILE
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError) as exc:
        raise VerifiedError(f"{path}: cannot read the verified vLLM version ({exc}); restore it with "
                            "`ascend-overlay verified --set VERSION`") from None
    values: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    version = values.get("VERSION")
    if not isinstance(version, str):
        raise VerifiedError(f"{path}: no VERSION string; restore it with `ascend-overlay verified --set VERSION`")
    commit = values.get("COMMIT")
    date = values.get("VERIFIED_ON")
    return Verified(version, commit if isinstance(commit, str) else None, date if isinstance(date, str) else None,
                    path)


def validate(version: str, commit: str | None) -> tuple[str, str | None]:
    try:
        Version(version)
    except InvalidVersion:
        raise VerifiedError(f"{version!r} is not a PEP 440 version (e.g. 0.33.0 or 0.33.1.dev12+g1a2b3c4)") from None
    if commit is not None:
        commit = commit.strip().lower()
        if commit.startswith("g") and _COMMIT.match(commit[1:]):
            commit = commit[1:]
        if not _COMMIT.match(commit):
            raise VerifiedError(f"{commit!r} is not a git commit id (7 to 40 hex digits)")
    return version, commit


def write(version: str, commit: str | None, path: Path | None = None,
          today: datetime.date | None = None) -> Verified:
    path = path or FILE
    version, commit = validate(version, commit)
    date = (today or datetime.date.today()).isoformat()
    text = _TEMPLATE.format(version=version, commit=commit, date=date)
    write_atomic(path, text)
    return Verified(version, commit, date, path)
