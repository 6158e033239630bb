"""Prefill throttle (patches/engine_core/patch_scheduler.py).

In-process tests drive vLLM's real ``Scheduler`` step by step (the model's output is a fixed token:
scheduling does not depend on its value), with and without the patch, on one workload of long
prompts arriving while short ones decode. The e2e test runs real vLLM on CPU twice and compares.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from scheduler_harness import build_scheduler, request, step

from ascend_overlay.core import applier
from ascend_overlay.core.catalog import load_catalog
from ascend_overlay.core.errors import ConfigError

THRESHOLD_VAR = "VLLM_ASCEND_OVERLAY_PREFILL_THROTTLE_THRESHOLD"
STATS_VAR = "VLLM_ASCEND_OVERLAY_PREFILL_THROTTLE_STATS"
MAX_HOLD_VAR = "VLLM_ASCEND_OVERLAY_PREFILL_THROTTLE_MAX_HOLD"


@pytest.fixture(scope="module")
def patch():
    catalog = load_catalog(entry_points=False)
    found = catalog.get("prefill_throttle")
    assert found is not None
    return found


@pytest.fixture(scope="module")
def rule(patch):
    """The patch file's module: its threshold parser and step classifier are what is tested."""
    return sys.modules[patch.edits[0].value.__module__]


def test_declaration(patch):
    assert patch.phase.value == "engine_core" and patch.default is False and patch.requires == ()
    assert patch.vllm == ">=0.32,<0.34" and patch.targets == ("vllm.v1.core.sched.scheduler:Scheduler.schedule",)
    assert THRESHOLD_VAR in patch.why


# -- configuration -------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,value", [("", None), ("  ", None), ("4", 4), (" 0 ", 0), ("64", 64)])
def test_threshold_accepted(rule, raw, value):
    assert rule.read_threshold({THRESHOLD_VAR: raw}) == value
    assert rule.read_threshold({}) is None


@pytest.mark.parametrize("raw", ["-1", "four", "2.5", "1e3"])
def test_threshold_refused_with_the_variable_named(rule, raw):
    with pytest.raises(ConfigError) as info:
        rule.read_threshold({THRESHOLD_VAR: raw})
    message = str(info.value)
    assert message.startswith(f"{THRESHOLD_VAR}={raw!r} is not valid") and "integer >= 0" in message


def test_default_threshold(rule):
    # Below 4 sequences the default never holds: T = 1 would run an engine of 2-3 slots one request at a time.
    assert [rule.default_threshold(n) for n in (1, 2, 3, 4, 8, 9, 256)] == [None, None, None, 2, 4, 4, 128]


def test_bad_configuration_skips_the_patch_alone_and_leaves_vllm_stock(patch, monkeypatch, tmp_path):
    from vllm.v1.core.sched.scheduler import Scheduler

    from ascend_overlay.core.catalog import load_catalog
    from ascend_overlay.core.runtime import Overlay
    from ascend_overlay.core.settings import Settings

    original = Scheduler.schedule
    overlay = Overlay(Settings(enabled=True, enable=("prefill_throttle",), log_level="off"),
                      catalog=load_catalog(entry_points=False, hooks=False))
    for variable, value in ((THRESHOLD_VAR, "lots"), (STATS_VAR, str(tmp_path / "missing-dir" / "stats.jsonl"))):
        monkeypatch.setenv(variable, value)
        assert overlay.apply(overlay.catalog.get("prefill_throttle")) is False
        outcome = overlay.report.outcomes["prefill_throttle"]
        assert outcome.code == "bad_setting" and outcome.reason.startswith(f"{variable}={value!r} is not valid")
        assert Scheduler.schedule is original
        monkeypatch.delenv(variable)


# -- the rule, on vLLM's real scheduler --------------------------------------------------------------------

MAX_SEQS, BUDGET = 8, 64


def make_scheduler(model: Path):
    return build_scheduler(model, max_num_seqs=MAX_SEQS, max_num_batched_tokens=BUDGET)


