"""Only what pyproject.toml cannot say: the package's start-up line goes to the root of site-packages.

Python runs ``import`` lines of ``*.pth`` files found there at every interpreter start, before
``sitecustomize``: this is how an installed ascend-overlay activates with nothing but
``VLLM_ASCEND_OVERLAY=1``, whatever else is on ``PYTHONPATH``. The line costs one environment lookup
when the variable is unset. Wheels get it through ``build_py``; editable installs (``make setup``)
through the editable wheel's strategy, so a checkout behaves as an installed package does.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH = Path("ascend_overlay", "doors", "bootstrap", "ascend_overlay.pth")


class BuildWithStartupLine(build_py):
    def run(self) -> None:
        super().run()
        self.copy_file(str(PTH), str(Path(self.build_lib, PTH.name)), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib, PTH.name))]

    def get_output_mapping(self) -> dict[str, str]:
        return {**super().get_output_mapping(), str(Path(self.build_lib, PTH.name)): str(PTH)}


class _StrategyWithStartupLine:
    """Wraps setuptools' editable strategy: whatever it writes, plus the start-up line."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, wheel, files, mapping):
        self.inner(wheel, files, mapping)
        wheel.writestr(PTH.name, PTH.read_bytes())

    def __enter__(self):
        self.inner.__enter__()
        return self

    def __exit__(self, *exc):
        return self.inner.__exit__(*exc)


class EditableWithStartupLine(editable_wheel):
    def _select_strategy(self, *args, **kwargs):
        return _StrategyWithStartupLine(super()._select_strategy(*args, **kwargs))


cmdclass = {"build_py": BuildWithStartupLine}
if hasattr(editable_wheel, "_select_strategy"):  # a private hook: without it, editable installs rely on sitecustomize
    cmdclass["editable_wheel"] = EditableWithStartupLine
setup(cmdclass=cmdclass)
