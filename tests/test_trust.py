"""Outside code is trusted as OpenSSH's StrictModes and sudo trust their files: every directory from /
down, the file itself through the descriptor that is read, the bytes hashed being the bytes compiled,
entry points found without running them, and a hotfix that would pull vLLM in refused before it runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from harness import base_env
from synthetic import write_patch

from ascend_overlay.cli.authoring import verify, write_manifest
from ascend_overlay.core import trust
from ascend_overlay.core.catalog import load_catalog
from ascend_overlay.core.errors import OverlayError

GOOD = '''
    PATCH = Patch(name="{name}", phase="platform", vllm=">=0.30", why="w", remove_when="r")

    @PATCH.replace("json:loads")
    def loads(s, **kw):
        return s
'''


def _good(directory: Path, name: str = "good_fix", filename: str = "patch_json.py") -> Path:
    return write_patch(directory, "platform", filename, GOOD.format(name=name))


def _load(*dirs: Path):
    return load_catalog([str(d) for d in dirs], entry_points=False, builtin=False)


def _within(seconds: float, work) -> object:
    """Run ``work`` in a thread; fail if it has not finished within ``seconds`` (a FIFO that blocks)."""
    result: list[object] = []
    raised: list[BaseException] = []

    def target() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            raised.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    if raised:
        raise raised[0]
    return result[0]


@pytest.mark.parametrize("mode, words", [
    (0o777, "writable by group and others (mode 777): anyone who can write it can swap what lies below it"),
    (0o1777, "shared directory writable by group and others (mode 1777, sticky): do not chmod it"),
    (0o775, "writable by group (mode 775)"),
])
def test_a_directory_above_the_hotfix_directory_is_held_to_the_same_rule(tmp_path: Path, mode: int, words: str) -> None:
    parent = tmp_path / "parent"
    _good(parent / "hf")
    parent.chmod(mode)
    catalog = _load(parent / "hf")
    assert catalog.patches == []
    [problem] = catalog.problems
    assert problem.message.startswith(f"untrusted directory refused: {parent} (a directory above {parent / 'hf'}) is")
    assert words in problem.message


def test_a_directory_above_owned_by_another_user_refuses_the_hotfixes(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root; this machine's CI runs as root")
    parent = tmp_path / "parent"
    _good(parent / "hf")
    os.chown(parent, 4242, 4242)
    [problem] = _load(parent / "hf").problems
    assert f"{parent} (a directory above {parent / 'hf'}) is owned by uid 4242" in problem.message


def test_a_symlink_is_judged_by_the_directory_that_holds_it_and_by_its_target(tmp_path: Path) -> None:
    _good(tmp_path / "real", "through_link")
    trusted = tmp_path / "trusted"
    trusted.mkdir(mode=0o755)
    (trusted / "link").symlink_to(tmp_path / "real")
    assert _load(trusted / "link").names() == ["through_link"]
    # The same link in a directory others can write: they could point it at another directory at any
    # moment, even another root-owned one, so what it points at now proves nothing.
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "link").symlink_to(tmp_path / "real")
    [problem] = _load(shared / "link").problems
    assert f"{shared} (a directory above {shared / 'link'}) is writable by group and others" in problem.message
    # Through a link, the target's own parents are walked too.
    loose = tmp_path / "loose"
    _good(loose / "hf", "below_loose")
    loose.chmod(0o777)
    (trusted / "to-loose").symlink_to(loose / "hf")
    [problem] = _load(trusted / "to-loose").problems
    assert f"{loose} (a directory above {trusted / 'to-loose'})" in problem.message


def test_a_patch_file_that_is_a_symlink_is_refused_and_a_fifo_never_blocks(tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    _good(hf, "kept")
    elsewhere = tmp_path / "elsewhere.py"
    elsewhere.write_text("raise SystemExit('followed the link')\n")
    (hf / "platform" / "patch_link.py").symlink_to(elsewhere)
    os.mkfifo(hf / "platform" / "patch_fifo.py")
    catalog = _within(20, lambda: _load(hf))
    assert catalog.names() == ["kept"]
    messages = {Path(p.path).name: p.message for p in catalog.problems}
    assert "is a symlink: a patch file must be a regular file in its directory" in messages["patch_link.py"]
    assert "is a FIFO, not a regular file" in messages["patch_fifo.py"]


def test_a_fifo_manifest_never_blocks_loading_verify_or_signing(tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    _good(hf)
    os.mkfifo(hf / "SHA256SUMS")
    catalog = _within(20, lambda: _load(hf))
    assert catalog.patches == [] and "SHA256SUMS is a FIFO, not a regular file" in catalog.problems[0].message
    result = _within(120, lambda: verify(str(hf)))
    assert not result.ok and "is a FIFO" in result.findings[0].message
    (hf / "SHA256SUMS").unlink()
    os.mkfifo(hf / "platform" / "patch_fifo.py")
    with pytest.raises(OverlayError, match="patch_fifo.py is a FIFO, not a regular file"):
        _within(20, lambda: write_manifest(hf))


def test_hotfix_verify_never_blocks_on_a_fifo(tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    _good(hf)
    os.mkfifo(hf / "platform" / "patch_fifo.py")
    proc = subprocess.run([sys.executable, "-m", "ascend_overlay", "hotfix", "verify", str(hf), "--json"],
                          timeout=120, capture_output=True, text=True, env=base_env(overlay=False, VLLM_VERSION="0.1.0"))
    assert proc.returncode == 1
    findings = {f["path"]: f for f in json.loads(proc.stdout)["findings"]}
    fifo = findings[str(hf / "platform" / "patch_fifo.py")]
    assert not fifo["ok"] and fifo["message"].startswith("untrusted file refused:")
    assert "Traceback" not in proc.stderr


_OPENED: list[str] = []
_WATCHING: list[str] = []


def _audit(event: str, args: tuple) -> None:
    # Python's audit hooks see every open: builtins.open, io.open, os.open and tokenize's (linecache).
    if event == "open" and _WATCHING and str(args[0]).endswith(_WATCHING[0]):
        _OPENED.append(str(args[0]))


sys.addaudithook(_audit)


def test_a_patch_file_is_opened_once_and_what_was_hashed_is_what_runs(tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    _good(hf, "signed")
    write_manifest(hf)
    from ascend_overlay.core import reliance

    _OPENED.clear()
    _WATCHING.append("patch_json.py")
    try:
        catalog = _load(hf)
        reliance.check_live(catalog.get("signed"))  # relied-on names are read from the executed tree
    finally:
        _WATCHING.clear()
    assert catalog.names() == ["signed"]
    assert _OPENED == ["patch_json.py"], "the file was opened again after its check"


def test_a_hotfix_reaching_vllm_through_a_helper_of_its_own_is_refused_before_it_runs(tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    ran = tmp_path / "ran"
    (hf / "helpers").mkdir(parents=True)
    (hf / "helpers" / "__init__.py").write_text("from helpers import inner  # noqa\n")
    (hf / "helpers" / "inner.py").write_text("X = 1\nimport vllm.envs\n")
    (hf / "typed.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import vllm\n")
    for p in (hf / "helpers", hf):
        p.chmod(0o755)
    write_patch(hf, "platform", "patch_indirect.py", f'''
        open({str(ran)!r}, "w").close()
        import helpers

        PATCH = Patch(name="indirect", phase="platform", vllm=">=0", why="w", remove_when="r")
        PATCH.replace_value("json:dumps", None)
    ''')
    write_patch(hf, "platform", "patch_typed.py", '''
        import typed  # imports vLLM only for type checkers: it never runs

        PATCH = Patch(name="typed", phase="platform", vllm=">=0", why="w", remove_when="r")
        PATCH.replace_value("json:loads", None)
    ''')
    sys.path.insert(0, str(hf))
    try:
        catalog = _load(hf)
    finally:
        sys.path.remove(str(hf))
        for name in ("typed", "helpers", "helpers.inner"):
            sys.modules.pop(name, None)
    assert catalog.names() == ["typed"]
    [problem] = catalog.problems
    assert problem.message == (
        f"imports helpers at module level (line 4), a module of its own ({hf / 'helpers' / '__init__.py'}), which "
        f"imports helpers.inner ({hf / 'helpers' / 'inner.py'}, line 1), which imports vllm.envs (line 2): patch "
        "files load at start-up in every Python process with the overlay on, so this would import vllm into all "
        "of them; move the import inside the function that needs it")
    assert not ran.exists(), "the hotfix's own code ran before it was refused"


def _entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, package: str) -> Path:
    site = tmp_path / "site"
    dist = site / "acme_hotfixes-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-hotfixes\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[ascend_overlay.patches]\nacme = {value}\n")
    monkeypatch.syspath_prepend(str(site))
    return site / package.replace(".", "/")


def test_a_dotted_entry_point_runs_no_package_code_and_checks_every_init_on_the_way(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran = tmp_path / "ran"
    pkg = _entry_point(tmp_path, monkeypatch, "acme_pkg.fixes:unused", "acme_pkg.fixes")
    _good(pkg, "from_dotted")
    (pkg.parent / "__init__.py").write_text(f"open({str(ran)!r}, 'w').close()\n")
    (pkg / "__init__.py").write_text(f"open({str(ran)!r}, 'w').close()\n")
    catalog = load_catalog([], builtin=False)
    assert catalog.names() == ["from_dotted"] and not ran.exists()
    assert "acme_pkg" not in sys.modules
    (pkg.parent / "__init__.py").chmod(0o666)
    catalog = load_catalog([], builtin=False)
    assert catalog.names() == []
    assert catalog.problems[0].message.startswith(f"untrusted package refused: {pkg.parent / '__init__.py'} is "
                                                  "writable by group and others")


def test_a_helper_of_an_entry_point_package_reaching_vllm_is_refused(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = _entry_point(tmp_path, monkeypatch, "acme_helped", "acme_helped")
    write_patch(pkg, "platform", "patch_helped.py", '''
        from acme_helped import util

        PATCH = Patch(name="helped", phase="platform", vllm=">=0", why="w", remove_when="r")
        PATCH.replace_value("json:dumps", None)
    ''')
    (pkg / "__init__.py").write_text("")
    (pkg / "util.py").write_text("from . import deep\n")
    (pkg / "deep.py").write_text("import torch\n")
    [problem] = load_catalog([], builtin=False).problems
    assert f"which imports acme_helped.deep ({pkg / 'deep.py'}, line 1), which imports torch (line 1)" in problem.message


def test_an_entry_point_naming_a_vllm_module_imports_nothing(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = site / "bad_ep-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bad-ep\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ascend_overlay.patches]\nbad = vllm.entrypoints.cli:main\n")
    code = textwrap.dedent('''
        import sys
        from ascend_overlay.core.catalog import load_catalog
        catalog = load_catalog([], builtin=False)
        print([p.message for p in catalog.problems], "torch" in sys.modules, "vllm" in sys.modules)
    ''')
    env = base_env(overlay=False)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == ("['entry point names vllm.entrypoints.cli, inside vllm: patch packages must be "
                                   "packages of their own'] False False"), proc.stderr


def test_the_owner_rule_holds_for_every_file_and_directory_kind(tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    _good(hf)
    with trust.open_directory(str(hf)) as directory:
        sub = directory.subdir("platform")
        try:
            checked = sub.read("patch_json.py")
        finally:
            sub.close()
    assert checked.data == (hf / "platform" / "patch_json.py").read_bytes()
    assert checked.path == str(hf / "platform" / "patch_json.py")
    with pytest.raises(trust.Refused, match="a relative path is refused"):
        trust.open_directory("hf")
    with pytest.raises(trust.Refused, match="is not a directory"):
        trust.open_directory(str(hf / "platform" / "patch_json.py"))


def test_advice_for_a_symlinked_hotfix_directory_never_chmods_through_the_link(tmp_path: Path) -> None:
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
