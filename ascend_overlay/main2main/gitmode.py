"""Git mode: the drift report between two commits of a vLLM checkout, and a plan for long ranges.

Following vLLM main means adapting to hundreds of commits; done in one jump, the breakages pile up
and tangle. The plan cuts the range into steps of at most N changed lines in the ``vllm`` package,
with every commit that touches dependency files (requirements, pyproject, ...) in a step of its own,
because a torch bump needs a different kind of adaptation than a refactor. Each commit's tree is read
with ``git archive`` into the cache (a commit never changes), never by checking anything out.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ascend_overlay.core.vllm_version import stated_by_tree
from ascend_overlay.main2main import drift
from ascend_overlay.main2main.priorities import is_dependency_file
from ascend_overlay.main2main.sources import PACKAGE, SourceError, VllmSource, cache_dir, publish
from ascend_overlay.main2main.targets import Target

DEFAULT_MAX_LINES = 1500


class GitError(SourceError):
    """git refused: not a repository, an unknown commit, or a broken range."""


def git(repo: Path, *args: str, binary: bool = False) -> Any:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, timeout=600, check=False)
    except FileNotFoundError:
        raise GitError("git is not installed; git mode needs it") from None
    except subprocess.SubprocessError as exc:
        raise GitError(f"git {' '.join(args)}: {exc}") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(f"git {' '.join(args[:3])} failed in {repo}: {message[-1] if message else 'no output'}")
    return done.stdout if binary else done.stdout.decode(errors="replace")


def check_repo(repo: Path) -> Path:
    repo = repo.expanduser().resolve()
    if not repo.is_dir():
        raise GitError(f"{repo}: no such directory (git mode needs a local vLLM checkout)")
    git(repo, "rev-parse", "--git-dir")
    return repo


def resolve_commit(repo: Path, ref: str) -> str:
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()
    except GitError:
        raise GitError(f"{ref!r} is not a commit in {repo} (try a sha, a tag or a branch name)") from None


def _describe(repo: Path, sha: str) -> str | None:
    try:
        text = git(repo, "describe", "--tags", "--always", sha).strip()
    except GitError:
        return None
    return text[1:] if text.startswith("v") and text[1:2].isdigit() else text


def export(repo: Path, ref: str) -> VllmSource:
    """The ``vllm`` package of one commit, unpacked once into the cache."""
    sha = resolve_commit(repo, ref)
    target = cache_dir() / "git" / sha
    if not (target / ".complete").is_file():
        data = git(repo, "archive", "--format=tar", sha, "--", PACKAGE, binary=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=sha[:12] + ".", dir=target.parent))
        try:
            with tarfile.open(fileobj=io.BytesIO(data)) as archive:
                members = [m for m in archive.getmembers() if m.isfile() or m.isdir()]
                if hasattr(tarfile, "data_filter"):
                    archive.extractall(staging, members=members, filter="data")
                else:  # Python < 3.11.4: members are already limited to plain files and directories
                    archive.extractall(staging, members=members)
            (staging / ".complete").write_text(sha, encoding="utf-8")
            publish(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if not (target / PACKAGE / "__init__.py").is_file():
        raise GitError(f"commit {sha[:12]} has no {PACKAGE}/__init__.py: is {repo} a vLLM checkout?")
    version, _ = stated_by_tree(target)
    return VllmSource(f"{ref} ({repo.name})", "git", target, version or _describe(repo, sha), sha)


def _numstat(text: str) -> list[tuple[int, str]]:
    rows = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        added, deleted, path = parts
        lines = (int(added) if added.isdigit() else 0) + (int(deleted) if deleted.isdigit() else 0)
        rows.append((lines, path))
    return rows


def renames(repo: Path, old: str, new: str) -> list[tuple[str, str, int]]:
    out = git(repo, "diff", "--name-status", "-M", "-z", old, new)
    fields = out.split("\0")
    pairs, i = [], 0
    while i < len(fields) and fields[i]:
        status = fields[i]
        if status.startswith(("R", "C")):
            similarity = int(status[1:] or 0)
            if status.startswith("R"):
                pairs.append((fields[i + 1], fields[i + 2], similarity))
            i += 3
        else:
            i += 2
    return pairs


def drift_between(repo: Path, old: str, new: str, targets: list[Target], *, subject: str = "overlay",
                  progress: Any = None) -> drift.DriftReport:
    """The drift report between two commits, with git's own rename detection and the files outside
    the package (tests, docs, dependency files) listed by size."""
    repo = check_repo(repo)
    old_src, new_src = export(repo, old), export(repo, new)
    assert old_src.commit is not None and new_src.commit is not None  # an export names its commit
    stats = _numstat(git(repo, "diff", "--numstat", "--no-renames", old_src.commit, new_src.commit))
    other = [(path, lines) for lines, path in stats if not path.startswith(PACKAGE + "/")]
    return drift.compare(old_src, new_src, targets, other_files=other,
                         renames=renames(repo, old_src.commit, new_src.commit), subject=subject, progress=progress)


@dataclass
class Commit:
    sha: str
    subject: str
    package_lines: int = 0
    dependency_files: list[str] = field(default_factory=list)
    target_files: list[str] = field(default_factory=list)


@dataclass
class Step:
    base: str                # adapt from this commit ...
    end: str                 # ... to this one
    commits: list[Commit]
    package_lines: int
    dependencies: bool       # a step of its own: it changes what vLLM builds and runs against
    oversized: bool          # a single commit larger than the limit

    def as_dict(self) -> dict[str, Any]:
        return {"base": self.base, "end": self.end, "commits": [c.sha for c in self.commits],
                "subjects": [c.subject for c in self.commits], "package_lines": self.package_lines,
                "dependencies": self.dependencies, "oversized": self.oversized,
                "dependency_files": sorted({f for c in self.commits for f in c.dependency_files}),
                "touches_target_modules": sorted({f for c in self.commits for f in c.target_files})}


def commits_in_range(repo: Path, old: str, new: str, target_files: set[str]) -> list[Commit]:
    log = git(repo, "log", "--reverse", "--first-parent", "--diff-merges=first-parent", "--no-renames",
              "--numstat", "--format=@@@%H%x09%s", f"{old}..{new}")
    commits: list[Commit] = []
    for line in log.splitlines():
        if line.startswith("@@@"):
            sha, _, subject = line[3:].partition("\t")
            commits.append(Commit(sha, subject))
            continue
        rows = _numstat(line)
        if not rows or not commits:
            continue
        lines, path = rows[0]
        current = commits[-1]
        if path.startswith(PACKAGE + "/"):
            current.package_lines += lines
        if is_dependency_file(path):
            current.dependency_files.append(path)
        if path in target_files:
            current.target_files.append(path)
    return commits


def plan(repo: Path, old: str, new: str, targets: list[Target], max_lines: int = DEFAULT_MAX_LINES) -> list[Step]:
    """Cut ``old..new`` into steps of at most ``max_lines`` package lines (a bigger single commit is a
    step alone, marked oversized); dependency-file commits always stand alone."""
    if max_lines < 1:
        raise GitError(f"--max-lines must be at least 1 (got {max_lines})")
    repo = check_repo(repo)
    old_sha, new_sha = resolve_commit(repo, old), resolve_commit(repo, new)
    try:
        git(repo, "merge-base", "--is-ancestor", old_sha, new_sha)
    except GitError:
        raise GitError(f"{old} is not an ancestor of {new}: a plan needs a forward range") from None
    target_files = {t.module.replace(".", "/") + ".py" for t in targets} | \
                   {t.module.replace(".", "/") + "/__init__.py" for t in targets}
    commits = commits_in_range(repo, old_sha, new_sha, target_files)
    steps: list[Step] = []
    current: list[Commit] = []
    base = old_sha

    def flush(dependencies: bool = False) -> None:
        nonlocal current, base
        if not current:
            return
        lines = sum(c.package_lines for c in current)
        steps.append(Step(base, current[-1].sha, current, lines, dependencies,
                          len(current) == 1 and lines > max_lines))
        base = current[-1].sha
        current = []

    for commit in commits:
        if commit.dependency_files:
            flush()
            current = [commit]
            flush(dependencies=True)
            continue
        if current and sum(c.package_lines for c in current) + commit.package_lines > max_lines:
            flush()
        current.append(commit)
    flush()
    return steps
