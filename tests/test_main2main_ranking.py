"""``drift`` ranks by relevance to this overlay.

P0: what the overlay edits, or a relied-on name that breaks; P1: a relied-on name that changed but
still holds, and public members of classes the NPU path inherits; other devices' code: P4 on one line.
"""

from __future__ import annotations

import pytest
from main2main_fixtures import NEW, OLD, write_tree

from ascend_overlay.core.reliance import Use
from ascend_overlay.main2main import drift, report_md
from ascend_overlay.main2main.sources import tree_source
from ascend_overlay.main2main.targets import Target

OVERLAY = "ascend_overlay/npu/fake_platform.py"
ROCM = {"vllm/platforms/rocm.py": "def rocm_only(x):\n    return x\n"}
ROCM_NEW = {"vllm/platforms/rocm.py": "def rocm_only(x, stream):\n    return x\n"}


def _use(target: str, how: str, **kw: object) -> Target:
    use = Use(target, how, f"{OVERLAY}:1", "text", "Owner", **kw)
    return Target(target, None, (), "ascend_overlay.npu.fake_platform", OVERLAY, "", "relied-on", use)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> drift.DriftReport:
    root = tmp_path_factory.mktemp("m2m_rank")
    old, new = write_tree(root / "old", {**OLD, **ROCM}), write_tree(root / "new", {**NEW, **ROCM_NEW})
    targets = [
        _use("vllm.worker.base:Worker.load", "call", receiver="instance", positional=1),  # renamed param, still fits
        _use("vllm.worker.base:helper", "call", positional=1),                            # removed
        _use("vllm.worker.base:Worker.execute", "call", receiver="instance", positional=1),  # new required param
        _use("vllm.platforms.interface:Platform.pre_register_and_update", "override", shape="(cls, parser=None)"),
    ]
    return drift.compare(tree_source(old), tree_source(new), targets)


def _entry(report: drift.DriftReport, obj: str) -> drift.Entry:
    return next(e for e in report.entries if e.object == obj)


def test_a_relied_on_name_that_breaks_is_p0_naming_the_overlay_file(report: drift.DriftReport) -> None:
    for obj in ("vllm.worker.base.helper", "vllm.worker.base.Worker.execute"):
        entry = _entry(report, obj)
        assert entry.priority == 0 and entry.patches == [OVERLAY], (obj, entry)
    execute = _entry(report, "vllm.worker.base.Worker.execute")
    assert any("requires `scale`" in d for d in execute.details)  # check's verdict joins griffe's


def test_a_relied_on_name_that_changed_but_holds_is_p1(report: drift.DriftReport) -> None:
    entry = _entry(report, "vllm.worker.base.Worker.load")
    assert entry.priority == 1 and entry.area == "relied on by the overlay" and entry.patches == [OVERLAY]


def test_members_of_an_inherited_class_are_p1_and_other_devices_p4(report: drift.DriftReport) -> None:
    nice = _entry(report, "vllm.platforms.interface.Platform.nice_to_have")
    assert nice.priority == 1 and nice.area == "inherited: Platform" and nice.patches == [OVERLAY]
    rocm = _entry(report, "vllm.platforms.rocm.rocm_only")
    assert rocm.priority == 4
    text = report_md.render(report)
    assert "other devices (CUDA, ROCm, XPU, TPU, CPU kernels and backends): 1 changes in 1 files" in text
    top = text.split("## P0")[1].split("## P2")[0]
    assert top.count("VLLM_ASCEND_FILES:") == len(report.by_priority(0)) + len(report.by_priority(1))