def workload() -> list[tuple[int, int]]:
    """(prompt length, max_tokens): a long prompt every third request, staggered finishes."""
    return [(100 if i % 3 == 0 else 10, 5 + 3 * i) for i in range(12)]


def simulate(scheduler, rule, throttle: bool = False) -> list[dict]:
    """Run the workload to completion; one record per step: the decode count at its start, what it
    scheduled, and how many requests prefilled and decoded in it."""
    from vllm.sampling_params import SamplingParams
    from vllm.v1.outputs import ModelRunnerOutput
    from vllm.v1.request import Request

    for i, (prompt_len, max_tokens) in enumerate(workload()):
        scheduler.add_request(Request(f"r{i}", list(range(2, 2 + prompt_len)),
                                      SamplingParams(max_tokens=max_tokens, ignore_eos=True), None))
    steps, produced = [], {}
    while scheduler.has_requests():
        assert len(steps) < 1000, "the workload must finish"
        decoding = rule.decoding_count(scheduler.running)
        pending = rule.prefill_pending(scheduler)
        out = scheduler.schedule(throttle)
        ids = list(out.num_scheduled_tokens)
        sampled = []
        for rid in ids:
            req = scheduler.requests[rid]
            done_prompt = req.num_computed_tokens >= req.num_tokens
            sampled.append([7] if done_prompt else [])
            produced[rid] = produced.get(rid, 0) + (1 if done_prompt else 0)
        scheduler.update_from_output(out, ModelRunnerOutput(req_ids=ids, req_id_to_index={r: n for n, r in enumerate(ids)},
                                                            sampled_token_ids=sampled))
        prefill, decode = rule.step_mix(out)
        steps.append({"decoding": decoding, "pending": pending, "scheduled": dict(out.num_scheduled_tokens),
                      "prefill": prefill, "decode": decode, "mixed": prefill > 0 and decode > 0})
    assert produced == {f"r{i}": max_tokens for i, (_, max_tokens) in enumerate(workload())}
    return steps


@pytest.fixture(scope="module")
def vllm_ready(tiny_model):
    from vllm.config import VllmConfig, set_current_vllm_config

    with set_current_vllm_config(VllmConfig()):
        yield tiny_model


@pytest.fixture
def balanced(patch, monkeypatch):
    def apply(threshold: str | None, stats: Path | None = None):
        if threshold is None:
            monkeypatch.delenv(THRESHOLD_VAR, raising=False)
        else:
            monkeypatch.setenv(THRESHOLD_VAR, threshold)
        if stats is not None:
            monkeypatch.setenv(STATS_VAR, str(stats))
        done.append(applier.apply(patch))

    done: list = []
    yield apply
    for item in done:
        item.undo()


def test_stock_mixes_prefill_into_large_decode_batches(vllm_ready, rule):
    steps = simulate(make_scheduler(vllm_ready), rule)
    assert sum(1 for s in steps if s["mixed"] and s["decoding"] >= 4) >= 2


@pytest.mark.parametrize("threshold", [None, "4", "1", "6"])
def test_no_step_mixes_while_the_rule_holds(vllm_ready, rule, balanced, tmp_path, threshold):
    stats = tmp_path / "stats.jsonl"
    balanced(threshold, stats)
    steps = simulate(make_scheduler(vllm_ready), rule)
    t = rule.default_threshold(MAX_SEQS) if threshold is None else int(threshold)
    held = [s for s in steps if s["decoding"] > 0 and s["decoding"] >= t]
    assert held and any(s["pending"] for s in held), "the workload must exercise the rule"
    assert not [s for s in held if s["prefill"] > 0], "a held step scheduled prefill work"
    if t > 1:
        assert any(s["mixed"] for s in steps if s["decoding"] < t), "below the threshold steps may mix"
    # The stats file tells the same story, one line per step that scheduled work.
    lines = [json.loads(line) for line in stats.read_text().splitlines()]
    assert len(lines) == sum(1 for s in steps if s["scheduled"])
    worked = [s for s in steps if s["scheduled"]]
    assert [(r["decoding"], r["held"], r["mixed"], r["threshold"]) for r in lines] == \
           [(s["decoding"], s["decoding"] > 0 and s["decoding"] >= t, s["mixed"], t) for s in worked]


