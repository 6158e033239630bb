"""What main2main judges: a *subject* is a body of code that relies on vLLM.

The overlay is one subject (its patches, hook points and NPU modules); any vLLM plugin's package
directory is another (vllm-ascend's ``vllm_ascend/``, ~490 files). Both are read by the same code
(``ascend_overlay.reliance``: ``SourceFile``), never imported, and both become the same ``Target``
rows that ``check`` and ``drift`` judge, so a fix to the reading helps every subject at once.

A plugin is read file by file: every vLLM import (anywhere, also inside functions, under
``try/except ImportError`` and in both branches of a version test), attribute chains from imported
names and typed parameters, subclasses of vLLM classes (overrides, ``super()`` calls, names read on
``self``), assignment-style monkey patches and ``CustomOp.register_oot``. Each row carries the file
(relative to the package directory's parent, as the plugin's maintainers write it) and line.
"""

from __future__ import annotations

import ast
import enum
from dataclasses import dataclass, field
from pathlib import Path

from ascend_overlay.main2main.sources import SourceError
from ascend_overlay.main2main.targets import Target
from ascend_overlay.reliance.model import Use
from ascend_overlay.reliance.reader import SourceFile


class SubjectKind(str, enum.Enum):
    OVERLAY = "overlay"
    PLUGIN = "plugin"


class SubjectError(SourceError):
    """A plugin directory that cannot be a subject: the message says what to pass instead (exit 2)."""


@dataclass
class Subject:
    """One body of code relying on vLLM, as the rows ``check`` and ``drift`` judge."""

    kind: SubjectKind
    name: str                      # "ascend-overlay" or the plugin's package name
    targets: list[Target]
    problems: list[str] = field(default_factory=list)  # files not read (and why): listed, the rest checked
    root: Path | None = None       # the plugin's package directory
    files: int = 0                 # files read

    @property
    def is_plugin(self) -> bool:
        return self.kind is SubjectKind.PLUGIN


def overlay_subject(hotfix_dirs: tuple[str, ...] = ()) -> Subject:
    from ascend_overlay.main2main.targets import overlay_targets

    targets, problems = overlay_targets(hotfix_dirs)
    return Subject(SubjectKind.OVERLAY, "ascend-overlay", targets, problems)


def _module_name(relative: Path) -> str:
    parts = relative.with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_plugin_file(tree: ast.Module, display: str) -> list[Use]:
    """Every vLLM use of one plugin file (the passes the overlay's modules get, plus a plugin's own)."""
    file = SourceFile(tree, display, plugin=True)
    if not file.bindings:
        return []
    file.import_uses()
    file.imported_chains()
    file.classes()
    file.annotated()
    file.patches()
    return list(file.uses.values())


def plugin_subject(directory: Path) -> Subject:
    """Read a plugin's package directory; a directory that is not a package, or a package that never
    imports vLLM, is refused (``SubjectError``); a file that does not parse is listed, the rest read."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise SubjectError(f"{directory}: no such directory (--plugin takes a plugin's package directory, "
                           "e.g. a checkout's vllm_ascend/)")
    if not (directory / "__init__.py").is_file():
        raise SubjectError(f"{directory}: not a Python package (no __init__.py); pass the package directory "
                           "itself, e.g. vllm_ascend/ rather than the repository root")
    base = directory.resolve().parent
    targets: list[Target] = []
    problems: list[str] = []
    files = 0
    for path in sorted(directory.resolve().rglob("*.py")):
        relative = path.relative_to(base)
        if any(not part.isidentifier() for part in relative.with_suffix("").parts):
            continue  # not importable as a module (a script, a data folder)
        display = relative.as_posix()
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{display}: unreadable ({type(exc).__name__}: {exc})")
            continue
        if "vllm" not in text:
            files += 1
            continue
        try:
            tree = ast.parse(text, filename=display)
        except (SyntaxError, ValueError) as exc:
            line = getattr(exc, "lineno", None)
            problems.append(f"{display}{f':{line}' if line else ''}: does not parse ({type(exc).__name__}: "
                            f"{getattr(exc, 'msg', exc)}); not checked")
            continue
        files += 1
        module = _module_name(relative)
        for use in read_plugin_file(tree, display):
            if use.target is None:
                continue
            targets.append(Target(use.target, None, (), module, display, "", "relied-on", use, "plugin"))
    if not targets:
        raise SubjectError(f"{directory}: no file of this package imports vLLM ({files} files read); "
                           "main2main checks what a plugin uses of vLLM, and this one uses nothing")
    return Subject(SubjectKind.PLUGIN, directory.resolve().name, targets, problems, directory.resolve(), files)
