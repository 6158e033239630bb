"""Against the real sources of vLLM 0.32.0 and 0.33.0 (wheels fetched once into the cache).

Skipped, with the download error as the reason, when the registry cannot be reached; the synthetic
tests cover every exact case without it. The expectations are changes known from reading the two
wheels (see shared/VLLM_FACTS.md), not numbers copied from a previous run.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from ascend_overlay.main2main import drift, report_md
from ascend_overlay.main2main.check import Checker, run_check
from ascend_overlay.main2main.sources import FetchError, VllmSource, resolve_source
from ascend_overlay.main2main.targets import Target, overlay_targets
from ascend_overlay.main2main.tree import StaticTree

pytestmark = pytest.mark.network

WORKER_METHOD = "vllm.v1.worker.worker_base:WorkerBase.set_kv_cache_layout"
PROBE_FILE = "patches/worker/patch_probe_kv_layout.py"


@pytest.fixture(scope="module")
def real_sources() -> tuple[VllmSource, VllmSource]:
    try:
        return resolve_source("0.32.0"), resolve_source("0.33.0")
    except FetchError as exc:
        pytest.skip(f"cannot fetch the vLLM 0.32.0/0.33.0 wheels (registry unreachable?): {exc}")


@pytest.fixture(scope="module")
def probe(real_sources: tuple[VllmSource, VllmSource]) -> Target:
    """A patch pinned to the worker method as it was in 0.32.0 (pin read from that tree)."""
    pin = Checker(StaticTree(real_sources[0].root)).locate(
        Target(WORKER_METHOD, None, (), "probe", PROBE_FILE, "", "patch"))[1]
    assert pin is not None and pin.startswith("(self, kv_cache_layout")
    return Target(WORKER_METHOD, pin, (), "probe_kv_layout", PROBE_FILE, ">=0.32", "patch")


@pytest.fixture(scope="module")
def api_items(real_sources: tuple[VllmSource, VllmSource], probe: Target) -> list[dict]:
    """The comparison of the two trees, done once for both reports below."""
    return drift.api_items(*real_sources, drift.relevant_private(overlay_targets()[0] + [probe]))


@pytest.fixture(scope="module")
def report(real_sources: tuple[VllmSource, VllmSource], probe: Target, api_items: list[dict]) -> drift.DriftReport:
    targets = overlay_targets()[0] + [probe]
    return drift.compare(real_sources[0], real_sources[1], targets, api_items=copy.deepcopy(api_items))


@pytest.fixture(scope="module")
def own_report(real_sources: tuple[VllmSource, VllmSource], api_items: list[dict]) -> drift.DriftReport:
    """The overlay as it is, without the probe: what ``ascend-overlay drift 0.32.0 0.33.0`` reports."""
    return drift.compare(real_sources[0], real_sources[1], overlay_targets()[0], api_items=copy.deepcopy(api_items))


def test_sources_carry_version_and_commit(real_sources: tuple[VllmSource, VllmSource]) -> None:
    old, new = real_sources
    assert (old.version, new.version) == ("0.32.0", "0.33.0")
    assert old.commit and new.commit and old.commit != new.commit


def test_hook_points_survive_in_0_33(real_sources: tuple[VllmSource, VllmSource]) -> None:
    targets = [t for t in overlay_targets()[0] if t.role in ("hook", "relied-on")]
    report = run_check(real_sources[1], targets)
    # A patch whose range excludes 0.33 (the legacy Ray executor's, a module 0.33 removed) is not judged.
    judged = [r for r in report.results if r.applies]
    assert judged and all(r.status == "ok" for r in judged), [(r.target.target, r.detail)
                                                              for r in judged if r.status != "ok"]
    assert {r.target.patch for r in report.results if not r.applies} == {"ray_workers_overlay_legacy"}


def test_pinned_worker_method_breaks_in_0_33(real_sources: tuple[VllmSource, VllmSource], probe: Target) -> None:
    result = run_check(real_sources[1], [probe]).results[0]
    assert result.status == "drift" and result.breaks
    assert "new required cp_kv_cache_interleave_size" in result.detail


def test_drift_ranks_the_known_changes(report: drift.DriftReport) -> None:
    by_object = {e.object: e for e in report.entries}
    worker = by_object["vllm.v1.worker.worker_base.WorkerBase.set_kv_cache_layout"]
    assert worker.priority == 0 and PROBE_FILE in worker.patches
    assert any("new required parameter `cp_kv_cache_interleave_size`" in d for d in worker.details)
    added = by_object["vllm.platforms.interface.Platform.get_kv_cache_config_builder_cls"]
    assert added.priority == 1 and added.change == "added"
    # 0.33 removed the legacy Ray executor, which a patch for 0.32 (range <0.33) edits: its range
    # already retires it, so it is listed as retired, never P0.
    removed = by_object["vllm.v1.executor.ray_executor"]
    assert removed.change in ("removed", "moved") and removed.priority > 1 and not removed.patch_names
    assert [r.split(" (")[0] for r in report.retired] == ["ray_workers_overlay_legacy"]
    moved = [e for e in report.entries if e.file.startswith("vllm/entrypoints/") and e.change == "moved"]
    assert moved, "0.33 moved modules under vllm/entrypoints/ without shims"
    assert any(e.priority == 3 for e in report.entries if e.file.startswith("vllm/model_executor/models/"))


def test_drift_counts_match_the_trees(report: drift.DriftReport) -> None:
    old_files = {str(p.relative_to(report.old.root)) for p in (report.old.root / "vllm").rglob("*.py")}
    new_files = {str(p.relative_to(report.new.root)) for p in (report.new.root / "vllm").rglob("*.py")}
    assert set(report.files.added) == new_files - old_files
    assert set(report.files.removed) == old_files - new_files
    assert report.files.modified and set(report.files.modified) <= old_files & new_files


def test_every_p0_names_a_patch_and_the_markdown_renders(report: drift.DriftReport) -> None:
    assert report.by_priority(0)
    assert all(e.patches for e in report.by_priority(0))
    text = report_md.render(report)
    assert text.startswith("# vLLM changes: 0.32.0 -> 0.33.0")
    assert PROBE_FILE in text.split("## P0")[1].split("## P1")[0]


# -- a report a reviewer can read --------------------------------------------------------

def test_p0_and_p1_are_short_and_each_names_the_overlay_file(report: drift.DriftReport) -> None:
    top = report.by_priority(0) + report.by_priority(1)
    assert 0 < len(top) < 60, [e.object for e in top]
    assert all(e.patches for e in top), [e.object for e in top if not e.patches]
    text = report_md.render(report)
    section = text.split("## P0")[1].split("## P2")[0]
    assert section.count("VLLM_ASCEND_FILES:") == len(top)


def test_p1_is_what_the_npu_path_inherits_not_other_devices(report: drift.DriftReport) -> None:
    from ascend_overlay.main2main.priorities import is_other_device

    p1 = report.by_priority(1)
    assert not [e.object for e in p1 if is_other_device(e.file)]  # no FlashInfer, MLA, ROCm... up there
    assert not [e.object for e in p1 if "flashinfer" in e.object.lower() or ".mla" in e.object.lower()]
    by_object = {e.object: e for e in p1}
    platform = by_object["vllm.platforms.interface.Platform.get_kv_cache_config_builder_cls"]
    assert "ascend_overlay/npu/platform.py" in platform.patches
    worker = by_object["vllm.v1.worker.gpu_worker.Worker.profile"]  # inherited by NPUWorker
    assert worker.patches == ["ascend_overlay/npu/worker.py"]
    other = [e for e in report.by_priority(4) if is_other_device(e.file)]
    assert len(other) > 50  # still there, counted on one line
    assert "on no NPU code path" in report_md.render(report).split("## P4")[1]


def test_no_relied_on_change_is_ranked_below_p1(report: drift.DriftReport) -> None:
    relied = {".".join((t.module, *t.path)) for t in overlay_targets()[0] if t.use is not None
              and (not t.vllm_spec or Version("0.33.0") in SpecifierSet(t.vllm_spec))}
    low = [(e.object, e.priority) for e in report.entries if e.object in relied and e.priority > 1]
    assert low == []
    for result in report.new_targets:
        if result.target.use is not None and Version("0.33.0") in SpecifierSet(result.target.vllm_spec):
            assert result.status in ("ok", "unverifiable"), (result.target.target, result.detail)


def test_the_overlays_own_drift_has_no_p0_and_exits_0(own_report: drift.DriftReport) -> None:
    assert own_report.by_priority(0) == [] and own_report.confirmed_p0 == []
    assert [r.split(" (")[0] for r in own_report.retired] == ["ray_workers_overlay_legacy"]
    top = own_report.by_priority(0) + own_report.by_priority(1)
    assert len(top) < 60


def test_the_counts_docs_quote_are_those_of_a_run(own_report: drift.DriftReport) -> None:
    """docs/main2main.md quotes drift 0.32.0 -> 0.33.0 between markers; a run must give the same."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "main2main.md").read_text(encoding="utf-8")
    quoted = re.search(r"<!-- counts: drift 0.32.0 0.33.0 -->(.*?)<!-- /counts -->", text, re.S)
    assert quoted, "docs/main2main.md lost its generated counts block"
    assert quoted.group(1).strip() == counts_line(own_report), f"stale: the run gives {counts_line(own_report)!r}"


def counts_line(report: drift.DriftReport) -> str:
    entries = report.counts()["entries"]
    return ", ".join(f"{k} {v}" for k, v in entries.items()) + f"; retired by range: {len(report.retired)}"
