"""A vLLM plugin as a subject of main2main, and drift's own judgements, on two synthetic vLLM trees.

The trees hold exactly one change per case; the plugin uses each case the way vllm-ascend does
(imports inside functions, version lanes, guards, subclasses, assignment patches, register_oot).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ascend_overlay.main2main import drift, report_md
from ascend_overlay.main2main.check import run_check
from ascend_overlay.main2main.sources import tree_source
from ascend_overlay.main2main.subjects import SubjectError, plugin_subject

CLI = [sys.executable, "-m", "ascend_overlay"]


@dataclasses.dataclass
class InitVarConfig:
    """A class of this file (the live reading reads a class statement from its module's source)."""

    max_model_len: dataclasses.InitVar[int]
    max_num_seqs: int = 8

OLD = {
    "vllm/__init__.py": "",
    "vllm/_version.py": "__version__ = '2.0.0'\n",
    "vllm/model_executor/__init__.py": "",
    "vllm/model_executor/custom_op.py": """
        class CustomOp:
            def forward_oot(self, *args, **kwargs):
                return None

            @classmethod
            def register_oot(cls, _decorated_op_cls=None, name=None):
                return _decorated_op_cls
        """,
    "vllm/model_executor/layers/__init__.py": "",
    "vllm/model_executor/layers/layernorm.py": """
        from vllm.model_executor.custom_op import CustomOp


        class RMSNorm(CustomOp):
            def __init__(self, hidden_size, eps=1e-6):
                self.hidden_size = hidden_size

            def forward_native(self, x, residual=None):
                return x
        """,
    "vllm/model_executor/layers/fused_moe/__init__.py": "",
    "vllm/model_executor/layers/fused_moe/layer.py": """
        __all__ = ["FusedMoE"]


        class FusedMoE:
            def __init__(self, config, parallel_config, model):
                self.config = config

            def forward(self, x):
                return x

            def _maybe_reduce_final_output(self, x):
                return x


        def determine_expert_map(ep_size, ep_rank, global_num_experts):
            return None
        """,
    "vllm/v1/__init__.py": "",
    "vllm/v1/request.py": """
        import enum


        class RequestStatus(enum.Enum):
            WAITING = 1
            WAITING_FOR_FSM = 2
        """,
    "vllm/v1/worker/__init__.py": "",
    "vllm/v1/worker/gpu/__init__.py": "",
    "vllm/v1/worker/gpu/cudagraph_utils.py": """
        class CudaGraphManager:
            def capture(self, model):
                return model
        """,
    "vllm/v1/worker/gpu_model_runner.py": """
        class GPUModelRunner:
            def __init__(self, vllm_config, device):
                self.vllm_config = vllm_config

            def execute_model(self, scheduler_output):
                return self._prepare(scheduler_output)

            def _prepare(self, scheduler_output):
                return scheduler_output

            def sample(self, logits) -> tuple[int, int]:
                return 0, 0
        """,
    "vllm/distributed/__init__.py": "from .parallel_state import *\n",
    "vllm/distributed/parallel_state.py": """
        def get_tp_group():
            return None


        def old_helper():
            return None
        """,
}

NEW = {
    **OLD,
    "vllm/_version.py": "__version__ = '2.1.0'\n",
    # RequestStatus.WAITING_FOR_FSM renamed
    "vllm/v1/request.py": """
        import enum


        class RequestStatus(enum.Enum):
            WAITING = 1
            WAITING_FOR_STRUCTURED_OUTPUT_GRAMMAR = 2
        """,
    # determine_expert_map removed (not in __all__: griffe does not call it public); __init__ reshaped;
    # the private method renamed
    "vllm/model_executor/layers/fused_moe/layer.py": """
        __all__ = ["FusedMoE"]


        class FusedMoE:
            def __init__(self, config, vllm_config, device, model):
                self.config = config

            def forward(self, x):
                return x

            def _reduce_output(self, x):
                return x
        """,
    # the return tuple grew; a CUDA-graph utility changed its method's signature
    "vllm/v1/worker/gpu_model_runner.py": """
        class GPUModelRunner:
            def __init__(self, vllm_config, device):
                self.vllm_config = vllm_config

            def execute_model(self, scheduler_output):
                return self._prepare(scheduler_output)

            def _prepare(self, scheduler_output):
                return scheduler_output

            def sample(self, logits) -> tuple[int, int, int]:
                return 0, 0, 0
        """,
    "vllm/v1/worker/gpu/cudagraph_utils.py": """
        class CudaGraphManager:
            def capture(self, model, batch_sizes):
                return model
        """,
    "vllm/distributed/parallel_state.py": """
        def get_tp_group():
            return None
        """,
}

PLUGIN = {
    "my_plugin/__init__.py": "",
    "my_plugin/utils.py": """
        def vllm_version_is(version):
            return False
        """,
    "my_plugin/scheduler.py": """
        from vllm.v1.request import RequestStatus

        from my_plugin.utils import vllm_version_is


        def waiting(request):
            return request.status == RequestStatus.WAITING_FOR_FSM


        if vllm_version_is("2.0.0"):
            from vllm.distributed import old_helper
        else:
            from vllm.distributed import get_tp_group as old_helper
        """,
    "my_plugin/moe.py": """
        from vllm.model_executor.layers.fused_moe.layer import FusedMoE


        class AscendFusedMoE(FusedMoE):
            def __init__(self, config, parallel_config, model):
                super().__init__(config, parallel_config, model)

            def _maybe_reduce_final_output(self, x):
                return x

            def own_helper(self):
                return 1


        def experts():
            from vllm.model_executor.layers.fused_moe.layer import determine_expert_map
            return determine_expert_map(1, 0, 8)
        """,
    "my_plugin/runner.py": """
        from vllm.v1.worker.gpu.cudagraph_utils import CudaGraphManager
        from vllm.v1.worker.gpu_model_runner import GPUModelRunner


        class NPUModelRunner(GPUModelRunner):
            def step(self, logits):
                token, logprob = self.sample(logits)
                return token, logprob


        class AclGraphManager(CudaGraphManager):
            def capture(self, model):
                return model
        """,
    "my_plugin/ops.py": """
        import vllm.model_executor.layers.layernorm
        from vllm.model_executor.custom_op import CustomOp
        from vllm.model_executor.layers.layernorm import RMSNorm

        try:
            from vllm.model_executor.layers.layernorm import GemmaRMSNorm
        except ImportError:
            GemmaRMSNorm = None


        def forward_oot(self, x, residual=None):
            return x


        RMSNorm.forward_oot = forward_oot
        vllm.model_executor.layers.layernorm.RMSNorm.extra = 1
        setattr(RMSNorm, "forward_native", forward_oot)
        CustomOp.register_oot(_decorated_op_cls=object, name="RMSNorm")
        CustomOp.register_oot(_decorated_op_cls=object, name="NoSuchOp")
        if hasattr(RMSNorm, "fused"):
            RMSNorm.fused(1)
        """,
}


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("plugin_world")
    paths = {"old": base / "old", "new": base / "new", "plugin": base / "src" / "my_plugin"}
    _write(paths["old"], OLD)
    _write(paths["new"], NEW)
    _write(base / "src", PLUGIN)
    return paths


@pytest.fixture(scope="module")
def report(world: dict[str, Path]) -> drift.DriftReport:
    subject = plugin_subject(world["plugin"])
    return drift.compare(tree_source(world["old"]), tree_source(world["new"]), subject.targets, subject="plugin")


def _rows(world: dict[str, Path], version: str) -> list[dict]:
    subject = plugin_subject(world["plugin"])
    return run_check(tree_source(world[version]), subject.targets, ignore_ranges=True).rows()


def _row(rows: list[dict], name: str, **match: object) -> dict:
    found = [r for r in rows if r["name"] == name and all(r[k] == v for k, v in match.items())]
    assert found, f"no row for {name} {match}: {sorted({r['name'] for r in rows})}"
    return found[0]


def test_plugin_rows_name_the_vllm_name_file_line_use_and_why(world: dict[str, Path]) -> None:
    rows = _rows(world, "new")
    row = _row(rows, "vllm.v1.request:RequestStatus.WAITING_FOR_FSM")
    assert row["status"] == "missing" and row["breaks"]
    assert (row["file"], row["line"]) == ("my_plugin/scheduler.py", 7)
    assert row["use"]["how"] == "attribute" and "WAITING_FOR_FSM" in row["because"]
    assert set(row) >= {"name", "status", "breaks", "file", "line", "use", "lane", "because"}


def test_import_inside_a_function_is_read_and_breaks_when_removed(world: dict[str, Path]) -> None:
    row = _row(_rows(world, "new"), "vllm.model_executor.layers.fused_moe.layer:determine_expert_map",
               line=16)
    assert row["breaks"] and row["file"] == "my_plugin/moe.py"


def test_a_use_in_the_old_lane_breaks_and_says_delete_the_lane(world: dict[str, Path]) -> None:
    rows = _rows(world, "new")
    old_lane = _row(rows, "vllm.distributed:old_helper", use={"how": "import",
                                                               "text": "from vllm.distributed import old_helper"})
    assert old_lane["breaks"] and old_lane["lane"] == "vllm_version_is('2.0.0')"
    assert "deleting the lane is the adaptation" in old_lane["because"]
    new_lane = _row(rows, "vllm.distributed:get_tp_group")
    assert new_lane["status"] == "ok" and new_lane["lane"] == "not vllm_version_is('2.0.0')"


def test_guarded_uses_are_listed_not_breaks(world: dict[str, Path]) -> None:
    rows = _rows(world, "new")
    tried = _row(rows, "vllm.model_executor.layers.layernorm:GemmaRMSNorm")
    probed = _row(rows, "vllm.model_executor.layers.layernorm:RMSNorm.fused", use={"how": "call",
                                                                                  "text": "RMSNorm.fused(1)"})
    for row in (tried, probed):
        assert row["status"] == "guarded" and not row["breaks"] and row["guard"]


def test_assignment_patches_setattr_and_register_oot_are_judged(world: dict[str, Path]) -> None:
    rows = _rows(world, "new")
    patch = _row(rows, "vllm.model_executor.layers.layernorm:RMSNorm.forward_oot", use={
        "how": "patch", "text": "RMSNorm.forward_oot = forward_oot"})
    assert patch["status"] == "ok"  # the inherited pass-through slot takes any shape
    added = _row(rows, "vllm:model_executor.layers.layernorm.RMSNorm.extra")
    assert added["status"] == "missing"  # a patch target must exist
    setattr_row = _row(rows, "vllm.model_executor.layers.layernorm:RMSNorm.forward_native",
                       use={"how": "patch", "text": "setattr(RMSNorm, 'forward_native', forward_oot)"})
    assert setattr_row["status"] == "ok"
    oot = [r for r in rows if r["use"]["how"] == "register_oot"]
    assert {r["status"] for r in oot} == {"ok", "missing"}
    assert "NoSuchOp" in next(r for r in oot if r["status"] == "missing")["because"]


def test_overrides_super_calls_and_unpacking_in_check(world: dict[str, Path]) -> None:
    rows = _rows(world, "new")
    init = _row(rows, "vllm.model_executor.layers.fused_moe.layer:FusedMoE.__init__", use={
        "how": "override", "text": "AscendFusedMoE.__init__(self, config, parallel_config, model)"})
    assert init["status"] == "drift" and "vllm_config" in init["because"]
    call = _row(rows, "vllm.model_executor.layers.fused_moe.layer:FusedMoE.__init__", use={
        "how": "call", "text": "super().__init__(config, parallel_config, model)"})
    assert call["status"] == "drift" and "model" in call["because"]
    unpack = _row(rows, "vllm.v1.worker.gpu_model_runner:GPUModelRunner.sample")
    assert unpack["status"] == "drift" and "unpacks 2" in unpack["because"]
    own = _row(rows, "vllm.model_executor.layers.fused_moe.layer:FusedMoE.own_helper")
    assert own["status"] == "own" and not own["breaks"]
    assert all(r["status"] == "ok" for r in _rows(world, "old") if r["name"].endswith(("sample", "__init__")))


def test_drift_plugin_p0_are_the_plugins_breaks_with_files_and_lines(report: drift.DriftReport) -> None:
    p0 = {e.object: e for e in report.by_priority(0)}
    expected = {
        "vllm.v1.request.RequestStatus.WAITING_FOR_FSM": "my_plugin/scheduler.py:7",
        "vllm.model_executor.layers.fused_moe.layer.determine_expert_map": "my_plugin/moe.py:16",
        "vllm.model_executor.layers.fused_moe.layer.FusedMoE._maybe_reduce_final_output": "my_plugin/moe.py:8",
        "vllm.v1.worker.gpu_model_runner.GPUModelRunner.sample": "my_plugin/runner.py:7",
        "vllm.distributed.old_helper": "my_plugin/scheduler.py:11",
    }
    for name, where in expected.items():
        assert name in p0, f"{name} not P0: {sorted(p0)}"
        assert where in p0[name].patches and p0[name].confirmed
    assert "vllm.distributed.get_tp_group" not in p0  # holds in NEW: the new lane is fine
    assert "AttributeError" in p0["vllm.v1.request.RequestStatus.WAITING_FOR_FSM"].impact
    assert "ImportError" in p0["vllm.distributed.old_helper"].impact
    assert "delete the lane" in p0["vllm.distributed.old_helper"].impact
    assert "no longer calls" in p0["vllm.model_executor.layers.fused_moe.layer.FusedMoE._maybe_reduce_final_output"].impact
    text = report_md.render(report)
    assert text.startswith("# vLLM Changes Relevant to vLLM Ascend")
    assert "## P0 - Breaking Changes (Must Adapt)" in text
    assert "  - my_plugin/moe.py (lines " in text or "  - my_plugin/moe.py (line " in text


def test_removals_griffe_skips_are_reported(report: drift.DriftReport) -> None:
    removed = [e for e in report.entries if e.object.endswith("determine_expert_map")]
    assert removed and removed[0].change in ("removed", "moved")


def test_init_change_is_judged_for_callers_and_subclasses_separately(report: drift.DriftReport) -> None:
    entry = next(e for e in report.entries if e.object == "vllm.model_executor.layers.fused_moe.layer.FusedMoE.__init__")
    assert entry.priority == 0
    text = " ".join(entry.details)
    assert "callers:" in text and "subclasses:" in text


def test_private_methods_a_subject_overrides_are_compared(report: drift.DriftReport) -> None:
    names = {e.object for e in report.entries}
    assert "vllm.model_executor.layers.fused_moe.layer.FusedMoE._maybe_reduce_final_output" in names
    assert "vllm.v1.worker.gpu_model_runner.GPUModelRunner._prepare" not in names  # unchanged


def test_return_annotations_are_compared(report: drift.DriftReport) -> None:
    entry = next(e for e in report.entries if e.object == "vllm.v1.worker.gpu_model_runner.GPUModelRunner.sample")
    assert any("tuple[int, int, int]" in d for d in entry.details)


def test_cuda_graph_utilities_are_ranked_by_relevance_not_by_name(world: dict[str, Path],
                                                                  report: drift.DriftReport) -> None:
    entry = next(e for e in report.entries if e.object == "vllm.v1.worker.gpu.cudagraph_utils.CudaGraphManager.capture")
    assert entry.priority <= 1 and "my_plugin/runner.py" in " ".join(entry.patches)
    alone = drift.compare(tree_source(world["old"]), tree_source(world["new"]), [])
    entry = next(e for e in alone.entries if e.object.endswith("CudaGraphManager.capture"))
    assert entry.priority == 2  # a breaking change to public API, not another device's code


def test_bad_plugin_dirs_get_one_line_and_exit_2(world: dict[str, Path], tmp_path: Path) -> None:
    not_package = tmp_path / "loose"
    not_package.mkdir()
    (not_package / "a.py").write_text("import vllm\n")
    no_vllm = tmp_path / "quiet"
    no_vllm.mkdir()
    (no_vllm / "__init__.py").write_text("import os\n")
    for directory, words in ((not_package, "not a Python package"), (no_vllm, "imports vLLM")):
        with pytest.raises(SubjectError, match=words):
            plugin_subject(directory)
        done = subprocess.run([*CLI, "check", "--plugin", str(directory), "--vllm", str(world["new"])],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and words in done.stderr


def test_a_file_that_does_not_parse_is_listed_and_the_rest_checked(world: dict[str, Path], tmp_path: Path) -> None:
    plugin = tmp_path / "half" / "my_plugin"
    _write(tmp_path / "half", PLUGIN)
    (plugin / "broken.py").write_text("import vllm\ndef f(:\n")
    done = subprocess.run([*CLI, "check", "--plugin", str(plugin), "--vllm", str(world["new"]), "--json"],
                          capture_output=True, text=True, timeout=120)
    data = json.loads(done.stdout)
    assert done.returncode == 1
    assert any(p.startswith("my_plugin/broken.py:2") for p in data["problems"])
    assert any(r["name"] == "vllm.v1.request:RequestStatus.WAITING_FOR_FSM" for r in data["rows"])


def test_baseline_keeps_only_what_the_new_version_breaks(world: dict[str, Path]) -> None:
    done = subprocess.run([*CLI, "check", "--plugin", str(world["plugin"]), "--vllm", str(world["new"]),
                           "--baseline", str(world["old"]), "--json"], capture_output=True, text=True, timeout=120)
    rows = json.loads(done.stdout)["rows"]
    assert not _row(rows, "vllm:model_executor.layers.layernorm.RMSNorm.extra")["breaks"]  # broken in both
    assert _row(rows, "vllm.v1.request:RequestStatus.WAITING_FOR_FSM")["breaks"]


def test_cli_drift_plugin_default_is_short_and_all_is_whole(world: dict[str, Path], tmp_path: Path) -> None:
    short, whole = tmp_path / "short.md", tmp_path / "whole.md"
    base = [*CLI, "drift", str(world["old"]), str(world["new"]), "--plugin", str(world["plugin"])]
    done = subprocess.run([*base, "-o", str(short)], capture_output=True, text=True, timeout=300)
    subprocess.run([*base, "-o", str(whole), "--all"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "P0 vllm.v1.request.RequestStatus.WAITING_FOR_FSM" in done.stdout
    assert done.stderr == ""  # piped: no progress drawn
    assert "P2 - Moderate Changes" not in short.read_text() and "--all" in short.read_text()
    assert "P2 - Moderate Changes" in whole.read_text()


def test_a_patch_whose_range_excludes_new_is_retired_not_p0(world: dict[str, Path]) -> None:
    from ascend_overlay.main2main.targets import Target

    target = "vllm.distributed.parallel_state:old_helper"
    retired = Target(target, "()", (), "legacy_helper", "patches/worker/patch_legacy.py", "<2.1", "patch")
    current = Target(target, "()", (), "helper", "patches/worker/patch_helper.py", ">=2.0", "patch")
    report = drift.compare(tree_source(world["old"]), tree_source(world["new"]), [retired])
    assert not report.by_priority(0) and report.retired == ["legacy_helper (vllm<2.1)"]
    assert not report.confirmed_p0  # so drift exits 0
    report = drift.compare(tree_source(world["old"]), tree_source(world["new"]), [current])
    assert [e.patch_names for e in report.confirmed_p0] == [["helper"]]


def test_the_evaluation_figures_the_docs_quote_are_the_recorded_run() -> None:
    """docs/main2main.md's evaluation table is generated from tests/data/main2main_eval_result.json
    (``make eval-main2main`` writes both): never typed by hand."""
    from ascend_overlay.main2main import evaluation

    result = json.loads(evaluation.RESULT.read_text(encoding="utf-8"))
    quoted = evaluation.docs_table(evaluation.DOCS.read_text(encoding="utf-8"))
    assert quoted == evaluation.render_table(result)
    assert result["recall"] >= 0.9 and result["false_alarm_rate"] <= 0.1


def test_a_dataclass_initvar_is_not_an_instance_attribute() -> None:
    """``max_model_len: InitVar[int]`` is an ``__init__`` parameter: reading it on an instance fails,
    so neither the static nor the live reading may call it present."""
    import ast

    from ascend_overlay.core.reliance.classbody import instance_attributes
    from ascend_overlay.core.reliance.live import _surely_gives_instances

    source = textwrap.dedent("""
        from dataclasses import InitVar, dataclass

        @dataclass
        class SchedulerConfig:
            max_model_len: InitVar[int]
            max_num_seqs: int = 8
        """)
    node = ast.parse(source).body[1]
    assert isinstance(node, ast.ClassDef)
    assert instance_attributes(node) == frozenset({"max_num_seqs"})

    assert not _surely_gives_instances(InitVarConfig, "max_model_len")
    assert _surely_gives_instances(InitVarConfig, "max_num_seqs")


class _Stream:
    """A stream that says whether it is a terminal, and keeps what is written to it."""

    def __init__(self, tty: bool) -> None:
        self.tty, self.written = tty, []

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> int:
        self.written.append(text)
        return len(text)

    def flush(self) -> None:
        return None


@pytest.mark.parametrize("tty", [True, False])
def test_progress_is_drawn_on_a_terminal_only(tty: bool) -> None:
    from ascend_overlay.main2main.progress import Progress

    stream = _Stream(tty)
    with Progress(stream) as say:
        say("comparing 120 changed modules")
    drawn = "".join(stream.written)
    assert ("comparing 120 changed modules" in drawn) is tty
    assert bool(drawn) is tty
