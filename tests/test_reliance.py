"""What a patch relies on without editing it, derived from its source and judged
by one rule, at apply time against the live vLLM and statically against a source tree."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ascend_overlay.core import applier, reliance
from ascend_overlay.core.catalog import load_catalog, load_patch_file
from ascend_overlay.core.contract import split_params
from ascend_overlay.core.errors import PatchDeclarationError
from ascend_overlay.core.patch import Patch
from ascend_overlay.core.reliance.model import VerdictStatus
from ascend_overlay.core.reliance.shapes import call_problem, function_shape, override_problem
from ascend_overlay.core.vocabulary import Reason

# -- shapes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "positional", "keywords", "bound", "problem"), [
    ("(self, x, residual=None)", 2, (), True, None),
    ("(self, x, residual=None)", 3, (), True, "takes 2 positional argument(s), the call passes 3"),
    ("(self, x, residual, scale)", 2, (), True, "requires `scale`, which the call does not pass"),
    ("(self, x, *, scale)", 1, ("scale",), True, None),
    ("(self, x, *, scale)", 1, ("factor",), True, "has no parameter `factor`"),
    ("(self, x, **kwargs)", 1, ("factor",), True, None),
    ("(self, *args)", 5, (), True, None),
    ("(x, /, y)", 0, ("x", "y"), False, "has no parameter `x`"),
    ("(x, y)", 1, ("x",), False, "`x` is now filled by a positional argument of the call"),
    ("class(self, device)", 0, ("device",), True, None),
])
def test_call_fits_or_says_why_not(shape, positional, keywords, bound, problem) -> None:
    assert call_problem(shape, positional, keywords, bound) == problem


@pytest.mark.parametrize(("base", "override", "problem"), [
    ("(cls, parser=None)", "(cls, parser=None)", None),
    ("(cls, device_id=0)", "(cls, device_id=0, extra=1)", None),
    ("(cls, device)", "(cls, device, *, stream=None)", None),
    ("(cls, device, *, stream=None)", "(cls, device)", "vLLM may pass `stream=`, which the override does not accept"),
    ("(cls, device, index)", "(cls, device)", "vLLM may pass `index`, which the override does not accept"),
    ("(cls, device_index=0)", "(cls, device_id=0)", "vLLM's parameter 2 is `device_index`, the override's is `device_id`"),
    ("(cls, device_index=0)", "(cls, device_id=0, **kwargs)", None),
    ("(self)", "(self, must)", "the override requires `must`, which vLLM does not pass"),
    # a pass-through slot (CustomOp.forward_oot): vLLM passes what the subclass's forward takes
    ("(self, *args, **kwargs)", "(self, x)", None),
    ("(self, a, *args)", "(self, a)", "vLLM's shape takes *args, the override does not"),
    ("(self, a, b)", "(self, *args)", None),
])
def test_override_accepts_every_call_of_the_base_or_says_why_not(base, override, problem) -> None:
    assert override_problem(base, override) == problem


def test_function_shape_reads_source_like_the_live_fingerprint() -> None:
    import ast

    from ascend_overlay.core.contract import fingerprint

    source = "def f(a, b=1, /, c='x', *args, d, e=None, **kw): pass"
    namespace: dict = {}
    exec(source, namespace)
    assert function_shape(ast.parse(source).body[0]) == fingerprint(namespace["f"])


# -- derivation ------------------------------------------------------------------------------------

PATCH_SOURCE = '''
from ascend_overlay import Patch

PATCH = Patch(name="probe", phase="worker", vllm=">=0.32", why="w", remove_when="r")
PATCH.relies_on("vllm.v1.request:Request.is_prefill_chunk")


def helper(scheduler, count):
    return scheduler.waiting, count.ignored


@PATCH.replace("vllm.v1.core.sched.scheduler:Scheduler.schedule", contract="(self, throttle_prefills=False)",
               factory=True)
def make(original):
    from vllm.v1.core.sched import scheduler as sched_module
    from vllm.v1.request import RequestStatus

    def schedule(self, throttle_prefills=False):
        self.stored = 1
        helper(self, 3)
        sched_module.Scheduler.update_from_output
        if type(self).finish_requests is None:
            return original(self, throttle_prefills, RequestStatus.WAITING)
        return self.running[0].anything

    return schedule


@PATCH.wrap("vllm.v1.core.sched.scheduler:Scheduler.add_request")
def wrapper(wrapped, instance, args, kwargs):
    instance.policy
    return wrapped(*args, **kwargs)
'''


@pytest.fixture
def probe_patch(tmp_path: Path) -> Patch:
    path = tmp_path / "patch_probe.py"
    path.write_text(PATCH_SOURCE)
    return load_patch_file(path, "test", "reliance_probe")


def test_uses_are_derived_from_the_replacement_the_wrapper_and_their_helpers(probe_patch: Patch) -> None:
    uses = {(u.how, u.target.split(":")[1]): u for u in reliance.uses_of_patch(probe_patch)}
    assert ("declared", "Request.is_prefill_chunk") in uses
    assert ("attribute", "Scheduler.waiting") in uses  # read by helper(self, ...)
    assert ("attribute", "Scheduler.running") in uses
    assert ("attribute", "Scheduler.finish_requests") in uses and uses[("attribute", "Scheduler.finish_requests")].receiver == "class"
    assert ("attribute", "Scheduler.policy") in uses  # the wrapper's instance
    assert ("attribute", "sched_module.Scheduler.update_from_output") not in uses
    assert ("attribute", "scheduler.Scheduler.update_from_output") in uses  # through the imported module
    assert ("import", "RequestStatus") in uses and ("attribute", "RequestStatus.WAITING") in uses
    call = uses[("call", "Scheduler.schedule")]
    assert (call.positional, call.receiver, call.text) == (3, "", "original(self, throttle_prefills, RequestStatus.WAITING)")
    assert not any(name.startswith("Scheduler.stored") or name == "Scheduler.anything" for _, name in uses)
    assert not any(name == "Scheduler.add_request" for _, name in uses)  # wrapped(*args, **kwargs) adds nothing
    assert all(u.where.endswith(tuple(f"patch_probe.py:{n}" for n in range(1, 40))) for u in uses.values()
               if u.how != "declared")


def test_declaration_lists_declared_and_derived_relied_on_names(probe_patch: Patch) -> None:
    rows = reliance.rows(probe_patch)
    assert rows[0] == {"target": "vllm.v1.request:Request.is_prefill_chunk", "how": "declared",
                       "where": rows[0]["where"], "text": "PATCH.relies_on('vllm.v1.request:Request.is_prefill_chunk')",
                       "contract": None}
    assert {"how": "attribute", "target": "vllm.v1.core.sched.scheduler:Scheduler.waiting"}.items() <= \
        next(r for r in rows if r["target"].endswith("Scheduler.waiting")).items()


def test_list_json_shows_what_each_patch_relies_on() -> None:

    done = subprocess.run([sys.executable, "-m", "ascend_overlay", "list", "--json", "--no-contracts"],
                          capture_output=True, text=True, timeout=120)
    rows = {row["name"]: row for row in json.loads(done.stdout)["patches"]}
    relied = {r["target"] for r in rows["npu_rms_norm"]["relies_on"]}
    assert "vllm.model_executor.layers.layernorm:RMSNorm.variance_size_override" in relied
    assert all(r["where"].startswith("patches/worker/patch_layernorm.py:") for r in rows["npu_rms_norm"]["relies_on"])


def test_a_source_that_cannot_be_read_costs_the_relied_on_check_nothing(tmp_path: Path) -> None:
    patch = Patch(name="gone", phase="worker", vllm=">=0.32", why="w", remove_when="r")
    patch.file = str(tmp_path / "deleted.py")
    assert reliance.uses_of_patch(patch) == [] and reliance.check_live(patch) == []


def test_relies_on_refuses_a_bad_target_or_a_repeat() -> None:
    patch = Patch(name="p", phase="worker", vllm=">=0.32", why="w", remove_when="r")
    with pytest.raises(PatchDeclarationError, match="must be 'package.module:Attribute.path'"):
        patch.relies_on("vllm.v1.request.Request")
    patch.relies_on("vllm.v1.request:Request.status")
    with pytest.raises(PatchDeclarationError, match="twice"):
        patch.relies_on("vllm.v1.request:Request.status")


def test_overlay_modules_are_found_by_reading_the_package() -> None:
    names = {str(p.relative_to(Path(reliance.__file__).parents[2])) for p in reliance.overlay_modules()}
    assert {"npu/platform.py", "npu/worker.py", "doors/engine_core.py"} <= names
    assert "doors/plugin.py" not in names and not any(n.startswith("main2main/") for n in names)


def test_subclass_overrides_and_reads_are_derived_and_own_names_are_not() -> None:
    uses = reliance.uses_of_module(Path(reliance.__file__).parents[2] / "npu" / "worker.py")
    by_name = {(u.how, u.name) for u in uses}
    assert ("override", "Worker.init_device") in by_name
    assert ("attribute", "Worker.parallel_config") in by_name
    assert ("call", "Worker._init_workspace_and_model_runner") in by_name
    assert ("call", "init_worker_distributed_environment") in by_name
    assert not any(name in ("Worker.device", "Worker.init_snapshot", "Worker.requested_memory") for _, name in by_name)


# -- judged live (apply time) and statically: one verdict -----------------------------------------

def _all_uses() -> list[reliance.Use]:
    uses = [u for p in load_catalog((), entry_points=False).patches for u in reliance.uses_of_patch(p)]
    for module in reliance.overlay_modules():
        uses += reliance.uses_of_module(module)
    return uses


def _as_read_from_source(live: str | None, static: str | None) -> str | None:
    """The live shape with each default the source spells as an expression (``x: int =
    LoadConfig.x``, written ``...`` when read statically) shown the way the source reading shows it."""
    if live is None or static is None or live == static or "(" not in live or "(" not in static:
        return live
    head, params = live[:live.index("(")], split_params(live)
    unread = {p.split("=", 1)[0] for p in split_params(static) if p.endswith("=...")}
    shown = [f"{p.split('=', 1)[0]}=..." if "=" in p and p.split("=", 1)[0] in unread else p for p in params]
    return f"{head}({', '.join(shown)}){live[live.rindex(')') + 1:]}"


def test_live_and_static_lookups_agree_on_every_relied_on_name() -> None:
    pytest.importorskip("vllm")
    from ascend_overlay.core.reliance.live import LiveLookup
    from ascend_overlay.main2main.reliance_static import StaticLookup
    from ascend_overlay.main2main.sources import installed_source
    from ascend_overlay.main2main.tree import StaticTree

    uses = _all_uses()
    static = StaticLookup(StaticTree(installed_source().root))
    live = LiveLookup(import_modules=True)
    pairs = [(reliance.judge(u, static.find(u.module, u.path)), reliance.judge(u, live.find(u.module, u.path)))
             for u in uses]
    assert len(uses) > 60
    assert [(a.use.target, a.status, a.found) for a, _ in pairs] == \
        [(b.use.target, b.status, _as_read_from_source(b.found, a.found)) for a, b in pairs]
    assert not [a.message for a, _ in pairs if a.breaks]
    assert sum(a.status is VerdictStatus.OK for a, _ in pairs) > 0.9 * len(pairs)


@pytest.fixture
def catalog():
    pytest.importorskip("vllm")
    return load_catalog((), entry_points=False)


def test_a_missing_relied_on_name_skips_the_patch_at_apply_time(catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    from vllm.model_executor.layers.rotary_embedding.base import RotaryEmbeddingBase

    patch = catalog.get("npu_rotary_embedding")
    assert applier.precheck(patch).refusal is None
    monkeypatch.delattr(RotaryEmbeddingBase, "_match_cos_sin_cache_dtype")
    refusal = applier.precheck(patch).refusal
    assert refusal is not None and refusal.reason is Reason.MISSING
    assert re.search(r"relies on .*RotaryEmbedding\._match_cos_sin_cache_dtype \(self\._match_cos_sin_cache_dtype\(query\) "
                     r"at patches/worker/patch_rotary_embedding\.py:\d+\)", refusal.text), refusal.text


def test_a_changed_shape_of_a_called_method_is_drift_at_apply_time(catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    from vllm.model_executor.layers.layernorm import RMSNorm

    def forward_native(self, x, residual, scale):
        return x

    monkeypatch.setattr(RMSNorm, "forward_native", forward_native)
    refusal = applier.precheck(catalog.get("npu_rms_norm")).refusal
    assert refusal is not None and refusal.reason is Reason.DRIFT
    assert re.search(r"RMSNorm\.forward_native .*requires `scale`", refusal.text), refusal.text


def test_a_declared_pin_is_checked_at_apply_time(tmp_path: Path) -> None:
    pytest.importorskip("vllm")
    body = '''
        PATCH = Patch(name="pinned", phase="engine_core", vllm=">=0.32", why="w", remove_when="r")
        PATCH.relies_on("vllm.v1.core.sched.scheduler:Scheduler.finish_requests", contract="(self, request_ids)")

        @PATCH.replace("vllm.v1.core.sched.scheduler:Scheduler.has_finished_requests")
        def has_finished_requests(self):
            return False
    '''
    path = tmp_path / "patch_pinned.py"
    path.write_text("from ascend_overlay import Patch\n" + textwrap.dedent(body))
    patch = load_patch_file(path, "test", "reliance_pinned")
    refusal = applier.precheck(patch).refusal
    assert refusal is not None and refusal.reason is Reason.DRIFT
    assert re.search(r"Scheduler\.finish_requests.*pinned \(self, request_ids\) but found", refusal.text), refusal.text


def test_an_import_phase_patch_never_imports_a_module_for_its_relied_on_names(tmp_path: Path) -> None:
    body = '''
        PATCH = Patch(name="lazy", phase="import", vllm=">=0.32", why="w", remove_when="r")
        PATCH.relies_on("reliance_never_imported_pkg:thing")

        @PATCH.replace("json:dumps")
        def dumps(obj, **kw):
            return "x"
    '''
    path = tmp_path / "patch_lazy.py"
    path.write_text("from ascend_overlay import Patch\n" + textwrap.dedent(body))
    patch = load_patch_file(path, "test", "reliance_lazy")
    (verdict,) = reliance.check_live(patch, import_modules=False)
    assert verdict.status == "unverifiable" and "not imported yet" in verdict.detail
    assert "reliance_never_imported_pkg" not in sys.modules
    assert applier.precheck(patch, import_module=True).refusal is None  # import-phase: still never imports it
    assert "reliance_never_imported_pkg" not in sys.modules


@pytest.mark.parametrize("enabled", [True, False])
def test_the_check_pauses_the_garbage_collector_and_restores_its_state(enabled: bool) -> None:
    import gc

    from ascend_overlay.core.reliance import gc_paused

    (gc.enable if enabled else gc.disable)()
    try:
        with pytest.raises(RuntimeError), gc_paused():
            assert not gc.isenabled()
            raise RuntimeError("a failing check")
        assert gc.isenabled() is enabled
    finally:
        gc.enable()


_CLASSES = '''
import functools


def keep(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)
    return wrapper


class Base:
    shadowed = "a class attribute of the base"

    def __init__(self):
        self.from_init = 1
        self.a, (self.b, *self.c) = 1, (2, 3)

    @property
    def size(self):
        return self._size

    @size.setter
    def size(self, value):
        self._size = value


class Child(Base):
    declared_only: int

    def set_up(self):
        self.shadowed = "an instance attribute of the subclass"
        self.counter += 1
        setattr(self, "by_setattr", 1)

        def later():
            self.from_closure = (
                1,
            )
        later()

    @keep
    def decorated(self):
        self.from_decorated = 1

    def annotated_without_value(self):
        self.bare: int

    def only_reads(self):
        return self.never_set

    @staticmethod
    def static(self):
        self.from_static = 1
'''


@pytest.mark.parametrize(("name", "kind"), [
    ("from_init", "instance-attribute"), ("a", "instance-attribute"), ("c", "instance-attribute"),
    ("_size", "instance-attribute"), ("shadowed", "instance-attribute"), ("counter", "instance-attribute"),
    ("by_setattr", "instance-attribute"), ("from_closure", "instance-attribute"),
    ("from_decorated", "instance-attribute"), ("declared_only", "instance-attribute"),
    ("bare", "instance-attribute"), ("size", "attribute"), ("never_set", None), ("from_static", None),
])
def test_the_live_reading_of_instance_attributes_is_the_whole_class_statements(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, kind: str | None) -> None:
    """The live lookup answers most names from the methods that mention them, without parsing the
    file; its verdict must still be the whole reading's, which the static lookup gives."""
    from ascend_overlay.core.reliance import live
    from ascend_overlay.core.reliance.classbody import parse_file
    from ascend_overlay.main2main.reliance_static import StaticLookup
    from ascend_overlay.main2main.tree import StaticTree

    package = f"reliance_probe_{name}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "classes.py").write_text(_CLASSES)
    monkeypatch.syspath_prepend(str(tmp_path))
    whole_file_parses = []
    monkeypatch.setattr(live, "parse_file", lambda path: whole_file_parses.append(path) or parse_file(path))

    hit = live.LiveLookup().find(f"{package}.classes", ("Child", name))
    static = StaticLookup(StaticTree(tmp_path, package)).find(f"{package}.classes", ("Child", name))
    assert (hit.status, hit.kind) == (static.status, static.kind) == (("found", kind) if kind else ("missing", ""))
    if name in ("from_init", "a", "c", "_size", "shadowed", "counter", "by_setattr", "from_closure",
                "from_decorated", "declared_only"):
        assert whole_file_parses == []  # answered from the methods that mention it
