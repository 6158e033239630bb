"""What main2main judges: a *subject* is a body of code that relies on vLLM.

The overlay is one subject (its patches, hook points and NPU modules); any vLLM plugin's package
directory is another (vllm-ascend's ``vllm_ascend/``, ~490 files). Both are read by the same code
(``ascend_overlay.core.reliance``: ``SourceFile``), never imported, and both become the same ``Target``
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
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from ascend_overlay.core.reliance.model import Use
from ascend_overlay.core.reliance.reader import SourceFile
from ascend_overlay.main2main.sources import SourceError
from ascend_overlay.main2main.targets import Target, TargetRole


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


_READER_FILES = ("reliance/reader.py", "reliance/model.py", "reliance/shapes.py", "main2main/subjects.py")


def _reader_version() -> str:
    """A digest of the code that reads a plugin file: a cached reading is valid while it is unchanged."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha1()
    for name in _READER_FILES:
        try:
            digest.update((root / name).read_bytes())
        except OSError:
            digest.update(name.encode())
    return digest.hexdigest()[:16]


def _read_one(job: tuple[str, str]) -> tuple[str, list[Use] | str]:
    """One plugin file's uses, or why it was not read (run in a worker process for a cold read)."""
    text, display = job
    try:
        tree = ast.parse(text, filename=display)
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        return display, (f"{display}{f':{line}' if line else ''}: does not parse ({type(exc).__name__}: "
                         f"{getattr(exc, 'msg', exc)}); not checked")
    return display, read_plugin_file(tree, display)


def _read_all(jobs: list[tuple[str, str]]) -> dict[str, list[Use] | str]:
    """Every file's reading: from the cache (keyed by content and reader code) when it has it, the
    rest parsed over the cores. A 490-file plugin read cold is most of ``check --plugin``'s time."""
    import multiprocessing
    import pickle
    from concurrent.futures import ProcessPoolExecutor

    from ascend_overlay.main2main.sources import cache_dir

    version = _reader_version()
    folder = cache_dir() / "plugin-uses" / version
    keys = {display: hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest() for text, display in jobs}
    out: dict[str, list[Use] | str] = {}
    todo = []
    for text, display in jobs:
        try:
            out[display] = pickle.loads((folder / keys[display]).read_bytes())
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError):
            todo.append((text, display))
    if len(todo) > 40 and "fork" in multiprocessing.get_all_start_methods():
        try:
            with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
                done = list(pool.map(_read_one, todo, chunksize=8))
        except OSError:
            done = [_read_one(job) for job in todo]
    else:
        done = [_read_one(job) for job in todo]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        folder = None  # type: ignore[assignment]  # a read-only cache only costs speed
    for display, result in done:
        out[display] = result
        if folder is not None and not isinstance(result, str):
            try:
                tmp = folder / f"{keys[display]}.{os.getpid()}.tmp"
                tmp.write_bytes(pickle.dumps(result))
                tmp.replace(folder / keys[display])
            except OSError:
                pass
    return out


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
    jobs: list[tuple[str, str]] = []
    modules: dict[str, str] = {}
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
        files += 1
        if "vllm" in text:
            jobs.append((text, display))
            modules[display] = _module_name(relative)
    for display, result in sorted(_read_all(jobs).items()):
        if isinstance(result, str):
            problems.append(result)
            files -= 1
            continue
        for use in result:
            if use.target is not None:
                targets.append(Target(use.target, None, (), modules[display], display, "", TargetRole.RELIED_ON, use, "plugin"))
    if not targets:
        raise SubjectError(f"{directory}: no file of this package imports vLLM ({files} files read); "
                           "main2main checks what a plugin uses of vLLM, and this one uses nothing")
    return Subject(SubjectKind.PLUGIN, directory.resolve().name, targets, problems, directory.resolve(), files)
