"""Git mode on a vLLM-like repository built here: drift between commits, and the step plan."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from main2main_fixtures import CASES, build_git_repo, synthetic_targets

from ascend_overlay.main2main import gitmode

CLI = [sys.executable, "-m", "ascend_overlay"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    path = tmp_path_factory.mktemp("m2m_git") / "vllm-src"
    return path, build_git_repo(path)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASCEND_OVERLAY_CACHE", str(tmp_path / "cache"))


def test_drift_between_commits_finds_every_case(repo: tuple[Path, dict[str, str]]) -> None:
    path, commits = repo
    report = gitmode.drift_between(path, commits["old"], commits["new"], synthetic_targets())
    p0 = {e.object: e for e in report.by_priority(0)}
    for case, (target, _pin, _status) in CASES.items():
        assert target.replace(":", ".") in p0, case
        assert f"patches/worker/patch_{case}.py" in p0[target.replace(":", ".")].patches
    assert "vllm.platforms.interface.Platform.get_kv_layout" in p0
    assert report.old.commit == commits["old"] and report.new.commit == commits["new"]
    other = dict(report.other_files)
    assert set(other) == {"requirements/common.txt", "tests/test_basic.py"}
    by_file = {e.file: e for e in report.entries if e.change == "file changed"}
    assert by_file["requirements/common.txt"].priority == 1
    assert by_file["requirements/common.txt"].area == "dependencies"
    assert by_file["tests/test_basic.py"].priority == 4


def test_commit_trees_are_cached_by_sha(repo: tuple[Path, dict[str, str]]) -> None:
    path, commits = repo
    first = gitmode.export(path, commits["small"])
    marker = first.root / ".complete"
    stamp = marker.stat().st_mtime_ns
    again = gitmode.export(path, "main~3")  # the same commit by another name
    assert again.root == first.root and marker.stat().st_mtime_ns == stamp
    assert (first.root / "vllm" / "worker" / "base.py").is_file()
    assert not (first.root / "tests").exists()  # only the package is exported


def test_plan_splits_by_lines_and_isolates_dependency_commits(repo: tuple[Path, dict[str, str]]) -> None:
    path, commits = repo
    steps = gitmode.plan(path, commits["old"], commits["new"], synthetic_targets(), max_lines=100)
    assert [s.base for s in steps][0] == commits["old"] and steps[-1].end == commits["new"]
    assert all(a.end == b.base for a, b in zip(steps, steps[1:], strict=False))  # contiguous
    deps = [s for s in steps if s.dependencies]
    assert len(deps) == 1 and [c.sha for c in deps[0].commits] == [commits["deps"]]
    big = next(s for s in steps if commits["big"] in [c.sha for c in s.commits])
    assert big.oversized and len(big.commits) == 1 and big.package_lines > 100
    assert all(s.package_lines <= 100 or s.oversized for s in steps)
    last = steps[-1].as_dict()
    assert "vllm/worker/base.py" in last["touches_target_modules"]


def test_plan_with_a_large_limit_still_keeps_dependencies_apart(repo: tuple[Path, dict[str, str]]) -> None:
    path, commits = repo
    steps = gitmode.plan(path, commits["old"], commits["new"], synthetic_targets(), max_lines=100000)
    assert [len(s.commits) for s in steps] == [1, 1, 2]
    assert [s.dependencies for s in steps] == [False, True, False]


def test_cli_plan_and_git_drift(repo: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    path, commits = repo
    done = subprocess.run([*CLI, "plan", "--git", str(path), commits["old"], "main", "--max-lines", "100",
                           "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["steps"][-1]["end"] == commits["new"] and any(s["dependencies"] for s in data["steps"])
    done = subprocess.run([*CLI, "plan", "--git", str(path), commits["old"], "main"], capture_output=True,
                          text=True, timeout=120)
    assert "ascend-overlay drift --git" in done.stdout and "[dependencies]" in done.stdout
    out = tmp_path / "changes.md"
    done = subprocess.run([*CLI, "drift", "--git", str(path), commits["old"], commits["new"], "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 1), done.stderr
    assert f"| commit | {commits['old']} | {commits['new']} |" in out.read_text()


@pytest.mark.parametrize("args, message", [
    (["plan", "--git", "{repo}", "nosuchref", "main"], "is not a commit"),
    (["plan", "--git", "{repo}", "main", "main~4"], "is not an ancestor"),
    (["plan", "--git", "{repo}", "main~4", "main", "--max-lines", "0"], "at least 1"),
    (["plan", "--git", "{missing}", "a", "b"], "no such directory"),
    (["drift", "--git", "{notrepo}", "a", "b"], "failed"),
])
def test_git_mode_bad_input(repo: tuple[Path, dict[str, str]], tmp_path: Path, args: list[str], message: str) -> None:
    path, _ = repo
    args = [a.format(repo=path, missing=tmp_path / "missing", notrepo=tmp_path) for a in args]
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_plan_for_a_plugin_marks_the_steps_touching_modules_it_uses(repo: tuple[Path, dict[str, str]],
                                                                    tmp_path: Path) -> None:
    path, commits = repo
    plugin = tmp_path / "my_plugin"
    plugin.mkdir()
    (plugin / "__init__.py").write_text("")
    (plugin / "models.py").write_text("from vllm.model_executor.models.llama import LlamaModel\n")
    done = subprocess.run([*CLI, "plan", "--git", str(path), commits["old"], "main", "--max-lines", "100",
                           "--plugin", str(plugin), "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    steps = json.loads(done.stdout)["steps"]
    touching = [s for s in steps if "vllm/model_executor/models/llama.py" in s["touches_target_modules"]]
    assert [s["commits"] for s in touching][0][0] == commits["small"]
    assert all("vllm/worker/generated.py" not in s["touches_target_modules"] for s in steps)