def test_strict_separation_with_threshold_one(vllm_ready, rule, balanced):
    balanced("1")
    steps = simulate(make_scheduler(vllm_ready), rule)
    assert not [s for s in steps if s["mixed"]]


@pytest.mark.parametrize("throttle", [False, True])
def test_steps_below_the_threshold_are_stock(vllm_ready, rule, balanced, throttle):
    """A threshold the decode batch never reaches leaves every scheduling decision to vLLM, including
    the data-parallel caller's own throttle_prefills."""
    stock = simulate(make_scheduler(vllm_ready), rule, throttle)
    balanced(str(MAX_SEQS + 1))
    assert simulate(make_scheduler(vllm_ready), rule, throttle) == stock


def test_held_step_leaves_vllm_saturation_flag_untouched(vllm_ready, rule, balanced):
    balanced("1")
    scheduler = make_scheduler(vllm_ready)
    from vllm.sampling_params import SamplingParams
    from vllm.v1.outputs import ModelRunnerOutput
    from vllm.v1.request import Request

    scheduler.add_request(Request("a", [2, 3, 4], SamplingParams(max_tokens=8, ignore_eos=True), None))
    out = scheduler.schedule()
    scheduler.update_from_output(out, ModelRunnerOutput(req_ids=["a"], req_id_to_index={"a": 0},
                                                        sampled_token_ids=[[7]]))
    scheduler.add_request(Request("b", list(range(2, 50)), SamplingParams(max_tokens=4, ignore_eos=True), None))
    scheduler.prefill_capacity_bound = True  # vLLM's escape would admit "b"; the rule must not
    out = scheduler.schedule()
    assert dict(out.num_scheduled_tokens) == {"a": 1}
    assert scheduler.prefill_capacity_bound is True


# -- what counts as decoding, priority, and no starvation -----------------------------------------------------

def test_a_prompt_whose_last_chunk_is_in_flight_is_not_decoding(vllm_ready, rule):
    """Scheduled but not yet computed (concurrent batches, pipeline parallelism): vLLM already counts
    its prompt computed, yet it has no token to compute in the next step until its output comes back."""
    scheduler = make_scheduler(vllm_ready)
    scheduler.add_request(request("a", 10, 4))
    scheduler.schedule()
    (a,) = scheduler.running
    assert not a.is_prefill_chunk, "vLLM's own view: past its prompt"
    assert not rule.is_decoding(a) and rule.decoding_count(scheduler.running) == 0


def test_under_async_scheduling_the_in_flight_token_is_decoded_next(vllm_ready, rule):
    scheduler = build_scheduler(vllm_ready, max_num_seqs=MAX_SEQS, max_num_batched_tokens=BUDGET,
                                async_scheduling=True)
    scheduler.add_request(request("a", 10, 4))
    scheduler.schedule()
    (a,) = scheduler.running
    assert a.num_output_placeholders == 1 and rule.is_decoding(a)


def test_a_request_that_produced_output_is_decoding(vllm_ready, rule):
    scheduler = make_scheduler(vllm_ready)
    scheduler.add_request(request("a", 70, 4))  # two chunks at a budget of 64
    step(scheduler)
    assert rule.decoding_count(scheduler.running) == 0  # mid-prompt
    step(scheduler)
    assert rule.decoding_count(scheduler.running) == 1


def first_step_scheduling(scheduler, request_id: str, limit: int = 60) -> int:
    for index in range(limit):
        if request_id in step(scheduler):
            return index
    raise AssertionError(f"{request_id} was not scheduled in {limit} steps")


