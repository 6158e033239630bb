"""Hotfixes: where they come from (directories, entry-point packages), what loading one may never do
(stop the program, import vLLM), when they expire, and writing, verifying and signing them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from harness import BIN, base_env, run_cli_here, run_python
from synthetic import one_patch_dir, write_patch

from ascend_overlay.cli.authoring import verify, write_manifest
from ascend_overlay.core import trust
from ascend_overlay.core.catalog import load_catalog

GOOD = '''
    PATCH = Patch(name="{name}", phase="platform", vllm=">=0.30", why="w", remove_when="r"{extra})

    @PATCH.replace("json:loads")
    def loads(s, **kw):
        return s
'''


def _good(directory: Path, name: str = "good_fix", extra: str = "", filename: str = "patch_json.py") -> Path:
    return write_patch(directory, "platform", filename, GOOD.format(name=name, extra=extra))


def _load(*dirs: Path):
    return load_catalog([str(d) for d in dirs], entry_points=False, builtin=False)


def test_relative_directory_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _good(tmp_path / "hf")
    monkeypatch.chdir(tmp_path)
    catalog = _load(Path("hf"))
    assert catalog.patches == []
    assert "relative hotfix directory refused" in catalog.problems[0].message


def test_world_writable_directory_is_refused_whole(tmp_path: Path) -> None:
    _good(tmp_path / "hf")
    (tmp_path / "hf").chmod(0o777)
    catalog = _load(tmp_path / "hf")
    assert catalog.patches == []
    assert "writable by group and others (mode 777)" in catalog.problems[0].message
    assert "chmod go-w" in catalog.problems[0].message


def test_group_writable_file_and_foreign_owner_are_refused_alone(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("chown to another user needs root; this machine's CI runs as root")
    _good(tmp_path / "hf", "kept")
    _good(tmp_path / "hf", "group_writable", filename="patch_gw.py").chmod(0o664)
    foreign = _good(tmp_path / "hf", "foreign", filename="patch_foreign.py")
    os.chown(foreign, 4242, 4242)
    catalog = _load(tmp_path / "hf")
    assert catalog.names() == ["kept"]
    messages = {Path(p.path).name: p.message for p in catalog.problems}
    assert "writable by group (mode 664)" in messages["patch_gw.py"]
    assert "owned by uid 4242, neither you (uid 0) nor root" in messages["patch_foreign.py"]


def test_manifest_pins_content(tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    _good(hf, "signed")
    tampered = _good(hf, "tampered", filename="patch_t.py")
    write_manifest(hf)
    _good(hf, "unlisted", filename="patch_u.py")
    tampered.write_text(tampered.read_text() + "\nimport os  # injected\n")
    catalog = _load(hf)
    assert catalog.names() == ["signed"]
    messages = {Path(p.path).name: p.message for p in catalog.problems}
    assert messages["patch_t.py"].startswith("SHA-256 mismatch")
    assert "not listed in SHA256SUMS" in messages["patch_u.py"]


def test_malformed_manifest_refuses_the_directory(tmp_path: Path) -> None:
    _good(tmp_path / "hf")
    (tmp_path / "hf" / "SHA256SUMS").write_text("not-a-hash  platform/patch_json.py\n")
    catalog = _load(tmp_path / "hf")
    assert catalog.patches == [] and "expected '<sha256>  <file>'" in catalog.problems[0].message


def test_entry_point_package_is_a_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    pkg = site / "acme_hotfixes"
    _good(pkg, "from_package")
    (pkg / "__init__.py").write_text("raise RuntimeError('the package is never imported')\n")
    dist = site / "acme_hotfixes-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-hotfixes\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ascend_overlay.patches]\nacme = acme_hotfixes\n")
    for p in (site, pkg, dist):
        p.chmod(0o755)
    monkeypatch.syspath_prepend(str(site))
    catalog = load_catalog([], builtin=False)
    assert catalog.names() == ["from_package"]
    assert catalog.get("from_package").source == "package:acme-hotfixes"


def _status(env_extra: dict[str, str]) -> dict:
    proc = subprocess.run([str(BIN / "ascend-overlay"), "status", "--json", "--no-contracts"],
                          env=base_env(overlay=True, **env_extra), capture_output=True, text=True, timeout=120)
    return json.loads(proc.stdout)


def test_obsolete_hotfix_moves_with_vllm_version(tmp_path: Path) -> None:
    _good(tmp_path / "hf", "fixed_upstream", extra=', fixed_in="0.32.0"')
    env = {"VLLM_ASCEND_OVERLAY_PATH": str(tmp_path / "hf")}
    row = next(r for r in _status(env)["patches"] if r["name"] == "fixed_upstream")
    assert row["status"] == "skipped" and row["code"] == "obsolete"
    assert row["reason"] == "obsolete: vLLM 0.32.0 includes the fix (fixed in 0.32.0)"
    assert row["hint"].startswith("remove this hotfix")
    older = next(r for r in _status({**env, "VLLM_VERSION": "0.31.2"})["patches"] if r["name"] == "fixed_upstream")
    assert older["status"] == "would apply"


def test_hotfix_new_then_verify(tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    hf.mkdir(mode=0o755)
    made = run_cli_here("hotfix", "new", "sampler_fix", "--target", "vllm.v1.sample.sampler.Sampler.forward", "--dir", str(hf))
    assert made.returncode == 0, made.stderr
    path = Path(made.stdout.strip())
    assert path == hf / "worker" / "patch_v1_sample_sampler.py"
    text = path.read_text()
    from vllm.v1.sample.sampler import Sampler

    from ascend_overlay.core.contract import fingerprint

    assert f"contract={fingerprint(Sampler.forward)!r}" in text  # pinned from the live target
    todo = run_cli_here("hotfix", "verify", str(hf))
    assert todo.returncode == 1 and "TODO left in why, remove_when, upstream" in todo.stdout
    path.write_text(text.replace('"TODO: the bug, how it shows, and why this change fixes it"', '"a real reason"')
                    .replace('"TODO: link to the upstream issue or pull request"', '"https://example.invalid/1"')
                    .replace('"TODO: e.g. once every deployment runs a vLLM with the fix (set fixed_in)"', '"0.34"'))
    ok = run_cli_here("hotfix", "verify", str(hf))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "sampler_fix: ok (worker phase; would apply)" in ok.stdout
    path.write_text(path.read_text().replace("predict_bonus_token=False", "predict_bonus_token=True"))
    drift = run_cli_here("hotfix", "verify", str(hf))
    assert drift.returncode == 1
    assert "changed predict_bonus_token=True -> predict_bonus_token=False" in drift.stdout


def test_verify_reports_each_bad_file(tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    write_patch(hf, "worker", "patch_missing.py", '''
        PATCH = Patch(name="gone", phase="worker", vllm=">=0.32", why="w", remove_when="r", upstream="u")

        @PATCH.replace("vllm.v1.sample.sampler:Sampler.forward_v9", contract="(self)")
        def f(self):
            return None
    ''')
    write_patch(hf, "worker", "patch_syntax.py", "PATCH = (\n")
    result = verify(str(hf))
    assert not result.ok
    messages = {Path(f.path).name: f.message for f in result.findings}
    assert "Sampler.forward_v9 does not exist" in messages["patch_missing.py"]
    assert "syntax error at line" in messages["patch_syntax.py"]
    assert run_cli_here("hotfix", "verify", str(tmp_path / "nope")).returncode == 1
    assert trust.trust_problem(tmp_path / "nope").endswith("nope does not exist")


def test_verify_judges_a_directory_with_everything_else_loaded(tmp_path: Path) -> None:
    """Two hotfixes replacing one target: the runtime skips the second as a conflict, so verify says
    so too (it used to judge each file against a catalog of one)."""
    hf = tmp_path / "hf"
    for n in (1, 2):
        write_patch(hf, "platform", f"patch_c{n}.py", f'''
            PATCH = Patch(name="claim_{n}", phase="platform", vllm=">=0.30", why="w", remove_when="r", upstream="u")

            @PATCH.replace("json:loads", contract="(s, *, cls=None, object_hook=None, parse_float=None, "
                           "parse_int=None, parse_constant=None, object_pairs_hook=None, **kw)")
            def loads(s, **kw):
                return s
        ''')
    result = verify(str(hf))
    messages = {Path(f.path).name: (f.ok, f.message) for f in result.findings}
    assert messages["patch_c1.py"][0] is True
    assert messages["patch_c2.py"] == (False, messages["patch_c2.py"][1])
    assert "conflict: claim_1" in messages["patch_c2.py"][1] and "supersedes=('claim_1',)" in messages["patch_c2.py"][1]
    assert not result.ok


def test_hotfix_new_with_a_bad_name_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ascend_overlay.cli import main

    assert main(["hotfix", "new", "Bad-Name", "--target", "json.dumps", "--dir", str(tmp_path / "hf")]) == 2
    assert "patch name 'Bad-Name' must be lower_snake_case" in capsys.readouterr().err
    assert not (tmp_path / "hf").exists()


def test_hotfix_manifest_on_a_missing_directory_is_an_error_not_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ascend_overlay.cli import main

    assert main(["hotfix", "manifest", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == (f"ascend-overlay hotfix manifest: {tmp_path / 'nope'} is not a directory; give "
                                       "the hotfix directory (the one that holds <phase>/patch_*.py)\n")


@pytest.mark.parametrize("raised", ["SystemExit(3)", "KeyboardInterrupt()"])
def test_a_hotfix_that_raises_systemexit_never_stops_a_program(tmp_path: Path, raised: str) -> None:
    directory = one_patch_dir(tmp_path, f"raise {raised}\n")
    out = run_python("print(1)", base_env(overlay=True, VLLM_ASCEND_OVERLAY_PATH=str(directory)))
    assert out.returncode == 0 and out.stdout == "1\n", out.stderr
    assert f"{directory / 'import' / 'patch_fault.py'}: patch refused: raised while loading" in out.stderr


def test_a_hotfix_importing_vllm_at_module_level_is_refused(tmp_path: Path) -> None:
    directory = one_patch_dir(tmp_path, '''
        import vllm.envs

        PATCH = Patch(name="heavy", phase="import", vllm=">=0", why="w", remove_when="r")
        PATCH.replace_value("json:dumps", None)
    ''')
    out = run_python("import sys; print('vllm' in sys.modules)",
                  base_env(overlay=True, VLLM_ASCEND_OVERLAY_PATH=str(directory)))
    assert out.stdout == "False\n", "loading the hotfix imported vLLM into a plain Python program"
    assert "imports vllm.envs at module level (line 3)" in out.stderr and "move the import inside" in out.stderr


def test_an_indirect_heavy_import_is_refused_too(tmp_path: Path) -> None:
    helper = tmp_path / "helpers_pkg"
    helper.mkdir()
    (helper / "__init__.py").write_text("import torch\n")
    directory = one_patch_dir(tmp_path, '''
        import helpers_pkg  # noqa: F401

        PATCH = Patch(name="indirect", phase="import", vllm=">=0", why="w", remove_when="r")
        PATCH.replace_value("json:dumps", None)
    ''')
    env = base_env(overlay=True, VLLM_ASCEND_OVERLAY_PATH=str(directory))
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(tmp_path)])
    out = run_python("from ascend_overlay.doors import activation; print(activation.current().catalog.names())", env)
    assert "'indirect'" not in out.stdout
    assert "loading it imported torch" in out.stderr


def test_hotfix_new_with_an_unknown_target_is_a_clear_error(tmp_path: Path) -> None:
    out = run_cli_here("hotfix", "new", "x_fix", "--target", "vllm.v1.sample.sampler.Sampler.no_such_method",
                       "--dir", str(tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "cannot pin vllm.v1.sample.sampler.Sampler.no_such_method" in out.stderr


def test_refusals_and_skips_say_what_to_do_next(tmp_path: Path) -> None:
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
    out = run_python(code, base_env(overlay=True, VLLM_ASCEND_OVERLAY_PATH=str(drift_dir)))
    assert out.stdout.startswith("drift | if the new shape suits the patch, add it to compatible=(...)"), out.stderr
    warning = next(line for line in out.stderr.splitlines() if "drifted skipped" in line)
    assert "pid=" in warning and "role=main" in warning and "compatible=(...)" in warning
