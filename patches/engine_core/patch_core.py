"""Balance scheduling: under data parallelism, a rank at capacity freezes admission on every rank.

This is vllm-ascend's balance scheduling, a data-parallel admission gate. With DP, every rank steps in
lockstep (MoE layers exchange tokens across ranks each step), so one rank that keeps admitting new
prompts while another is full makes the full rank's decodes wait on the others' prefills, and the
ranks drift apart in load. The rule:

* each engine step, every DP rank all-gathers the length of its running queue over the DP group;
* when any rank's count equals ``max_num_running_reqs`` (``--max-num-seqs``; equality, not ``>=``),
  no rank admits a new waiting request in its next step (leader at cap => global freeze of admission;
  running requests, and requests already holding KV blocks, are scheduled as usual).

Two edits, both wrappers around vLLM's own code:

1. ``DPEngineCoreProc._has_global_unfinished_reqs``: vLLM's per-step DP synchronisation point, which
   every rank calls exactly once per busy-loop iteration. When it reports the engines running, one
   ``all_gather`` of ``len(scheduler.running)`` follows over the DP group. When every rank is idle,
   vLLM's loop never reaches this call, on all ranks alike, so no rank waits for a missing peer.
2. ``Scheduler.schedule``: when the last gather saw a rank at capacity, the step runs under vLLM's own
   admission gate, ``PauseState.PAUSED_NEW``, set for the duration of that one call and restored
   after it, so vLLM's pause API and its DP wave logic never see it.

Off (the default) neither edit exists: vLLM's engine core and scheduler run unchanged, with no
collective. Without data parallelism (one engine core) the gather never happens and the scheduler
wrapper passes every call straight through.

``VLLM_ASCEND_OVERLAY_BALANCE_STATS=<file>`` appends one JSON line per gather (rank, the gathered
counts, whether admission is frozen, the rank's running and waiting counts): how an operator sees
the gate act on a live server.
"""

from ascend_overlay import Patch
from ascend_overlay.patchlib import StatsLines, parse_stats_path

PATCH = Patch(
    name="balance_scheduling",
    phase="engine_core",
    vllm=">=0.32,<0.34",
    default=False,
    why=("Under data parallelism vLLM admits new requests on each rank independently, so a rank with free "
         "slots keeps starting prefills while another rank is full, and the lockstep DP ranks drift apart in "
         "load. vllm-ascend's balance scheduling gates admission globally: each step every rank all-gathers "
         "len(running) over the DP group, and when any rank's count equals max_num_running_reqs no rank admits "
         "a new waiting request that step. Implemented around vLLM's own per-step DP sync "
         "(DPEngineCoreProc._has_global_unfinished_reqs) and admission gate (PauseState.PAUSED_NEW, for the "
         "one schedule() call), with no copy of vLLM's scheduler."),
    upstream="vllm-ascend balance scheduling (VLLM_ASCEND_BALANCE_SCHEDULING); vllm/v1/engine/core.py DP busy loop",
    remove_when="vLLM offers a cross-rank admission gate for data parallelism",
)

STATS_VAR = "VLLM_ASCEND_OVERLAY_BALANCE_STATS"
STATS = PATCH.variable(
    STATS_VAR, default=None, parse=parse_stats_path, accepted="a file path in a writable directory (lines are appended)",
    doc="balance scheduling: append one JSON line per DP gather (counts, frozen) to this file")

# Kept on vLLM's scheduler object: the counts the DP engine core gathered after the last step.
COUNTS_ATTR = "_ascend_overlay_dp_running_counts"


def admission_frozen(counts, max_num_running_reqs):
    """The rule: some rank's running queue is exactly at capacity."""
    return any(count == max_num_running_reqs for count in counts)


@PATCH.wrap("vllm.v1.engine.core:DPEngineCoreProc._has_global_unfinished_reqs",
            contract="(self, local_unfinished)")
def gather_running_counts(wrapped, instance, args, kwargs):
    running = wrapped(*args, **kwargs)
    scheduler = instance.scheduler
    if not running:
        setattr(scheduler, COUNTS_ATTR, ())  # a new wave starts unfrozen
        return running
    import torch
    import torch.distributed as dist

    mine = torch.tensor([len(scheduler.running)], dtype=torch.int64)
    gathered = [torch.zeros_like(mine) for _ in range(instance.dp_group.size())]
    dist.all_gather(gathered, mine, group=instance.dp_group)
    counts = tuple(int(t.item()) for t in gathered)
    setattr(scheduler, COUNTS_ATTR, counts)
    stats = _stats_lines()
    if stats is not None:
        _, waiting = scheduler.get_request_counts()
        stats.write({"dp_rank": instance.dp_rank, "counts": list(counts), "max": scheduler.max_num_running_reqs,
                     "frozen": admission_frozen(counts, scheduler.max_num_running_reqs),
                     "running": len(scheduler.running), "waiting": waiting})
    return running


@PATCH.wrap("vllm.v1.core.sched.scheduler:Scheduler.schedule", contract="(self, throttle_prefills=False)")
def schedule_under_the_gate(wrapped, instance, args, kwargs):
    counts = getattr(instance, COUNTS_ATTR, ())
    if not counts or not admission_frozen(counts, instance.max_num_running_reqs):
        return wrapped(*args, **kwargs)
    from vllm.v1.core.sched.interface import PauseState

    if instance._pause_state != PauseState.UNPAUSED:
        return wrapped(*args, **kwargs)  # an operator's pause is stricter already: leave it alone
    instance._pause_state = PauseState.PAUSED_NEW
    try:
        return wrapped(*args, **kwargs)
    finally:
        instance._pause_state = PauseState.UNPAUSED


_stats_files = {}


def _stats_lines():
    path = STATS.read()  # validated when the patch was planned
    if path and path not in _stats_files:
        _stats_files[path] = StatsLines(path, STATS_VAR)
    return _stats_files.get(path)
