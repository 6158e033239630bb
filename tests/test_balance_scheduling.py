"""Balance scheduling (patches/engine_core/patch_core.py): the data-parallel admission gate.

The gate's scheduler half is driven here on vLLM's real ``Scheduler`` with the counts the DP engine
core would have gathered; the gather itself, across real DP engine cores, is proven end to end in
tests/test_e2e_data_parallel.py.
"""

from __future__ import annotations

import sys

import pytest
from scheduler_harness import build_scheduler, request, step

from ascend_overlay.core import applier
from ascend_overlay.core.catalog import load_catalog

CATALOG = load_catalog(entry_points=False)
PATCH = CATALOG.get("balance_scheduling")


@pytest.fixture(scope="module")
def rule():
    return sys.modules[PATCH.edits[0].value.__module__]


@pytest.fixture
def applied():
    done = applier.apply(PATCH)
    yield
    done.undo()


@pytest.fixture
def scheduler(tiny_model, vllm_config):
    return build_scheduler(tiny_model, max_num_seqs=2, max_num_batched_tokens=64)


def test_declaration() -> None:
    assert PATCH.phase.value == "engine_core" and PATCH.default is False
    assert PATCH.targets == ("vllm.v1.engine.core:DPEngineCoreProc._has_global_unfinished_reqs",
                             "vllm.v1.core.sched.scheduler:Scheduler.schedule")
    assert [v.name for v in PATCH.variables] == ["VLLM_ASCEND_OVERLAY_BALANCE_STATS"]


def test_the_rule_is_equality_with_capacity(rule) -> None:
    assert rule.admission_frozen((2, 0), 2)
    assert rule.admission_frozen((0, 2, 1), 2)
    assert not rule.admission_frozen((1, 1), 2)
    assert not rule.admission_frozen((), 2)


def test_a_rank_at_capacity_freezes_admission_here(rule, applied, scheduler) -> None:
    from vllm.v1.core.sched.interface import PauseState

    scheduler.add_request(request("running", 4, 50))
    assert step(scheduler) == {"running": 4}
    scheduler.add_request(request("new", 4, 5))
    setattr(scheduler, rule.COUNTS_ATTR, (1, 2))  # the other DP rank is full
    for _ in range(3):
        assert step(scheduler) == {"running": 1}, "a new request was admitted during the freeze"
        assert scheduler.pause_state == PauseState.UNPAUSED, "the gate's pause leaked out of schedule()"
    setattr(scheduler, rule.COUNTS_ATTR, (1, 1))  # the full rank finished one: admission resumes
    assert step(scheduler) == {"running": 1, "new": 4}


def test_an_operators_pause_is_left_alone(rule, applied, scheduler) -> None:
    from vllm.v1.core.sched.interface import PauseState

    scheduler.add_request(request("running", 4, 50))
    step(scheduler)
    scheduler.set_pause_state(PauseState.PAUSED_ALL)
    setattr(scheduler, rule.COUNTS_ATTR, (2, 2))
    assert step(scheduler) == {}
    assert scheduler.pause_state == PauseState.PAUSED_ALL


def test_without_a_gather_the_scheduler_is_stock(tiny_model, vllm_config) -> None:
    """One engine core (no DP) never gathers: every decision is vLLM's own."""

    def run() -> list[dict[str, int]]:
        scheduler = build_scheduler(tiny_model, max_num_seqs=2, max_num_batched_tokens=64)
        for i in range(5):
            scheduler.add_request(request(f"r{i}", 10 + 20 * i, 3 + i))
        steps = []
        while scheduler.has_requests():
            steps.append(step(scheduler))
        return steps

    stock = run()
    done = applier.apply(PATCH)
    try:
        assert run() == stock
    finally:
        done.undo()
