"""``ascend-overlay drift``: every synthetic break is a P0 naming its patch; the rest is ranked by area."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from main2main_fixtures import CASES, NEW, OLD, PLATFORM_PATCH_FILE, synthetic_targets, write_tree

from ascend_overlay.main2main import drift, report_md
from ascend_overlay.main2main.sources import tree_source

CLI = [sys.executable, "-m", "ascend_overlay"]


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("m2m_drift")
    return write_tree(root / "old", OLD), write_tree(root / "new", NEW)


@pytest.fixture(scope="module")
def report(trees: tuple[Path, Path]) -> drift.DriftReport:
    return drift.compare(tree_source(trees[0]), tree_source(trees[1]), synthetic_targets())


def _p0(report: drift.DriftReport) -> dict[str, drift.Entry]:
    return {e.object: e for e in report.by_priority(0)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_synthetic_break_is_a_p0_naming_its_patch(report: drift.DriftReport, case: str) -> None:
    target = CASES[case][0]
    key = target.replace(":", ".")
    entry = _p0(report).get(key)
    assert entry is not None, f"{case}: no P0 entry for {key}; P0s: {sorted(_p0(report))}"
    assert f"patches/worker/patch_{case}.py" in entry.patches
    assert f"case_{case}" in entry.patch_names
    assert entry.file.startswith("vllm/") and entry.impact and entry.details


def test_p0_details_say_what_changed(report: drift.DriftReport) -> None:
    p0 = _p0(report)
    assert p0["vllm.worker.base.helper"].change == "removed"
    assert p0["vllm.old_place.mover.Mover.run"].change == "moved"
    assert any("vllm.new_place.mover" in d for d in p0["vllm.old_place.mover.Mover.run"].details)
    assert any("new required parameter `scale`" in d for d in p0["vllm.worker.base.Worker.execute"].details)
    load = " ".join(p0["vllm.worker.base.Worker.load"].details)
    assert "parameter `path` removed" in load and "new required parameter `filename`" in load
    assert any("default changed: False -> True" in d for d in p0["vllm.worker.base.configure"].details)


def test_new_abstract_platform_method_is_p0_and_names_the_platform_patch(report: drift.DriftReport) -> None:
    entry = _p0(report).get("vllm.platforms.interface.Platform.get_kv_layout")
    assert entry is not None and entry.change == "new abstract method"
    assert PLATFORM_PATCH_FILE in entry.patches and "platform_hook" in entry.patch_names
    # A new method with a default body is important, not breaking.
    nice = [e for e in report.entries if e.object.endswith("Platform.nice_to_have")]
    assert [e.priority for e in nice] == [1]


def test_every_p0_names_a_patch_file(report: drift.DriftReport) -> None:
    assert report.by_priority(0)
    assert all(e.patches and all(p.endswith(".py") for p in e.patches) for e in report.by_priority(0))


def test_unbroken_targets_produce_no_p0(report: drift.DriftReport) -> None:
    objects = set(_p0(report))
    assert "vllm.platforms.interface.Platform.pre_register_and_update" not in objects
    assert "vllm.worker.base.Worker" not in objects


def test_models_are_p3_and_renamed_files_are_listed(report: drift.DriftReport) -> None:
    models = [e for e in report.entries if e.file == "vllm/model_executor/models/llama.py"]
    assert models and {e.priority for e in models} == {3}
    assert ("vllm/old_place/mover.py", "vllm/new_place/mover.py", 100) in report.files.renamed
    assert report.files.removed == ["vllm/old_place/__init__.py", "vllm/old_place/mover.py"]


def test_markdown_has_header_sections_and_entries(report: drift.DriftReport) -> None:
    text = report_md.render(report)
    assert text.startswith("# vLLM changes: 1.0.0 -> 1.1.0")
    assert "| commit | abcdef1 | 1234567 |" in text
    for title in ("P0", "P1", "P2", "P3", "P4", "Renamed / moved files"):
        assert f"## {title}" in text
    p0_section = text.split("## P0")[1].split("## P1")[0]
    for case in CASES:
        assert f"patches/worker/patch_{case}.py" in p0_section
    assert "| `vllm/old_place/mover.py` | `vllm/new_place/mover.py` | 100% |" in text


def test_cli_drift_writes_markdown_and_json(trees: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "vllm_changes.md"
    done = subprocess.run([*CLI, "drift", str(trees[0]), str(trees[1]), "-o", str(out), "--json"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode in (0, 1), done.stderr
    data = json.loads(done.stdout)
    assert data["old"]["version"] == "1.0.0" and data["new"]["version"] == "1.1.0"
    assert out.read_text().startswith("# vLLM changes: 1.0.0 -> 1.1.0")
    # The real patches target real vLLM modules, absent from both synthetic trees except the
    # Platform hook: broken the same way before and after is not a change, so no P0 and exit 0.
    new_rows = {row["target"]: row for row in data["targets"]["new"] if "use" not in row}
    platform = "vllm.platforms.interface:Platform.pre_register_and_update"
    assert new_rows[platform]["status"] == "ok"
    assert all(row["status"] == "missing" for t, row in new_rows.items() if t != platform)
    old_broken = [row for row in data["targets"]["old"] if row["status"] in ("missing", "moved", "drift")]
    assert data["counts"]["targets_already_broken_in_old"] == len(old_broken) >= len(new_rows) - 1
    # The one P0 left: the new abstract Platform method, blamed on the overlay's Platform hook.
    p0 = [e for e in data["entries"] if e["priority"] == 0]
    assert [e["object"] for e in p0] == ["vllm.platforms.interface.Platform.get_kv_layout"]
    assert "patches/hooks/hook_platform_pre_register.py" in p0[0]["patches"] and done.returncode == 1


def test_cli_drift_default_output_is_vllm_changes_md(trees: tuple[Path, Path], tmp_path: Path) -> None:
    done = subprocess.run([*CLI, "drift", str(trees[0]), str(trees[1])], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode in (0, 1), done.stderr
    assert (tmp_path / "vllm_changes.md").is_file()
    assert "wrote vllm_changes.md" in done.stdout


def test_cli_drift_bad_src(tmp_path: Path) -> None:
    done = subprocess.run([*CLI, "drift", str(tmp_path), "1.2.x"], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "error:" in done.stderr


def test_parallel_and_serial_comparisons_agree(trees: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Splitting the work over processes must not change the answer (a cross-module miss would)."""
    base_old, base_new = trees
    extra = {f"vllm/worker/gen_{i}.py": f"def f_{i}(a, b={i}):\n    return a\n" for i in range(45)}
    changed = {f"vllm/worker/gen_{i}.py": f"def f_{i}(a, b={i + 1}, *, c):\n    return a\n" for i in range(45)}
    root = base_old.parent / "parallel"
    old = write_tree(root / "old", {**OLD, **extra})
    new = write_tree(root / "new", {**NEW, **changed})
    results = []
    for workers in ("1", "2"):
        monkeypatch.setenv("ASCEND_OVERLAY_WORKERS", workers)
        rep = drift.compare(tree_source(old), tree_source(new), synthetic_targets())
        results.append(sorted((e.priority, e.object, e.change, tuple(e.details)) for e in rep.entries))
    assert results[0] == results[1]
    assert sum(1 for r in results[0] if r[1].startswith("vllm.worker.gen_")) == 45