def test_a_higher_priority_request_is_not_held_behind_lower_priority_decodes(vllm_ready, balanced, monkeypatch,
                                                                            tmp_path):
    """vLLM's priority policy admits (or preempts for) a request that outranks running work; the
    throttle must not turn that into a wait. An equal-or-lower one is still held."""
    stats = tmp_path / "stats.jsonl"
    monkeypatch.setenv(MAX_HOLD_VAR, "1000")
    balanced("1", stats)
    scheduler = build_scheduler(vllm_ready, max_num_seqs=MAX_SEQS, max_num_batched_tokens=BUDGET, policy="priority")
    scheduler.add_request(request("low", 10, 40, priority=5))
    step(scheduler), step(scheduler)
    scheduler.add_request(request("later", 10, 4, priority=9))
    assert "later" not in step(scheduler), "a lower-priority request waits while the rule holds"
    scheduler.add_request(request("high", 10, 4, priority=0))
    assert "high" in step(scheduler)
    records = [json.loads(line) for line in stats.read_text().splitlines()]
    assert [r["released"] for r in records][-2:] == [None, "priority"]


def test_held_prefills_run_after_max_hold_steps(vllm_ready, balanced, monkeypatch, tmp_path):
    """A decode batch that never drops below T must not starve a waiting prompt: after MAX_HOLD held
    steps with prefill pending, one step is stock."""
    monkeypatch.setenv(MAX_HOLD_VAR, "3")
    stats = tmp_path / "stats.jsonl"
    balanced("1", stats)
    scheduler = make_scheduler(vllm_ready)
    scheduler.add_request(request("long", 10, 40))
    step(scheduler)
    scheduler.add_request(request("waiting", 10, 4))
    assert first_step_scheduling(scheduler, "waiting") == 3
    records = [json.loads(line) for line in stats.read_text().splitlines()]
    assert [(r["held"], r["released"]) for r in records[1:5]] == [(True, None)] * 3 + [(False, "max_hold")]


@pytest.mark.parametrize("max_num_seqs", [1, 2, 3])
def test_the_default_never_holds_at_small_max_num_seqs(vllm_ready, rule, balanced, max_num_seqs):
    def run():
        return simulate(build_scheduler(vllm_ready, max_num_seqs=max_num_seqs, max_num_batched_tokens=BUDGET), rule)

    stock = run()
    balanced(None)
    assert run() == stock


def test_max_hold_refused_with_the_variable_named(patch, rule):
    for raw in ("0", "-2", "many"):
        with pytest.raises(ConfigError) as info:
            rule.MAX_HOLD.read({MAX_HOLD_VAR: raw})
        assert str(info.value).startswith(f"{MAX_HOLD_VAR}={raw!r} is not valid") and ">= 1" in str(info.value)
    assert rule.read_max_hold({}) == rule.DEFAULT_MAX_HOLD and rule.read_max_hold({MAX_HOLD_VAR: "5"}) == 5


# -- end to end: real vLLM on CPU ----------------------------------------------------------------------------

OFFLINE = textwrap.dedent('''
    import json, sys
    from vllm import LLM, SamplingParams

    if __name__ == "__main__":
        model, out = sys.argv[1], sys.argv[2]
        work = json.loads(sys.argv[3])
        llm = LLM(model=model, load_format="dummy", kv_cache_memory_bytes=256 * 2**20, max_model_len=256,
                  max_num_seqs=8, max_num_batched_tokens=64, enable_prefix_caching=False, seed=0,
                  enforce_eager=True)
        prompts = [{"prompt_token_ids": ids} for ids, _ in work]
        params = [SamplingParams(temperature=0, max_tokens=n, ignore_eos=True) for _, n in work]
        outs = llm.generate(prompts, params)
        json.dump([list(o.outputs[0].token_ids) for o in outs], open(out, "w"))
''')

RECORDER = textwrap.dedent('''
    """Test-only observer: records what stock vLLM schedules, with the rule's own classifier."""
    import json, os, sys
    from ascend_overlay import Patch

    PATCH = Patch(name="test_schedule_recorder", phase="engine_core", vllm=">=0.32,<0.34",
                  why="test observer of stock scheduling", remove_when="never: test only")
    RULE = "_ascend_overlay_patches.builtin.engine_core.patch_scheduler"

    @PATCH.wrap("vllm.v1.core.sched.scheduler:Scheduler.schedule", contract="(self, throttle_prefills=False)")
    def record(wrapped, instance, args, kwargs):
        rule = sys.modules[RULE]
        decoding = rule.decoding_count(instance.running)
        out = wrapped(*args, **kwargs)
        if out.total_num_scheduled_tokens:
            prefill, decode = rule.step_mix(out)
            with open(os.environ["TEST_SCHEDULE_RECORD"], "a") as f:
                f.write(json.dumps({"decoding": decoding, "mixed": prefill > 0 and decode > 0}) + "\\n")
        return out
''')


