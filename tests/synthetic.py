"""A small synthetic target package and patch directories written by tests: exact cases that a real
vLLM cannot be bent into (orderings, failing edits), next to the real-vLLM tests."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

TARGET_SOURCE = textwrap.dedent('''
    def compute(x):
        return x + 1

    class Widget:
        def size(self):
            return 1

        @staticmethod
        def kind():
            return "plain"

        @classmethod
        def make(cls):
            return cls()

    class Fancy(Widget):
        pass

    LIMIT = 10
    ORIGINALS = {"compute": compute, "size": Widget.__dict__["size"], "kind": Widget.__dict__["kind"],
                 "make": Widget.__dict__["make"]}
''')

USER_SOURCE = textwrap.dedent('''
    from {pkg} import compute   # taken before any patch: a stale alias in the making

    def use(x):
        return compute(x)
''')


def write_target_package(root: Path, name: str) -> Path:
    pkg = root / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(TARGET_SOURCE)
    (pkg / "user.py").write_text(USER_SOURCE.format(pkg=name))
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return pkg


def forget(name: str) -> None:
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


def write_patch(directory: Path, phase: str, filename: str, body: str) -> Path:
    folder = directory / phase
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_text("from ascend_overlay import Patch\n" + textwrap.dedent(body))
    for p in (directory, folder):
        p.chmod(0o755)
    path.chmod(0o644)
    return path


def one_patch_dir(tmp_path: Path, body: str, phase: str = "import") -> Path:
    """A hotfix directory holding one patch file, ``<phase>/patch_fault.py``, with ``body``."""
    directory = tmp_path / "hf"
    write_patch(directory, phase, "patch_fault.py", body)
    return directory
