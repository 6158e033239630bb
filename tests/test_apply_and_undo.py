"""Applying and undoing: patches apply atomically, undo by identity, never double-wrap, rebind stale aliases,
skip on drift, and conflicts are found at load time."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import wrapt
from synthetic import forget, write_patch, write_target_package

from ascend_overlay.core import phases
from ascend_overlay.core.errors import PatchApplyError
from ascend_overlay.core.settings import Settings
from ascend_overlay.core.wrapper import is_overlay_wrapper, original_of
from ascend_overlay.doors import activation


@pytest.fixture
def pkg(tmp_path: Path) -> str:
    name = f"ovl_target_{uuid.uuid4().hex[:8]}"
    write_target_package(tmp_path / "src", name)
    yield name
    activation.deactivate()
    forget(name)


def _settings(*dirs: Path, **kw: object) -> Settings:
    return Settings(enabled=True, hotfix_dirs=tuple(str(d) for d in dirs), log_level="off", **kw)


def _standard_patches(directory: Path, pkg: str) -> None:
    write_patch(directory, "import", "patch_wrap.py", f'''
        PATCH = Patch(name="wrap_compute", phase="import", vllm=">=0", why="t", remove_when="t")

        @PATCH.wrap("{pkg}:compute", contract="(x)")
        def around(wrapped, instance, args, kwargs):
            return wrapped(*args, **kwargs) * 10
    ''')
    write_patch(directory, "import", "patch_replace.py", f'''
        PATCH = Patch(name="replace_methods", phase="import", vllm=">=0", why="t", remove_when="t")

        @PATCH.replace("{pkg}:Widget.size", contract="(self)")
        def size(self):
            return 2

        @PATCH.replace("{pkg}:Widget.kind", contract="()")
        def kind():
            return "patched"

        @PATCH.replace("{pkg}:Fancy.make", contract="(cls)")
        def make(cls):
            return "made"
    ''')


def _assert_state(mod: object, active: bool) -> None:
    originals = mod.ORIGINALS
    compute = mod.__dict__["compute"]
    if active:
        assert is_overlay_wrapper(compute)
        assert original_of(compute) is originals["compute"], "wrapped twice or around the wrong object"
        assert mod.compute(1) == 20
        assert mod.Widget().size() == 2 and mod.Widget.kind() == "patched" and mod.Fancy.make() == "made"
        assert isinstance(mod.Widget.__dict__["kind"], staticmethod)
        assert "make" in mod.Fancy.__dict__
    else:
        assert compute is originals["compute"]
        assert mod.Widget.__dict__["size"] is originals["size"]
        assert mod.Widget.__dict__["kind"] is originals["kind"]
        assert "make" not in mod.Fancy.__dict__, "an inherited attribute must be deleted, not shadowed"
        assert mod.compute(1) == 2 and mod.Widget.kind() == "plain"


ORDER_STEPS = ("import", "activate", "deactivate", "import_again")


@pytest.mark.parametrize("order", list(itertools.permutations(ORDER_STEPS)) + [
    ("activate", "activate", "import", "import_again"), ("import", "activate", "import_again", "activate")])
def test_every_ordering_keeps_one_wrapper_and_restores_identity(pkg: str, tmp_path: Path,
                                                                  order: tuple[str, ...]) -> None:
    _standard_patches(tmp_path / "hotfix", pkg)
    settings = _settings(tmp_path / "hotfix")
    active = False
    for step in order:
        if step == "import":
            __import__(pkg)
        elif step == "import_again":
            forget(pkg)
            __import__(pkg)
        elif step == "activate":
            activation.activate(settings=settings)
            active = True
        elif step == "deactivate":
            activation.deactivate()
            active = False
        if pkg in sys.modules:
            _assert_state(sys.modules[pkg], active)


def test_replace_installs_the_function_itself(pkg: str, tmp_path: Path) -> None:
    _standard_patches(tmp_path / "hotfix", pkg)
    overlay = activation.activate(settings=_settings(tmp_path / "hotfix"))
    mod = __import__(pkg)
    replacement = overlay.catalog.get("replace_methods").edits[0].value
    assert mod.Widget.__dict__["size"] is replacement  # no wrapper: zero per-call cost


def test_failure_midway_rolls_back_everything(pkg: str, tmp_path: Path) -> None:
    write_patch(tmp_path / "hotfix", "import", "patch_half.py", f'''
        PATCH = Patch(name="half_broken", phase="import", vllm=">=0", why="t", remove_when="t")

        @PATCH.replace("{pkg}:compute")
        def compute(x):
            return 0

        @PATCH.replace("{pkg}:Widget.size", factory=True)
        def broken(original):
            raise RuntimeError("boom in the second edit")
    ''')
    overlay = activation.activate(settings=_settings(tmp_path / "hotfix"))
    mod = __import__(pkg)
    assert mod.compute is mod.ORIGINALS["compute"], "first edit left in place"
    assert mod.Widget.__dict__["size"] is mod.ORIGINALS["size"]
    result = overlay.report.outcomes["half_broken"]
    assert result.status == "failed"
    assert "rolled back" in result.reason and "boom in the second edit" in result.reason


def test_strict_mode_raises_instead(pkg: str, tmp_path: Path) -> None:
    write_patch(tmp_path / "hotfix", "platform", "patch_drift.py", f'''
        PATCH = Patch(name="drifted", phase="platform", vllm=">=0", why="t", remove_when="t")

        @PATCH.replace("{pkg}:compute", contract="(x, y)")
        def compute(x):
            return 0
    ''')
    activation.activate(settings=_settings(tmp_path / "hotfix", strict=True))
    with pytest.raises(PatchApplyError, match="drift"):
        phases.fire("platform")
    assert sys.modules[pkg].compute is sys.modules[pkg].ORIGINALS["compute"]


def test_drift_skips_with_what_changed_unless_declared_compatible(pkg: str, tmp_path: Path) -> None:
    write_patch(tmp_path / "hotfix", "platform", "patch_drift.py", f'''
        PATCH = Patch(name="drifted", phase="platform", vllm=">=0", why="t", remove_when="t")

        @PATCH.replace("{pkg}:compute", contract="(x, scale=1)")
        def compute(x):
            return 0
    ''')
    write_patch(tmp_path / "hotfix", "platform", "patch_ok.py", f'''
        PATCH = Patch(name="compatible", phase="platform", vllm=">=0", why="t", remove_when="t")

        @PATCH.replace("{pkg}:Widget.size", contract="(self, fast=False)", compatible=("(self)",))
        def size(self):
            return 5
    ''')
    __import__(pkg)
    overlay = activation.activate(settings=_settings(tmp_path / "hotfix"))
    phases.fire("platform")
    drifted = overlay.report.outcomes["drifted"]
    assert drifted.status == "skipped"
    assert drifted.reason.startswith("drift:") and "removed scale" in drifted.reason
    assert overlay.report.outcomes["compatible"].status == "applied"
    assert sys.modules[pkg].Widget().size() == 5


def test_missing_target_is_skipped_not_raised(pkg: str, tmp_path: Path) -> None:
    write_patch(tmp_path / "hotfix", "platform", "patch_gone.py", f'''
        PATCH = Patch(name="renamed_upstream", phase="platform", vllm=">=0", why="t", remove_when="t")

        @PATCH.replace("{pkg}:compute_v2")
        def compute(x):
            return 0
    ''')
    overlay = activation.activate(settings=_settings(tmp_path / "hotfix"))
    phases.fire("platform")
    result = overlay.report.outcomes["renamed_upstream"]
    assert result.status == "skipped" and "compute_v2 does not exist" in result.reason


def test_stale_alias_in_synthetic_module_is_rebound_and_restored(pkg: str, tmp_path: Path) -> None:
    _standard_patches(tmp_path / "hotfix", pkg)
    user = __import__(f"{pkg}.user", fromlist=["use"])
    original = user.compute
    overlay = activation.activate(settings=_settings(tmp_path / "hotfix"))
    assert user.use(1) == 20, "the alias taken before activation still calls the original"
    assert f"{pkg}.user:compute" in overlay.report.outcomes["wrap_compute"].aliases
    activation.deactivate()
    assert user.compute is original


def test_stale_alias_in_real_vllm_is_rebound(tmp_path: Path) -> None:
    """vllm.engine.arg_utils took `init_logger` by name from vllm.logger long before any patch."""
    import vllm.engine.arg_utils as arg_utils
    import vllm.logger

    original = vllm.logger.init_logger
    assert arg_utils.init_logger is original
    write_patch(tmp_path / "hotfix", "platform", "patch_logger.py", '''
        PATCH = Patch(name="wrap_init_logger", phase="platform", vllm=">=0.32", why="t", remove_when="t")

        @PATCH.wrap("vllm.logger:init_logger", contract="(name)")
        def traced(wrapped, instance, args, kwargs):
            return wrapped(*args, **kwargs)
    ''')
    overlay = activation.activate(settings=_settings(tmp_path / "hotfix"))
    try:
        phases.fire("platform")
        assert overlay.report.outcomes["wrap_init_logger"].status == "applied"
        assert is_overlay_wrapper(arg_utils.init_logger)
        assert arg_utils.init_logger is vllm.logger.init_logger
        assert "vllm.engine.arg_utils:init_logger" in overlay.report.outcomes["wrap_init_logger"].aliases
    finally:
        activation.deactivate()
    assert arg_utils.init_logger is original and vllm.logger.init_logger is original


def test_two_patches_on_one_target_conflict_at_load(pkg: str, tmp_path: Path) -> None:
    for n in (1, 2):
        write_patch(tmp_path / "hotfix", "platform", f"patch_c{n}.py", f'''
            PATCH = Patch(name="claim_{n}", phase="platform", vllm=">=0", why="t", remove_when="t")

            @PATCH.replace("{pkg}:compute")
            def compute(x):
                return {n}
        ''')
    overlay = activation.activate(settings=_settings(tmp_path / "hotfix"))
    blocked = overlay.catalog.blocked["claim_2"]
    assert blocked.reason.value == "conflict" and "claim_1" in blocked.text and "supersedes=('claim_1',)" in blocked.hint
    phases.fire("platform")
    assert overlay.report.outcomes["claim_2"].status == "skipped"
    assert sys.modules[pkg].compute(0) == 1


def test_wraps_on_one_target_compose_in_load_order_and_undo_in_any_order(pkg: str, tmp_path: Path) -> None:
    for n, op in ((1, "+ 100"), (2, "* 2")):
        write_patch(tmp_path / "hotfix", "platform", f"patch_w{n}.py", f'''
            PATCH = Patch(name="wrap_{n}", phase="platform", vllm=">=0", why="t", remove_when="t")

            @PATCH.wrap("{pkg}:compute", contract="(x)")
            def around(wrapped, instance, args, kwargs):
                return wrapped(*args, **kwargs) {op}
        ''')
    mod = __import__(pkg)
    overlay = activation.activate(settings=_settings(tmp_path / "hotfix"))
    phases.fire("platform")
    assert overlay.catalog.blocked == {}
    assert mod.compute(1) == (2 + 100) * 2, "the second wrapper must see the first one's result"
    overlay.unpatch("wrap_1")  # the inner one first: spliced out from under wrap_2
    assert mod.compute(1) == 2 * 2
    activation.deactivate()
    assert mod.compute is mod.ORIGINALS["compute"]


def test_a_replacement_and_a_wrap_on_one_target_conflict(pkg: str, tmp_path: Path) -> None:
    write_patch(tmp_path / "hotfix", "platform", "patch_a.py", f'''
        PATCH = Patch(name="wraps_it", phase="platform", vllm=">=0", why="t", remove_when="t")

        @PATCH.wrap("{pkg}:compute")
        def around(wrapped, instance, args, kwargs):
            return wrapped(*args, **kwargs)
    ''')
    write_patch(tmp_path / "hotfix", "platform", "patch_b.py", f'''
        PATCH = Patch(name="replaces_it", phase="platform", vllm=">=0", why="t", remove_when="t")

        @PATCH.replace("{pkg}:compute")
        def compute(x):
            return 0
    ''')
    overlay = activation.activate(settings=_settings(tmp_path / "hotfix"))
    assert "a replacement cannot share its target" in overlay.catalog.blocked["replaces_it"].text


def test_supersedes_settles_the_conflict(pkg: str, tmp_path: Path) -> None:
    write_patch(tmp_path / "a", "platform", "patch_old.py", f'''
        PATCH = Patch(name="old_fix", phase="platform", vllm=">=0", why="t", remove_when="t")

        @PATCH.replace("{pkg}:compute")
        def compute(x):
            return "old"
    ''')
    write_patch(tmp_path / "b", "platform", "patch_new.py", f'''
        PATCH = Patch(name="new_fix", phase="platform", vllm=">=0", why="t", remove_when="t",
                      supersedes=("old_fix",))

        @PATCH.replace("{pkg}:compute")
        def compute(x):
            return "new"
    ''')
    __import__(pkg)
    overlay = activation.activate(settings=_settings(tmp_path / "a", tmp_path / "b"))
    phases.fire("platform")
    assert sys.modules[pkg].compute(0) == "new"
    assert overlay.report.outcomes["old_fix"].reason == "superseded by new_fix"


def test_apply_twice_is_a_noop(pkg: str, tmp_path: Path) -> None:
    _standard_patches(tmp_path / "hotfix", pkg)
    overlay = activation.activate(settings=_settings(tmp_path / "hotfix"))
    mod = __import__(pkg)
    wrapper = mod.compute
    assert overlay.apply(overlay.catalog.get("wrap_compute")) is True
    assert activation.activate(settings=_settings(tmp_path / "hotfix")) is overlay
    assert mod.compute is wrapper and mod.compute.__wrapped__ is mod.ORIGINALS["compute"]


def test_undo_refuses_to_clobber_a_later_change_but_undoes_the_rest(pkg: str, tmp_path: Path) -> None:
    _standard_patches(tmp_path / "hotfix", pkg)
    overlay = activation.activate(settings=_settings(tmp_path / "hotfix"))
    mod = __import__(pkg)

    def someone_elses(x):
        return -1

    mod.compute = someone_elses  # a third party patched after us
    overlay.deactivate()
    assert mod.compute is someone_elses, "undo overwrote a change made after the overlay's"
    assert mod.Widget.__dict__["size"] is mod.ORIGINALS["size"], "the other patch was not undone"
    activation.deactivate()


def test_undo_splices_our_wrapper_out_from_under_a_third_party_wrapt_wrapper(pkg: str, tmp_path: Path) -> None:
    _standard_patches(tmp_path / "hotfix", pkg)
    activation.activate(settings=_settings(tmp_path / "hotfix"))
    mod = __import__(pkg)
    ours = mod.__dict__["compute"]
    theirs = wrapt.FunctionWrapper(ours, lambda wrapped, instance, args, kwargs: wrapped(*args, **kwargs) + 5)
    mod.compute = theirs  # e.g. a tracer instrumenting vLLM after the overlay
    assert mod.compute(1) == 25
    activation.deactivate()
    assert mod.compute is theirs, "the third party's wrapper must stay on top"
    assert theirs.__wrapped__ is mod.ORIGINALS["compute"], "ours must be spliced out of the chain"
    assert mod.compute(1) == 7


def test_a_wrapped_target_pickles_as_a_reference_that_the_receiver_looks_up(pkg: str, tmp_path: Path) -> None:
    """wrapt refuses pickle, and cloudpickle (vLLM's and Ray's) copied the original function by value
    out of a wrapped method reached through its class: Ray's legacy executor shipped the unpatched
    WorkerWrapperBase.init_worker to every worker that way. A wrapped target is now a reference."""
    import copy
    import inspect
    import pickle

    cloudpickle = pytest.importorskip("cloudpickle")
    write_patch(tmp_path / "hotfix", "import", "patch_wraps.py", f'''
        PATCH = Patch(name="wrap_all", phase="import", vllm=">=0", why="t", remove_when="t")

        @PATCH.wrap("{pkg}:compute", contract="(x)")
        def around(wrapped, instance, args, kwargs):
            return wrapped(*args, **kwargs) * 10

        @PATCH.wrap("{pkg}:Widget.size", contract="(self)")
        def size(wrapped, instance, args, kwargs):
            return (type(instance).__name__, wrapped(*args, **kwargs) * 10)

        @PATCH.wrap("{pkg}:Widget.make", contract="(cls)")
        def make(wrapped, instance, args, kwargs):
            return ("made", wrapped(*args, **kwargs))
    ''')
    mod = __import__(pkg)
    activation.activate(settings=_settings(tmp_path / "hotfix"))
    fancy = mod.Fancy()
    # what Ray's actor export does: every member along the MRO, taken through the (sub)class
    member = dict(inspect.getmembers(mod.Fancy))["size"]
    shipped = {
        "pickle": [pickle.dumps(x) for x in (mod.compute, mod.Fancy.size, fancy.size)],
        "cloudpickle": [cloudpickle.dumps(x) for x in (mod.compute, member, fancy.size, mod.Fancy.make)],
    }
    for blob in shipped["pickle"] + shipped["cloudpickle"]:
        assert b"ascend_overlay" not in blob, "a receiver without the overlay must unpickle it"
    compute, size, bound_size = (pickle.loads(b) for b in shipped["pickle"])
    assert compute is mod.compute and compute(1) == 20
    assert size(fancy) == bound_size() == ("Fancy", 10)
    compute, size, bound_size, make = (cloudpickle.loads(b) for b in shipped["cloudpickle"])
    assert compute(1) == 20 and size(fancy) == bound_size() == ("Fancy", 10)
    assert make()[0] == "made" and isinstance(make()[1], mod.Fancy), "a class method stays bound to its class"
    assert copy.deepcopy(mod.compute) is mod.compute and copy.copy(mod.Fancy.size) is mod.Fancy.size
    assert mod.Fancy.size is mod.Widget.size, "one object through any class, as a function is"

    activation.deactivate()  # a receiver whose overlay is off gets stock vLLM from the same bytes
    compute, size, bound_size = (pickle.loads(b) for b in shipped["pickle"])
    assert compute is mod.ORIGINALS["compute"] and size(fancy) == bound_size() == 1
    assert cloudpickle.loads(shipped["cloudpickle"][1])(fancy) == 1


def test_a_functools_wraps_copy_of_a_wrapped_method_ships_without_the_overlay(pkg: str, tmp_path: Path) -> None:
    """Ray's tracing helper wraps every actor method with functools.wraps, which copies the method's
    __dict__ into the copy, and cloudpickle ships the copy by value with its __dict__: nothing of the
    overlay (its patch modules are private, so unpicklable elsewhere) may ride along."""
    import functools

    cloudpickle = pytest.importorskip("cloudpickle")
    _standard_patches(tmp_path / "hotfix", pkg)
    mod = __import__(pkg)
    activation.activate(settings=_settings(tmp_path / "hotfix"))
    ours = mod.__dict__["compute"]
    assert is_overlay_wrapper(ours)

    @functools.wraps(ours)
    def traced(*args, **kwargs):
        return ours(*args, **kwargs)

    traced.__module__ = "__main__"  # as a class Ray builds on the fly: shipped by value
    blob = cloudpickle.dumps(traced)
    assert b"_ascend_overlay_patches" not in blob and b"ascend_overlay" not in blob
    assert cloudpickle.loads(blob)(1) == 20


def test_wraps_inside_a_compiled_forward_are_traced_with_fullgraph(tmp_path: Path) -> None:
    """vLLM compiles the model's forward with ``torch.compile(fullgraph=True)``: a wrap on anything the
    forward reaches (a layer's ``forward_native`` bound at init, as vLLM's CustomOp does; a quantization
    method's ``apply`` on a plain object; a class method, a static method, a module function) must be
    traced into the graph with its wrapper. dynamo cannot trace ``types.MethodType(...)``, which is how
    the wrapper used to bind a method's original (vLLM stopped at its first compile), and it saw through
    the wrapt proxy a class method's wrap used to be, compiling the original (the patch silently not in
    effect). In a fresh interpreter: dynamo reads every device torch knows, and other tests leave the
    simulated NPU's device name registered in theirs."""
    pytest.importorskip("torch")
    (tmp_path / "compiled_layers.py").write_text(textwrap.dedent('''
        import torch

        def bias(x):
            return x - 1

        class Method:
            def apply(self, x):
                return x + 1

            @classmethod
            def factor(cls, x):
                return x * 2

            @staticmethod
            def shift(x):
                return x

        class Layer(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.method = Method()
                self._forward_method = self.forward_native  # bound once, as vLLM's CustomOp does

            def forward_native(self, x):
                return self.method.apply(x) * Method.factor(x)

            def forward(self, x):
                return bias(Method.shift(self._forward_method(x)))
    '''))
    (tmp_path / "compile_through_wraps.py").write_text(textwrap.dedent('''
        import json, torch
        import compiled_layers
        from ascend_overlay.core import applier
        from ascend_overlay.core.patch import Patch

        patch = Patch(name="compiled_wraps", phase="import", vllm=">=0", why="t", remove_when="t")

        @patch.wrap("compiled_layers:Method.apply")
        def add_ten(wrapped, instance, args, kwargs):
            return wrapped(*args, **kwargs) + 10

        @patch.wrap("compiled_layers:Method.factor")
        def triple(wrapped, instance, args, kwargs):
            assert instance is compiled_layers.Method
            return wrapped(*args, **kwargs) * 3

        @patch.wrap("compiled_layers:Method.shift")
        def halve(wrapped, instance, args, kwargs):
            return wrapped(*args, **kwargs) / 2

        @patch.wrap("compiled_layers:bias")
        def double(wrapped, instance, args, kwargs):
            return wrapped(*args, **kwargs) * 2

        @patch.wrap("compiled_layers:Layer.forward_native")
        def negate(wrapped, instance, args, kwargs):
            return -wrapped(*args, **kwargs)

        def compiled():
            torch._dynamo.reset()
            return torch.compile(compiled_layers.Layer(), fullgraph=True, backend="eager")(torch.ones(3)).tolist()

        applied = applier.apply(patch)
        wrapped = compiled()
        applied.undo()
        print(json.dumps({"wrapped": wrapped, "undone": compiled()}))
    '''))
    done = subprocess.run([sys.executable, "compile_through_wraps.py"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # bias(shift(forward_native)): ((-((1+1+10)*(2*3)))/2 - 1)*2 wrapped; (1+1)*2 - 1 undone
    assert result["wrapped"] == [-74.0] * 3, "every wrapper ran inside the compiled graph"
    assert result["undone"] == [3.0] * 3
