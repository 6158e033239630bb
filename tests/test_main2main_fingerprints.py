"""Static fingerprints must read exactly what ``contract.fingerprint`` gives for the live object.

Otherwise a pin written from a live object would look drifted to ``check``. Each case is compared
with the live fingerprint of the same code, imported for real, never with a hand-written expectation.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from ascend_overlay.core import applier, contract
from ascend_overlay.main2main.fingerprints import fingerprint
from ascend_overlay.main2main.tree import StaticTree

SHAPES = '''
import abc
import dataclasses
import functools
import importlib
from typing import Generic, NamedTuple, TypeVar

T = TypeVar("T")
LIMIT = 8
SCALE = 16 * 1024


def plain(a, b):
    return a


def defaults(a, n=None, t=True, f=False, i=-1, x=1.5, s="s", by=b"b", lst=[], tup=(), call=dict(),
             const=LIMIT, arith=SCALE, expr=2 * 3, neg=-0.5, big=1 << 20):
    return a


def posonly(a, b, /, c, *, d, e=1):
    return a


def varargs(*args, **kwargs):
    return args


def kwonly_after_var(a, *rest, key=None, **extra):
    return a


def _decorator(fn):
    @functools.wraps(fn)
    def inner(*a, **k):
        return fn(*a, **k)
    return inner


@_decorator
def wrapped(a, b=2):
    return a


async def coroutine(a, *, timeout=1.0):
    return a


class Base:
    LEVEL = 3

    def __init__(self, x, y=0):
        self.x = x

    @classmethod
    def make(cls, value=None):
        return cls(value)

    @staticmethod
    def util(p, q=3):
        return p

    def method(self, a, *, flag=False):
        return a

    @property
    def prop(self):
        return 1

    @functools.cached_property
    def cached(self):
        return 1


class Child(Base):
    def method(self, a, *, flag=True):
        return a


class GrandChild(Child):
    pass


class NoInit:
    pass


class WithABC(abc.ABC):
    def run(self):
        return None


class Gen(Generic[T]):
    pass


class Point(NamedTuple):
    x: int
    y: int = 0


@dataclasses.dataclass
class DC:
    a: int
    b: str = "s"
    c: list = dataclasses.field(default_factory=list)
    d: int = dataclasses.field(default=5)


@dataclasses.dataclass(kw_only=True)
class DCK:
    a: int
    b: int = 2


@dataclasses.dataclass
class DCChild(DC):
    e: float = 0.5
'''

SUB = '''
import os as os_mod
from importlib import metadata

from {pkg} import Base, LIMIT
from {pkg}.shapes import Child as Renamed


class SubChild(Base):
    def extra(self, z=LIMIT):
        return z
'''

TARGETS = [
    "shapes:plain", "shapes:defaults", "shapes:posonly", "shapes:varargs", "shapes:kwonly_after_var",
    "shapes:wrapped", "shapes:coroutine", "shapes:Base", "shapes:Base.__init__", "shapes:Base.make",
    "shapes:Base.util", "shapes:Base.method", "shapes:Base.prop", "shapes:Base.cached", "shapes:Base.LEVEL",
    "shapes:Child", "shapes:Child.make", "shapes:Child.util", "shapes:Child.method", "shapes:GrandChild.make",
    "shapes:GrandChild", "shapes:NoInit", "shapes:WithABC", "shapes:WithABC.run", "shapes:Gen", "shapes:Point",
    "shapes:DC", "shapes:DCK", "shapes:DCChild", "shapes:LIMIT", "shapes:importlib",
    "sub:os_mod", "sub:metadata", "sub:Base.method", "sub:Renamed.method", "sub:SubChild", "sub:SubChild.extra",
    "sub:SubChild.make", "", ":Base.make",
]


@pytest.fixture
def shapes_package(tmp_path: Path):
    name = f"m2m_shapes_{uuid.uuid4().hex[:8]}"
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "shapes.py").write_text(textwrap.dedent(SHAPES), encoding="utf-8")
    (pkg / "__init__.py").write_text(f"from {name}.shapes import Base, LIMIT, plain  # noqa: F401\n", encoding="utf-8")
    (pkg / "sub.py").write_text(SUB.format(pkg=name), encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    try:
        yield name, tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]


def _split(name: str, spec: str) -> tuple[str, tuple[str, ...]]:
    module, _, attrs = spec.partition(":")
    return (f"{name}.{module}" if module else name), tuple(attrs.split(".")) if attrs else ()


def test_static_fingerprints_equal_live_ones(shapes_package: tuple[str, Path]) -> None:
    name, root = shapes_package
    tree = StaticTree(root, package=name)
    compared = []
    for spec in TARGETS:
        module, path = _split(name, spec)
        if not path:
            continue
        live = contract.fingerprint(applier.resolve(module, path).unbound)
        found = tree.lookup(module, path)
        assert found is not None, f"{spec}: not found statically"
        static = fingerprint(tree, found)
        if static is None:
            # Allowed only where the source cannot say (a Generic/NamedTuple base's machinery).
            assert spec in ("shapes:Point",), f"{spec}: static fingerprint unknown, live is {live!r}"
            continue
        assert static == live, f"{spec}: static {static!r} != live {live!r}"
        compared.append(spec)
    assert len(compared) >= 35


def test_missing_names_are_missing_not_guessed(shapes_package: tuple[str, Path]) -> None:
    name, root = shapes_package
    tree = StaticTree(root, package=name)
    for spec in ("shapes:nothing_here", "shapes:Base.nothing", "shapes:Base.x", "nosuchmodule:Base", "sub:os_mod.nope"):
        module, path = _split(name, spec)
        assert tree.lookup(module, path) is None, spec


def test_installed_vllm_static_equals_live_for_overlay_targets_and_hook_modules() -> None:
    """The real thing: every overlay target, and every function/class of the modules hardware
    patches touch most, read statically from the installed vLLM equals the live fingerprint."""
    pytest.importorskip("vllm")
    script = textwrap.dedent('''
        import importlib, json, warnings
        warnings.simplefilter("ignore")
        from ascend_overlay.core import applier, contract
        from ascend_overlay.main2main.targets import overlay_targets
        from ascend_overlay.main2main.sources import installed_source
        from ascend_overlay.main2main.tree import StaticTree
        from ascend_overlay.main2main.fingerprints import fingerprint
        tree = StaticTree(installed_source().root)
        specs = [(t.module, t.path) for t in overlay_targets()[0] if t.use is None]  # relied-on: test_reliance
        for m in ["vllm.platforms.interface", "vllm.v1.worker.worker_base", "vllm.v1.engine.core",
                  "vllm.model_executor.layers.layernorm", "vllm.model_executor.custom_op",
                  "vllm.model_executor.layers.activation", "vllm.v1.core.sched.scheduler"]:
            importlib.import_module(m)
            for name, member in tree.module(m).members.items():
                if member.is_alias:
                    continue
                specs.append((m, (name,)))
                if member.is_class:
                    specs += [(m, (name, n)) for n, x in member.members.items() if not x.is_alias and x.is_function]
        rows = []
        for module, path in specs:
            live = contract.fingerprint(applier.resolve(module, path).unbound)
            found = tree.lookup(module, path)
            rows.append([module + ":" + ".".join(path), live, None if found is None else fingerprint(tree, found)])
        print(json.dumps(rows))
    ''')
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    known = [(spec, live, static) for spec, live, static in rows if static is not None]
    wrong = [(spec, live, static) for spec, live, static in known if live != static]
    assert not wrong, wrong[:5]
    assert len(known) >= 300 and len(known) >= 0.9 * len(rows)
    # the overlay's own hook points are always statically readable
    hooks = [spec for spec, _, static in rows if spec.endswith(("init_worker", "run_engine_core"))]
    assert hooks and all(dict((s, st) for s, _, st in rows)[h] is not None for h in hooks)


def test_reading_a_tree_never_imports_it(tmp_path: Path) -> None:
    """A module that would explode on import is read like any other: nothing is executed."""
    name = f"m2m_explosive_{uuid.uuid4().hex[:8]}"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("raise RuntimeError('imported!')\n\ndef f(a, b=1):\n    pass\n")
    tree = StaticTree(tmp_path, package=name)
    found = tree.lookup(name, ("f",))
    assert found is not None and fingerprint(tree, found) == "(a, b=1)"
    assert name not in sys.modules
