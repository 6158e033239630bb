"""``precheck``'s answers remembered between runs of ``status``, ``list`` and ``hotfix verify``.

``applier.precheck`` imports every target's module to resolve it and compare it with its pin: on
this project's 2-core machines that is ``import vllm`` plus torch, 10 to 25 s, for an answer that
only changes when vLLM, its dependencies or the patch change. So the answers are kept in the cache
directory, under a key made of everything they depend on:

- the overlay's own version and source files, the interpreter, and the installed distributions
  (their ``*.dist-info`` names on ``sys.path``: a new torch or a removed optional dependency of vLLM
  changes what imports);
- vLLM's distribution and version, and the size and modification time of every file of its package
  (what Python's own bytecode cache trusts to tell a changed source: an edited or reinstalled
  vLLM gives a new key, 50 ms for its ~2,600 files here, where hashing their 55 MB would cost more);
- vLLM's own ``VLLM_*`` environment variables (some change what its modules do at import);
- per patch, the SHA-256 of its file (its targets, pins and relied-on names are read from it).

The answers describe a fresh import of vLLM. A process that has imported vLLM already (a test that
changed a vLLM class, a program embedding the overlay) may hold something else in memory than its
files, so there every patch is checked live and nothing is remembered. A patch without a file (one
loaded from an entry point) is always checked live. The answer given
from the cache is the one the live check gave for the same key, so the commands say the same thing,
only sooner; ``--no-cache`` on the commands checks live and refreshes the entries.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

from ascend_overlay.core import applier
from ascend_overlay.core.files import cache_dir, write_atomic
from ascend_overlay.core.patch import Patch
from ascend_overlay.core.vocabulary import Decision, Reason

FORMAT = 1
_KEEP = 16                     # cache files kept (one per environment); the oldest go first
_ENTRIES = 512                 # answers kept per environment (hotfix files come and go); the oldest go first
_PACKAGE = Path(__file__).resolve().parents[1]


def _walk(root: str, digest: Any, suffixes: tuple[str, ...]) -> None:
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if entry.name != "__pycache__":
                _walk(entry.path, digest, suffixes)
        elif entry.name.endswith(suffixes):
            try:
                st = entry.stat()
            except OSError:
                continue
            digest.update(f"{entry.path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())


def environment_key() -> str | None:
    """The key of this environment's answers; None when no vLLM is installed (nothing slow to skip)."""
    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        return None
    from ascend_overlay import __version__
    from ascend_overlay.core.vllm_version import installed_from_metadata, vllm_distribution_name

    digest = hashlib.sha256()
    digest.update(f"{FORMAT}\0{__version__}\0{sys.executable}\0{sys.version}\n".encode())
    digest.update(f"{vllm_distribution_name()}\0{installed_from_metadata()}\n".encode())
    dists: list[str] = []
    for entry in sys.path:
        try:
            dists += [name for name in os.listdir(entry or ".") if name.endswith(".dist-info")]
        except OSError:
            continue
    digest.update("\0".join(sorted(dists)).encode())
    digest.update("\0".join(f"{k}={v}" for k, v in sorted(os.environ.items())
                            if k.startswith("VLLM_") and not k.startswith("VLLM_ASCEND_OVERLAY")).encode())
    for location in spec.submodule_search_locations:
        _walk(location, digest, (".py", ".so"))
    _walk(str(_PACKAGE), digest, (".py",))
    return digest.hexdigest()[:32]


def _file_digest(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _encode(decision: Decision | None) -> dict[str, str] | None:
    if decision is None:
        return None
    return {"reason": decision.reason.value, "text": decision.text, "hint": decision.hint}


def _decode(data: dict[str, str] | None) -> Decision | None:
    if data is None:
        return None
    return Decision(False, Reason(data["reason"]), data["text"], data.get("hint", ""))


def fresh_process() -> bool:
    """No vLLM module is loaded here yet: what precheck imports is what is on disk."""
    return "vllm" not in sys.modules


class PrecheckCache:
    """``refusal(patch)``: what ``applier.precheck(patch).refusal`` is, from the cache when it can be."""

    def __init__(self, enabled: bool = True) -> None:
        self.key = environment_key() if enabled and fresh_process() else None
        self.path = cache_dir() / "prechecks" / f"{self.key}.json" if self.key else None
        self.entries: dict[str, Any] = {}
        self.hits = 0
        self.misses = 0
        self._dirty = False
        if self.path is not None:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                if isinstance(data, dict) and data.get("format") == FORMAT and isinstance(data.get("entries"), dict):
                    self.entries = data["entries"]
            except (OSError, ValueError):
                pass

    def refusal(self, patch: Patch) -> Decision | None:
        digest = _file_digest(patch.file) if self.path is not None else None
        entry_key = f"{patch.name}\0{patch.source}\0{digest}"
        if digest is not None and entry_key in self.entries:
            try:
                decision = _decode(self.entries[entry_key])
                self.hits += 1
                return decision
            except (KeyError, TypeError, ValueError):
                pass  # an entry this version cannot read is checked again
        self.misses += 1
        decision = applier.precheck(patch).refusal
        if digest is not None:
            self.entries[entry_key] = _encode(decision)
            self._dirty = True
        return decision

    def save(self) -> None:
        """Write the new answers (a read-only or full cache only costs speed next time)."""
        if self.path is None or not self._dirty:
            return
        if len(self.entries) > _ENTRIES:
            self.entries = dict(list(self.entries.items())[-_ENTRIES:])
        try:
            write_atomic(self.path, json.dumps({"format": FORMAT, "entries": self.entries}))
            kept = sorted(self.path.parent.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
            for old in kept[_KEEP:]:
                old.unlink(missing_ok=True)
        except OSError:
            return
        self._dirty = False
