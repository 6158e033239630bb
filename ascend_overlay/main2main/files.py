"""Which files of the ``vllm`` package differ between two trees, and which were renamed or moved.

Hashing ~3,000 files takes a fraction of a second and tells exactly which modules can carry an API
difference, so the expensive static analysis only ever looks at those. Renames are recognised by
content (identical, or mostly the same lines), the way ``git diff -M`` does, because release wheels
carry no history.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

RENAME_THRESHOLD = 0.5
MIN_RENAME_LINES = 3  # empty __init__.py files are all alike: pairing them would invent moves


@dataclass
class FileChanges:
    modified: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str, int]] = field(default_factory=list)  # old, new, similarity %
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def changed_python(self) -> list[str]:
        return sorted(set(self.modified) | set(self.added) | set(self.removed))


def inventory(root: Path, package: str = "vllm") -> dict[str, str]:
    """relative path -> content digest for every Python file of the package."""
    out = {}
    for path in (root / package).rglob("*.py"):
        try:
            out[str(path.relative_to(root))] = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
        except OSError:
            continue
    return out


def _lines(path: Path) -> set[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    return {line.strip() for line in text.splitlines() if len(line.strip()) > 3}


def detect_renames(old_root: Path, new_root: Path, removed: list[str], added: list[str],
                   old_inv: dict[str, str], new_inv: dict[str, str]) -> list[tuple[str, str, int]]:
    """Pair removed with added files that hold (mostly) the same content; each file pairs at most once."""
    added_lines = {p: _lines(new_root / p) for p in added}
    added = [p for p in added if len(added_lines[p]) >= MIN_RENAME_LINES]
    by_digest: dict[str, list[str]] = {}
    for path in added:
        by_digest.setdefault(new_inv[path], []).append(path)
    pairs: list[tuple[str, str, int]] = []
    taken: set[str] = set()
    rest = []
    for path in removed:
        old_lines = _lines(old_root / path)
        if len(old_lines) < MIN_RENAME_LINES:
            continue
        same = [p for p in by_digest.get(old_inv[path], []) if p not in taken]
        if same:
            pairs.append((path, same[0], 100))
            taken.add(same[0])
        else:
            rest.append(path)
    for path in rest:
        old_lines = _lines(old_root / path)
        best, score = None, 0.0
        for candidate in added:
            lines = added_lines[candidate]
            if candidate in taken:
                continue
            if min(len(lines), len(old_lines)) * 2 < max(len(lines), len(old_lines)):
                continue  # sizes too different to be the same file
            jaccard = len(old_lines & lines) / len(old_lines | lines)
            if jaccard > score:
                best, score = candidate, jaccard
        if best is not None and score >= RENAME_THRESHOLD:
            pairs.append((path, best, round(score * 100)))
            taken.add(best)
    return sorted(pairs)


def compare(old_root: Path, new_root: Path, package: str = "vllm") -> FileChanges:
    old_inv, new_inv = inventory(old_root, package), inventory(new_root, package)
    changes = FileChanges(
        modified=sorted(p for p in old_inv if p in new_inv and old_inv[p] != new_inv[p]),
        added=sorted(p for p in new_inv if p not in old_inv),
        removed=sorted(p for p in old_inv if p not in new_inv))
    changes.renamed = detect_renames(old_root, new_root, changes.removed, changes.added, old_inv, new_inv)
    for rel in changes.modified + changes.added:
        changes.sizes[rel] = (new_root / rel).stat().st_size
    for rel in changes.removed:
        changes.sizes[rel] = (old_root / rel).stat().st_size
    return changes


def module_name(relpath: str) -> str | None:
    """``vllm/a/b.py`` -> ``vllm.a.b``; None for files that are not importable modules."""
    if not relpath.endswith(".py"):
        return None
    parts = relpath[:-3].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) if parts and all(p.isidentifier() for p in parts) else None
