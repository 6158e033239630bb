"""Trust rules for code that comes from outside the overlay's own release: hotfix directories and
the packages that declare the ``ascend_overlay.patches`` entry point.

That code runs in every Python process with the overlay on, often as root, so it is held to the rule
OpenSSH's ``StrictModes`` and sudo hold their files to: the file and every directory above it, up
to ``/``, owned by the current user or root and writable by nobody else. A directory anyone may write
(even sticky, like ``/tmp``) is refused: whoever can rename an entry of a directory above a hotfix can
swap the hotfix. An optional ``SHA256SUMS`` manifest (the format ``sha256sum`` writes) pins each
file's content. Relative paths are refused: they would resolve against each process's own directory.

Checking a path and then opening it again by name leaves a window in which the name can be pointed
elsewhere (a non-owner won 2 of 60 start-ups that way). So nothing here is checked by name and used
by name: directories are walked from ``/`` one component at a time with ``openat`` and checked
through the descriptor that was opened (a symlink is read and its target walked the same way, so the
directory holding the link is checked too); each file is opened once with ``O_NOFOLLOW|O_NONBLOCK``
relative to its checked directory, ``fstat``-ed, and read once. The caller hashes and compiles those
bytes. ``O_NONBLOCK`` means a FIFO planted where a file should be is refused at once instead of
hanging start-up, and a file larger than ``MAX_FILE_BYTES`` is refused instead of read.

This module only judges and reads; ``catalog.py`` compiles. Every refusal says what to do next.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import shlex
import stat
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

MANIFEST_NAME = "SHA256SUMS"
MAX_FILE_BYTES = 8 << 20  # far above any patch file; keeps a planted huge file from being read whole
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC
_MAX_SYMLINKS = 40  # as the kernel's own limit: a loop of links is refused, not followed forever
_SHARED_HINT = ("do not chmod it; keep hotfixes in a directory only you and root can write, under "
                "directories only you and root can write (e.g. mkdir -m 755 /opt/vllm-hotfixes)")


class Refused(Exception):
    """A path the overlay will not take code or a file from; the text says why and what to do."""


class Missing(Refused):
    """The path does not exist (nothing to distrust: the words say so plainly)."""


class Unsigned(Refused):
    """A file that is not what ``SHA256SUMS`` says (missing from it, or a different hash)."""


@dataclass(frozen=True)
class Checked:
    """A file's bytes as read once through a checked descriptor, and that descriptor's ``fstat``."""

    path: str       # how it is named to a person (under the directory as given)
    data: bytes
    stat: os.stat_result

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def trusted_owner(uid: int) -> bool:
    return uid in (os.geteuid(), 0)


def _writers(mode: int) -> str:
    return " and ".join(w for w, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if mode & bit)


def _kind(mode: int) -> str:
    for test, word in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return word
    return "not a regular file"


def directory_problem(st: os.stat_result, shown: str, real: str) -> str | None:
    """Why a directory on the way to outside code may not be trusted, or None."""
    if not trusted_owner(st.st_uid):
        return (f"{shown} is owned by uid {st.st_uid}, neither you (uid {os.geteuid()}) nor root: its owner can "
                f"swap what lies below it; keep hotfixes under directories you or root own")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        mode = f"mode {stat.S_IMODE(st.st_mode):o}"
        if st.st_mode & stat.S_ISVTX:
            return f"{shown} is a shared directory writable by {_writers(st.st_mode)} ({mode}, sticky): {_SHARED_HINT}"
        return (f"{shown} is writable by {_writers(st.st_mode)} ({mode}): anyone who can write it can swap what "
                f"lies below it; run: chmod go-w {shlex.quote(real)}")
    return None


def file_problem(st: os.stat_result, shown: str) -> str | None:
    """Why a file of outside code may not be trusted, or None."""
    if not stat.S_ISREG(st.st_mode):
        return f"{shown} is {_kind(st.st_mode)}, not a regular file"
    if not trusted_owner(st.st_uid):
        return (f"{shown} is owned by uid {st.st_uid}, neither you (uid {os.geteuid()}) nor root; "
                f"move the hotfix into a directory you own")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (f"{shown} is writable by {_writers(st.st_mode)} (mode {stat.S_IMODE(st.st_mode):o}); "
                f"run: chmod go-w {shlex.quote(shown)}")
    if st.st_size > MAX_FILE_BYTES:
        return f"{shown} is {st.st_size} bytes, more than the {MAX_FILE_BYTES} a patch file may have"
    return None


def _read_all(fd: int, shown: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_FILE_BYTES:
            raise Refused(f"{shown} grew past {MAX_FILE_BYTES} bytes while being read")
        chunks.append(chunk)


def _open_error(exc: OSError, shown: str, what: str) -> Refused:
    if exc.errno == errno.ENOENT:
        return Missing(f"{shown} does not exist")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return Refused(f"cannot open {shown}: permission denied")
    return Refused(f"cannot open {what} {shown}: {exc.strerror}")


class TrustedDir:
    """A directory opened through a walk whose every component passed the rule. What lies below it is
    opened relative to its descriptor, so a name swapped in a directory above it cannot redirect a read."""

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path  # as given, for messages and for naming the files below it

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> TrustedDir:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def below(self, name: str) -> str:
        return os.path.join(self.path, name)

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in os.listdir(self.fd) if fnmatch.fnmatchcase(n, pattern))

    def lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except OSError:
            return None

    def subdir(self, name: str) -> TrustedDir:
        """A directory directly below this one (never through a symlink), checked by the rule."""
        shown = self.below(name)
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                st = self.lstat(name)
                if st is not None and stat.S_ISLNK(st.st_mode):
                    raise Refused(f"{shown} is a symlink: folders inside a hotfix directory must be real "
                                  "directories (a link could be pointed anywhere later)") from None
                raise Refused(f"{shown} is not a directory") from None
            raise _open_error(exc, shown, "directory") from None
        try:
            problem = directory_problem(os.fstat(fd), shown, shown)
        except OSError as exc:
            os.close(fd)
            raise _open_error(exc, shown, "directory") from None
        if problem:
            os.close(fd)
            raise Refused(problem)
        return TrustedDir(fd, shown)

    def read(self, name: str) -> Checked:
        """A file of this directory, opened once without following links or blocking, checked through
        its descriptor and read whole: the bytes returned are the bytes that were checked."""
        shown = self.below(name)
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise Refused(f"{shown} is a symlink: a patch file must be a regular file in its directory "
                              "(copy it in; a link could be pointed anywhere later)") from None
            raise _open_error(exc, shown, "file") from None
        try:
            st = os.fstat(fd)
            problem = file_problem(st, shown)
            if problem:
                raise Refused(problem)
            return Checked(shown, _read_all(fd, shown), st)
        except OSError as exc:
            raise Refused(f"cannot read {shown}: {exc.strerror}") from None
        finally:
            os.close(fd)


def open_directory(raw: str) -> TrustedDir:
    """Walk ``raw`` from ``/`` one component at a time, each opened with ``O_NOFOLLOW`` relative to the
    last and checked through its descriptor; a symlink is read and its target walked the same way.
    Raises ``Refused`` naming the first component that fails the rule."""
    if not os.path.isabs(raw):
        raise Refused(f"{raw}: a relative path is refused: it would depend on each process's working directory; "
                      "give an absolute path")
    fd = os.open("/", _DIR_FLAGS)
    real, followed = "/", 0
    parts = deque(raw.split("/"))
    try:
        _check_component(fd, "/", raw, last=not any(p not in ("", ".") for p in parts), linked=False)
        while parts:
            name = parts.popleft()
            if name in ("", "."):
                continue
            last = not any(p not in ("", ".") for p in parts)
            try:
                nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                target = _link_target(fd, name) if exc.errno in (errno.ENOTDIR, errno.ELOOP) else None
                if target is None:
                    shown = raw if last else os.path.join(real, name)
                    if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                        raise Refused(f"{shown} is not a directory") from None
                    raise _open_error(exc, shown, "directory") from None
                followed += 1
                if followed > _MAX_SYMLINKS:
                    raise Refused(f"{raw}: too many levels of symlinks") from None
                parts.extendleft(reversed(target.split("/")))
                if target.startswith("/"):
                    os.close(fd)
                    fd, real = os.open("/", _DIR_FLAGS), "/"
                continue
            os.close(fd)
            fd = nfd
            real = os.path.dirname(real) if name == ".." else os.path.join(real, name)
            _check_component(fd, real, raw, last=last, linked=followed > 0)
    except BaseException:
        os.close(fd)
        raise
    return TrustedDir(fd, raw)


def _link_target(fd: int, name: str) -> str | None:
    try:
        return os.readlink(name, dir_fd=fd)
    except OSError:
        return None


def _check_component(fd: int, real: str, raw: str, *, last: bool, linked: bool) -> None:
    if last:
        shown = f"{raw} (a symlink to {real})" if linked and real != os.path.normpath(raw) else raw
    else:
        shown = f"{real} (a directory above {raw})"
    problem = directory_problem(os.fstat(fd), shown, real)
    if problem:
        raise Refused(problem)


def parse_manifest(text: str, shown: str, directory: str) -> dict[str, str]:
    """Parse ``<sha256>  <relative path>`` lines; raises ValueError on a malformed line."""
    entries: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        digest, _, name = line.partition(" ")
        name = name.strip().lstrip("*")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest.lower()) or not name:
            raise ValueError(f"{shown}:{lineno}: expected '<sha256>  <file>' as sha256sum writes it; "
                             f"rewrite it with: ascend-overlay hotfix manifest {shlex.quote(directory)}")
        entries[os.path.normpath(name)] = digest.lower()
    return entries


class HotfixDirectory:
    """A hotfix directory opened and checked whole: itself, every directory above it, each phase
    folder in it, and its manifest. Files are read from it one at a time with ``read``."""

    def __init__(self, root: TrustedDir, folders: dict[str, TrustedDir], manifest: dict[str, str] | None) -> None:
        self.root = root
        self.folders = folders
        self.manifest = manifest

    @property
    def path(self) -> str:
        return self.root.path

    def close(self) -> None:
        for folder in self.folders.values():
            folder.close()
        self.root.close()

    def __enter__(self) -> HotfixDirectory:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def patch_files(self, folders: tuple[str, ...]) -> list[tuple[str, str]]:
        """``(folder, name)`` of every ``patch_*.py`` in the given folders (in that order), then at the top
        level (folder ``""``)."""
        found = [(f, n) for f in folders if f in self.folders for n in self.folders[f].names("patch_*.py")]
        return found + [("", n) for n in self.root.names("patch_*.py")]

    def read(self, folder: str, name: str) -> Checked:
        """One patch file, checked and read once, its bytes held against the manifest when there is one."""
        try:
            checked = (self.folders[folder] if folder else self.root).read(name)
        except Missing:
            raise
        except Refused as exc:
            raise Refused(f"untrusted file refused: {exc}") from None
        if self.manifest is not None:
            problem = self.signature_problem(os.path.join(folder, name), checked)
            if problem:
                raise Unsigned(problem)
        return checked

    def signature_problem(self, relative: str, checked: Checked) -> str | None:
        assert self.manifest is not None
        resign = f"ascend-overlay hotfix manifest {shlex.quote(self.path)}"
        expected = self.manifest.get(os.path.normpath(relative))
        if expected is None:
            return f"not listed in {MANIFEST_NAME}; if you trust it, sign it with: {resign}"
        actual = checked.sha256
        if actual != expected:
            return (f"SHA-256 mismatch, file refused (tampered or edited after signing): {MANIFEST_NAME} says "
                    f"{expected[:16]}..., file is {actual[:16]}...; if the edit is yours, re-sign with: {resign}")
        return None

    def find_module(self, dotted: str) -> Checked | None:
        """The source of module ``dotted`` resolved inside this directory (``a.b`` is ``a/b.py`` or
        ``a/b/__init__.py``), checked like a patch file; None when it does not lie here."""
        parts = dotted.split(".")
        opened: list[TrustedDir] = []
        try:
            here = self.root
            for part in parts[:-1]:
                st = here.lstat(part)
                if st is None or not stat.S_ISDIR(st.st_mode):
                    return None
                here = here.subdir(part)
                opened.append(here)
            last = parts[-1]
            if here.lstat(last + ".py") is not None:
                return here.read(last + ".py")
            st = here.lstat(last)
            if st is not None and stat.S_ISDIR(st.st_mode) and here.lstat(os.path.join(last, "__init__.py")):
                package = here.subdir(last)
                opened.append(package)
                return package.read("__init__.py")
            return None
        finally:
            for d in opened:
                d.close()


def open_hotfix_directory(raw: str, folders: tuple[str, ...]) -> HotfixDirectory:
    """Open and check a hotfix directory, its ``folders`` present in it and its manifest; raises
    ``Refused`` when any of them fails (the directory is then refused whole)."""
    if not os.path.isabs(raw):
        raise Refused(f"relative hotfix directory refused: {raw} would depend on each process's working directory; "
                      "use an absolute path in VLLM_ASCEND_OVERLAY_PATH")
    try:
        root = open_directory(raw)
    except Missing:
        raise
    except Refused as exc:
        raise Refused(f"untrusted directory refused: {exc}") from None
    opened: dict[str, TrustedDir] = {}
    try:
        for folder in folders:
            if root.lstat(folder) is None:
                continue
            try:
                opened[folder] = root.subdir(folder)
            except Refused as exc:
                raise Refused(f"untrusted directory refused: {exc}") from None
        manifest = None
        if root.lstat(MANIFEST_NAME) is not None:
            try:
                checked = root.read(MANIFEST_NAME)
                manifest = parse_manifest(checked.data.decode("utf-8"), checked.path, raw)
            except (Refused, UnicodeDecodeError, ValueError) as exc:
                raise Refused(f"manifest refused, so is the directory: {exc}") from None
    except BaseException:
        for d in opened.values():
            d.close()
        root.close()
        raise
    return HotfixDirectory(root, opened, manifest)


def trust_problem(path: Path) -> str | None:
    """Why directory ``path`` (and every directory above it) may not be trusted, or None."""
    try:
        open_directory(str(path)).close()
    except Refused as exc:
        return str(exc)
    return None


def check_package_file(path: str) -> Checked:
    """A file of an installed package (an entry point's ``__init__.py``), checked with every directory
    above it and read once."""
    with open_directory(os.path.dirname(path)) as directory:
        return directory.read(os.path.basename(path))


def read_regular(path: str) -> bytes:
    """A file's bytes, refusing anything but a regular file (never blocking on a FIFO, never through a
    symlink); for the author's own files, which carry no owner rule (``hotfix manifest``)."""
    try:
        fd = os.open(path, _FILE_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Refused(f"{path} is a symlink; sign the file it points to in its own directory") from None
        raise _open_error(exc, path, "file") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(f"{path} is {_kind(st.st_mode)}, not a regular file")
        return _read_all(fd, path)
    finally:
        os.close(fd)