def e2e_workload() -> list[tuple[list[int], int]]:
    """Long prompts (chunked at 64 tokens) arriving while short requests decode."""
    work = []
    for i in range(16):
        length = 150 if i % 4 == 1 else 6 + i
        work.append(([3 + (i * 7 + j) % 500 for j in range(length)], 6 + (i * 5) % 23))
    return work


@pytest.mark.e2e
def test_e2e_prefill_throttle_follows_its_rule_and_keeps_greedy_outputs(tiny_model, tmp_path):
    from harness import base_env, report_by_role

    script = tmp_path / "offline.py"
    script.write_text(OFFLINE)
    hotfix = tmp_path / "hotfix"
    (hotfix / "engine_core").mkdir(parents=True)
    os.chmod(hotfix, 0o755)
    os.chmod(hotfix / "engine_core", 0o755)
    (hotfix / "engine_core" / "patch_test_schedule_recorder.py").write_text(RECORDER)
    work = json.dumps(e2e_workload())

    def run(env: dict[str, str], name: str) -> list[list[int]]:
        out = tmp_path / f"{name}.json"
        proc = subprocess.run([sys.executable, str(script), str(tiny_model), str(out), work], env=env,
                              capture_output=True, text=True, timeout=400, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-4000:]
        return json.loads(out.read_text())

    stock_record, stats, report = tmp_path / "stock.jsonl", tmp_path / "balanced.jsonl", tmp_path / "report.jsonl"
    # The stock reference with vLLM's engine in the script's process (one vLLM import, not three); the
    # throttled run keeps the engine core in its own process, where the rule runs in a deployment.
    stock = run(base_env(True, VLLM_ASCEND_OVERLAY_PATH=str(hotfix), TEST_SCHEDULE_RECORD=str(stock_record),
                         VLLM_ENABLE_V1_MULTIPROCESSING="0"), "stock")
    balanced = run(base_env(True, VLLM_ASCEND_OVERLAY_ENABLE="prefill_throttle", **{
        THRESHOLD_VAR: "4", STATS_VAR: str(stats), "VLLM_ASCEND_OVERLAY_REPORT": str(report)}), "balanced")

    engine = report_by_role(report)["engine_core"]
    assert [p["status"] for r in engine for p in r["patches"] if p["name"] == "prefill_throttle"] == ["applied"]

    stock_steps = [json.loads(line) for line in stock_record.read_text().splitlines()]
    steps = [json.loads(line) for line in stats.read_text().splitlines()]
    held = [s for s in steps if s["held"]]
    print(f"stock: {len(stock_steps)} steps, {sum(s['mixed'] for s in stock_steps)} mixed, "
          f"{sum(s['mixed'] and s['decoding'] >= 4 for s in stock_steps)} mixed with >= 4 decoding; "
          f"balanced: {len(steps)} steps, {len(held)} held, {sum(s['prefill_pending'] for s in held)} held "
          f"with prefill pending, {sum(s['mixed'] for s in held)} held and mixed, "
          f"{sum(s['mixed'] for s in steps)} mixed in all")
    assert sum(1 for s in stock_steps if s["mixed"] and s["decoding"] >= 4) > 0, "stock must mix here"
    assert held and sum(1 for s in held if s["prefill_pending"]) > 0, "the rule must have held prefills back"
    assert [s for s in held if s["mixed"]] == []
    assert all(s["held"] == (s["decoding"] >= 4) for s in steps)
    assert balanced == stock, "greedy outputs must not depend on the scheduling rule"
