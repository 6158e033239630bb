"""The doors at interpreter start: the three doors converge on one bootstrap; off costs nothing; the host program is never
broken; a user's sitecustomize still runs; forked children inherit without re-applying."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from harness import BIN, REPO, base_env, run_cli, run_python
from synthetic import one_patch_dir, write_patch

from ascend_overlay.core import report

MODULES = "import sys, json; print(json.dumps(sorted(sys.modules)))"


def test_off_imports_nothing_an_empty_interpreter_lacks() -> None:
    bare = json.loads(run_python(MODULES, base_env(overlay=False)).stdout)
    installed_off = run_python(MODULES, base_env(overlay=False, PYTHONPATH=str(REPO)))
    assert installed_off.stderr == ""
    assert set(json.loads(installed_off.stdout)) - set(bare) == {"sitecustomize"}


def test_non_vllm_program_runs_unaffected_with_overlay_on() -> None:
    code = "import json, sys; print(json.dumps({'a': [1, 2]})); print('vllm' in sys.modules)"
    on = run_python(code, base_env(overlay=True))
    off = run_python(code, base_env(overlay=False))
    assert on.returncode == 0 and on.stdout == off.stdout == '{"a": [1, 2]}\nFalse\n'
    assert on.stderr == "", on.stderr


@pytest.mark.parametrize("overlay", [False, True])
def test_users_sitecustomize_still_runs(tmp_path: Path, overlay: bool) -> None:
    user_site = tmp_path / "user_site"
    user_site.mkdir()
    (user_site / "sitecustomize.py").write_text("import builtins\nbuiltins.USER_SITE_RAN = True\n")
    env = base_env(overlay=overlay)
    env["PYTHONPATH"] = f"{REPO}:{user_site}"
    out = run_python("import builtins, sys; print(getattr(builtins, 'USER_SITE_RAN', False), "
                  "'ascend_overlay.doors.activation' in sys.modules)", env)
    assert out.stdout.split() == ["True", str(overlay)], out.stderr


def test_run_door_sets_the_environment_for_children(tmp_path: Path) -> None:
    user_site = tmp_path / "user_site"
    user_site.mkdir()
    # Prints only in the `python -c` child, not in the ascend-overlay launcher (also a Python process).
    (user_site / "sitecustomize.py").write_text("import sys\nif sys.argv[0] == '-c':\n    print('user sitecustomize')\n")
    env = base_env(overlay=False, PYTHONPATH=str(user_site))
    code = ("import os, sys; from ascend_overlay.doors import activation; "
            "print(os.environ['VLLM_ASCEND_OVERLAY'], activation.current().report.doors)")
    proc = subprocess.run([str(BIN / "ascend-overlay"), "run", "--", sys.executable, "-c", code],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # The installed package's start-up line activates first; the sitecustomize door knocks after it.
    assert proc.stdout.splitlines() == ["user sitecustomize", "1 ['pth', 'sitecustomize']"]


def test_bad_settings_are_reported_not_raised_unless_strict() -> None:
    code = "from ascend_overlay.doors import activation; print('host ran', activation.current() is not None)"
    bad = run_python(code, base_env(overlay=True, VLLM_ASCEND_OVERLAY_ENABLE="good,bad name!"))
    assert bad.returncode == 0 and bad.stdout == "host ran True\n"
    assert "VLLM_ASCEND_OVERLAY_ENABLE='good,bad name!' is not valid" in bad.stderr
    assert "pid=" in bad.stderr and "role=main" in bad.stderr
    strict = run_python(code, base_env(overlay=True, VLLM_ASCEND_OVERLAY_ENABLE="good,bad name!",
                                    VLLM_ASCEND_OVERLAY_STRICT="1"))
    assert strict.returncode == 78 and "host ran" not in strict.stdout
    assert "ascend-overlay (strict): refusing to start" in strict.stderr and "ConfigError" in strict.stderr


def test_bad_activation_value_names_the_variable() -> None:
    out = run_python("print('ok')", base_env(overlay=False, VLLM_ASCEND_OVERLAY="maybe", PYTHONPATH=str(REPO)))
    assert out.stdout == "ok\n"
    assert "VLLM_ASCEND_OVERLAY='maybe' is not valid; accepted values: 1, true, yes, on" in out.stderr


@pytest.mark.parametrize("strict", ["", "1"])
def test_an_unreadable_activation_value_advises_the_value_to_write_not_strict_mode(strict: str) -> None:
    out = run_python("print('ok')", base_env(overlay=False, VLLM_ASCEND_OVERLAY="2", VLLM_ASCEND_OVERLAY_STRICT=strict,
                                          PYTHONPATH=str(REPO)))
    assert out.returncode == 0 and out.stdout == "ok\n"  # strict mode does not refuse it: the overlay is off
    assert out.stderr.count("WARNING") == 1, out.stderr
    assert "set VLLM_ASCEND_OVERLAY=1 to turn the overlay on, or VLLM_ASCEND_OVERLAY=0 (or unset it) for off" \
        in out.stderr
    assert "STRICT" not in out.stderr


def test_a_shadowed_sitecustomize_is_said_once(tmp_path: Path) -> None:
    user_site = tmp_path / "user_site"
    user_site.mkdir()
    (user_site / "sitecustomize.py").write_text("")
    env = base_env(overlay=True)
    env["PYTHONPATH"] = os.pathsep.join([str(user_site), str(REPO)])
    out = run_python("pass", env)
    assert out.stderr.count("shadows ascend-overlay's sitecustomize") == 1, out.stderr


def test_unknown_toggle_is_reported_with_nearest_match() -> None:
    out = run_python("print('ok')", base_env(overlay=True, VLLM_ASCEND_OVERLAY_DISABLE="vllm_cli_version_metadat"))
    assert out.stdout == "ok\n"
    assert "did you mean 'vllm_cli_version_metadata'" in out.stderr


def test_forked_child_inherits_without_reapplying(tmp_path: Path) -> None:
    write_patch(tmp_path / "hotfix", "import", "patch_json.py", '''
        PATCH = Patch(name="wrap_json_dumps", phase="import", vllm=">=0", why="t", remove_when="t")

        @PATCH.wrap("json:dumps")
        def around(wrapped, instance, args, kwargs):
            return "<" + wrapped(*args, **kwargs) + ">"
    ''')
    code = textwrap.dedent('''
        import json, os, sys
        from ascend_overlay.core.wrapper import is_overlay_wrapper, original_of
        from ascend_overlay.doors import activation
        overlay = activation.current()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            child = activation.activate(door="again")   # a door knocking in the child must not re-apply
            depth = 0
            f = json.dumps
            while is_overlay_wrapper(f):
                depth, f = depth + 1, original_of(f)
            r = child.report
            sys.stdout.write(json.JSONEncoder().encode({"pid_ok": r.pid == os.getpid(), "from_ok": r.forked_from == parent,
                "status": r.outcomes["wrap_json_dumps"].status, "depth": depth, "doors": r.doors,
                "out": json.dumps(1)}))
            sys.stdout.flush()
            os._exit(0)
        os.waitpid(pid, 0)
    ''')
    out = run_python(code, base_env(overlay=True, VLLM_ASCEND_OVERLAY_PATH=str(tmp_path / "hotfix"),
                                 VLLM_ASCEND_OVERLAY_LOG="off"))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"pid_ok": True, "from_ok": True, "status": "inherited", "depth": 1,
                                      "doors": ["fork", "again"], "out": "<1>"}


def test_concurrent_report_appends_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    code = textwrap.dedent(f'''
        import os
        from ascend_overlay.core.report import append_jsonl
        for i in range(300):
            append_jsonl({str(path)!r}, {{"pid": os.getpid(), "i": i, "pad": "x" * 5000}})
    ''')
    procs = [subprocess.Popen([sys.executable, "-c", code], env=base_env(overlay=False, PYTHONPATH=str(REPO)))
             for _ in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    lines = path.read_text().splitlines()
    assert len(lines) == 1200
    records = [json.loads(line) for line in lines]
    assert {r["pid"] for r in records} == {p.pid for p in procs}


def test_a_foreign_sitecustomize_first_on_the_path_no_longer_switches_the_overlay_off(tmp_path: Path) -> None:
    user_site = tmp_path / "user_site"
    user_site.mkdir()
    (user_site / "sitecustomize.py").write_text("import builtins\nbuiltins.USER_SITE_RAN = True\n")
    env = base_env(overlay=True)
    env["PYTHONPATH"] = os.pathsep.join([str(user_site), str(REPO)])
    out = run_python("import builtins; from ascend_overlay.doors import activation; "
                  "print(builtins.USER_SITE_RAN, activation.current().report.doors)", env)
    assert out.stdout.split(None, 1) == ["True", "['pth']\n"], out.stderr
    assert f"{user_site / 'sitecustomize.py'} comes first on the path and shadows ascend-overlay's" in out.stderr


def test_a_strict_refusal_is_one_clear_line_recorded_and_status_still_explains(tmp_path: Path) -> None:
    directory = one_patch_dir(tmp_path, "PATCH = (\n")
    report_path = tmp_path / "report.jsonl"
    env = base_env(overlay=True, VLLM_ASCEND_OVERLAY_STRICT="1", VLLM_ASCEND_OVERLAY_PATH=str(directory),
                   VLLM_ASCEND_OVERLAY_REPORT=str(report_path))
    out = run_python("print('ran')", env)
    assert out.returncode == 78 and out.stdout == ""
    assert "Traceback" not in out.stderr and "Fatal Python error" not in out.stderr
    first = out.stderr.splitlines()[0]
    assert first.startswith("ascend-overlay (strict): refusing to start") and "syntax error" in first
    refused = [r for r in report.read_jsonl(str(report_path)) if r["event"] == "refused"]
    assert refused and "syntax error" in refused[0]["problems"][0]["message"]
    status = run_cli("status", env=env)
    assert status.returncode == 1 and "syntax error" in status.stdout


def test_setup_leaves_bytecode_for_every_module_the_overlay_imports_in_a_vllm_process() -> None:
    """With PYTHONDONTWRITEBYTECODE=1 Python never caches our modules itself, so every vLLM process
    would compile them again: precompile (run by ``make setup`` and ``ascend-overlay run``) writes it."""
    import importlib.util

    from ascend_overlay.doors.bootstrap import precompile

    precompile.precompile()
    code = ("import sys, vllm; print('\\n'.join(sorted(m.__file__ for m in list(sys.modules.values())"
            " if m.__name__.startswith('ascend_overlay') and getattr(m, '__file__', None))))")
    loaded = run_python(code, base_env(overlay=True, PYTHONDONTWRITEBYTECODE="1")).stdout.split()
    assert len(loaded) > 20, loaded
    for source in map(Path, loaded):
        cached = Path(importlib.util.cache_from_source(str(source)))
        assert cached.exists() and cached.stat().st_mtime >= source.stat().st_mtime, source
