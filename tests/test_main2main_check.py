"""``ascend-overlay check``: each synthetic break is found, named and explained; bad input is refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from main2main_fixtures import CASES, NEW, OLD, synthetic_targets, write_tree

from ascend_overlay.main2main.check import run_check
from ascend_overlay.main2main.sources import tree_source

CLI = [sys.executable, "-m", "ascend_overlay"]


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("m2m_check")
    return write_tree(root / "old", OLD), write_tree(root / "new", NEW)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASCEND_OVERLAY_CACHE", str(tmp_path / "cache"))


def _by_patch(report) -> dict[str, object]:
    return {r.target.patch: r for r in report.results}


def test_old_tree_satisfies_every_pin(trees: tuple[Path, Path]) -> None:
    report = run_check(tree_source(trees[0]), synthetic_targets())
    assert [(r.target.patch, r.status) for r in report.results if r.status != "ok"] == []
    assert report.broken == []


def test_new_tree_breaks_exactly_the_synthetic_cases(trees: tuple[Path, Path]) -> None:
    report = run_check(tree_source(trees[1]), synthetic_targets())
    results = _by_patch(report)
    for name, (_target, _pin, expected) in CASES.items():
        result = results[f"case_{name}"]
        assert result.status == expected, (name, result.detail)
        assert result.breaks
    assert results["platform_hook"].status == "ok"
    assert results["module_global"].status == "ok" and results["module_global"].found == "module"
    assert results["class_shape"].found == "class(self, config, rank=0)"  # DEFAULT_RANK read as its value
    assert set(report.broken_patches) == {f"case_{n}" for n in CASES}


def test_each_break_says_what_changed(trees: tuple[Path, Path]) -> None:
    results = _by_patch(run_check(tree_source(trees[1]), synthetic_targets()))
    assert "has no attribute 'helper'" in results["case_removed_function"].detail
    moved = results["case_moved_module"]
    assert moved.moved_to == ["vllm.new_place.mover:Mover.run"]
    assert "shape unchanged" in moved.detail
    assert "removed path" in results["case_renamed_parameter"].detail
    assert "new required filename" in results["case_renamed_parameter"].detail
    assert "new required scale" in results["case_new_required_parameter"].detail
    assert "flag=False -> flag=True" in results["case_changed_default"].detail


def test_a_compatible_shape_declared_by_the_patch_is_accepted(trees: tuple[Path, Path]) -> None:
    from dataclasses import replace

    targets = [t for t in synthetic_targets() if t.patch == "case_changed_default"]
    relaxed = [replace(targets[0], compatible=("(x, flag=True)",))]
    result = run_check(tree_source(trees[1]), relaxed).results[0]
    assert result.status == "ok" and result.detail == "matches a declared compatible shape"


def test_a_patch_outside_its_range_is_reported_but_does_not_fail(trees: tuple[Path, Path]) -> None:
    from dataclasses import replace

    targets = [replace(t, vllm_spec="<1.1") for t in synthetic_targets() if t.patch == "case_removed_function"]
    result = run_check(tree_source(trees[1]), targets).results[0]
    assert result.status == "missing" and not result.applies and not result.breaks
    forced = run_check(tree_source(trees[1]), targets, ignore_ranges=True).results[0]
    assert forced.breaks


def test_cli_check_installed_vllm_passes_and_lists_every_target() -> None:
    pytest.importorskip("vllm")
    done = subprocess.run([*CLI, "check", "--json"], capture_output=True, text=True, timeout=120)
    data = json.loads(done.stdout)
    from ascend_overlay.main2main.targets import overlay_targets

    expected = {t.target for t in overlay_targets()[0]}
    assert {row["target"] for row in data["targets"]} == expected
    assert {"hook", "relied-on"} <= {row["role"] for row in data["targets"]}
    broken = [row for row in data["targets"] if row["breaks"]]
    assert done.returncode == (1 if broken else 0), broken
    assert data["verified"]["version"]
    assert all(row["patch_file"] and row["patch_file"] != "?" for row in data["targets"])


def test_cli_check_a_broken_tree_exits_non_zero_with_a_table(trees: tuple[Path, Path]) -> None:
    # The real patches target real vLLM modules: none exists in the synthetic tree.
    done = subprocess.run([*CLI, "check", "--vllm", str(trees[1])], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "STATUS" in done.stdout and "MISSING" in done.stdout and "BREAKS:" in done.stdout
    assert "hook_worker_init" in done.stdout


@pytest.mark.parametrize("src, message", [
    ("/nonexistent/vllm.whl", "no such file"),
    ("not-a-version!", "is not a SRC"),
    ("0.33.x", "not a PEP 440 version"),
])
def test_cli_check_bad_src_is_a_clear_error(src: str, message: str) -> None:
    done = subprocess.run([*CLI, "check", "--vllm", src], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_cli_check_a_directory_without_vllm_is_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run([*CLI, "check", "--vllm", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "not a vLLM source tree" in done.stderr and "Traceback" not in done.stderr


def test_cli_check_a_file_that_is_not_a_wheel(tmp_path: Path) -> None:
    bogus = tmp_path / "vllm.whl"
    bogus.write_text("not a zip")
    done = subprocess.run([*CLI, "check", "--vllm", str(bogus)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "not a readable wheel" in done.stderr and "Traceback" not in done.stderr
