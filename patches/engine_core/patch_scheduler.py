"""Prefill throttle: keep new prefill work out of decode steps while the decode batch is large.

The rule, evaluated at the start of every ``Scheduler.schedule`` call (one engine step):

* D = the number of running requests *decoding in this step*: past their prompt, with a token to
  compute now (they produced output, or, under async scheduling, have output in flight). A prompt
  whose last chunk is still in flight with no output yet (concurrent batches, pipeline parallelism)
  is not decoding: this step has nothing of it to compute;
* T = ``VLLM_ASCEND_OVERLAY_PREFILL_THROTTLE_THRESHOLD`` (an integer >= 0). Unset: half of
  ``--max-num-seqs`` from 4 sequences up; below 4 the default never holds (at T = 1 one decoding
  request would keep an engine with 2-3 slots running one request at a time).

If D > 0 and D >= T the step is *held*: it schedules the decodes and no prefill work, i.e. no
waiting request is admitted unless it has at most one token left to compute (a fully cached
prompt, which costs what a decode costs), and no partly prefilled prompt gets its next chunk.
Two exceptions release a step that would be held, which then runs as stock vLLM:

* priority: under vLLM's priority policy, a waiting request that ranks above a running one
  (vLLM's ``(priority, arrival_time)`` order) is not held behind lower-ranked work;
* bounded waiting: after ``VLLM_ASCEND_OVERLAY_PREFILL_THROTTLE_MAX_HOLD`` (default 32) consecutive
  held steps with prefill work pending, one step runs as stock, so no request waits on a long decode
  batch for longer than that between two of its prompt chunks.

Otherwise (D == 0 or D < T) vLLM schedules exactly as it would without the patch.

The held step is vLLM's own prefill deferral (``schedule(throttle_prefills=True)``, the data-parallel
balancing path of 0.32/0.33) with its saturation escape (``prefill_capacity_bound``) suspended for
that one call: the rule, not the queue length, decides. Everything else (budgets, preemption, KV
allocation, ordering) is vLLM's code.

``VLLM_ASCEND_OVERLAY_PREFILL_THROTTLE_STATS=<file>`` appends one JSON line per step that scheduled work:
the decode count at the start, the threshold, whether the step was held or released (and why),
whether prefill work was pending, and how many requests prefilled or decoded in it (``mixed`` when
both). It lets an operator verify the rule and tune T on a live server; it costs nothing when unset.
"""

import weakref

from ascend_overlay import Patch
from ascend_overlay.patchlib import StatsLines, parse_stats_path

THRESHOLD_VAR = "VLLM_ASCEND_OVERLAY_PREFILL_THROTTLE_THRESHOLD"
MAX_HOLD_VAR = "VLLM_ASCEND_OVERLAY_PREFILL_THROTTLE_MAX_HOLD"
STATS_VAR = "VLLM_ASCEND_OVERLAY_PREFILL_THROTTLE_STATS"
DEFAULT_MAX_HOLD = 32
MIN_SEQS_FOR_DEFAULT = 4

PATCH = Patch(
    name="prefill_throttle",
    phase="engine_core",
    vllm=">=0.32,<0.34",
    default=False,
    why=("vLLM mixes prefill chunks into decode steps whenever budget allows, so every decode in the "
         "batch waits for the prefill: inter-token latency jumps whenever a long prompt arrives. "
         "Experimental rule: at the start of a step let D be the number of requests decoding in it and T "
         f"{THRESHOLD_VAR} (integer >= 0; default max_num_seqs // 2 from 4 sequences up, never holding "
         "below); if D > 0 and D >= T the step schedules decodes only (no new admission needing more than "
         "one token of compute, no further chunk of a partial prefill), else it is stock. A waiting request "
         "that outranks a running one under vLLM's priority policy releases the step, and so does "
         f"{MAX_HOLD_VAR} (default {DEFAULT_MAX_HOLD}) consecutive held steps with prefill pending: no "
         "request starves. Implemented by calling vLLM's own schedule(throttle_prefills=True) with its "
         "saturation escape suspended for that step."),
    upstream="vllm/v1/core/sched/scheduler.py: Scheduler.schedule (throttle_prefills / prefill_capacity_bound)",
    remove_when="vLLM offers a decode-protecting prefill policy of its own, or this experiment is judged not worth it",
)

# What the rule reads on vLLM's requests (reached through the scheduler's queues, so analysis of the
# wrapper cannot see it): whether a request decodes in this step, and its rank under priority policy.
for _name in ("is_prefill_chunk", "num_tokens_with_spec", "num_output_placeholders", "num_computed_tokens",
              "priority", "arrival_time"):
    PATCH.relies_on(f"vllm.v1.request:Request.{_name}")
PATCH.relies_on("vllm.v1.core.sched.request_queue:RequestQueue.peek_request", contract="(self)")


def _parse_count(minimum):
    def parse(raw):
        text = raw.strip()
        if not text:
            return None
        if not text.isdigit() or int(text) < minimum:
            raise ValueError("")
        return int(text)
    return parse


THRESHOLD = PATCH.variable(
    THRESHOLD_VAR, default=None, parse=_parse_count(0),
    accepted=f"an integer >= 0 (unset: max_num_seqs // 2, or no hold below {MIN_SEQS_FOR_DEFAULT} sequences)",
    doc="prefill throttle: the decode batch size from which new prefills wait")
MAX_HOLD = PATCH.variable(
    MAX_HOLD_VAR, default=None, parse=_parse_count(1), accepted=f"an integer >= 1 (unset: {DEFAULT_MAX_HOLD})",
    doc="prefill throttle: consecutive held steps with prefill pending after which one step runs as stock")
STATS = PATCH.variable(
    STATS_VAR, default=None, parse=parse_stats_path, accepted="a file path in a writable directory (lines are appended)",
    doc="prefill throttle: append one JSON line per step that scheduled work to this file")


def read_threshold(environ=None):
    """The threshold set by the operator, or None for the default; a bad value raises ConfigError."""
    return THRESHOLD.read(environ)


def read_max_hold(environ=None):
    value = MAX_HOLD.read(environ)
    return DEFAULT_MAX_HOLD if value is None else value


def default_threshold(max_num_seqs):
    """Half the batch; None (never hold) below 4 sequences, where T would be 1 and one decoding
    request would hold every other request back: the engine would run one request at a time."""
    return max_num_seqs // 2 if max_num_seqs >= MIN_SEQS_FOR_DEFAULT else None


def is_decoding(request):
    """Past its prompt with a token to compute in this step. A prompt whose last chunk is in flight
    (scheduled, not computed: concurrent batches) has none yet, unless async scheduling already
    counts the token it will sample (an output placeholder), in which case this step decodes it."""
    return (not request.is_prefill_chunk
            and request.num_tokens_with_spec + request.num_output_placeholders > request.num_computed_tokens)


def decoding_count(running):
    return sum(1 for request in running if is_decoding(request))


def rank(request):
    """vLLM's priority order (its preemption key): lower sorts first."""
    return request.priority, request.arrival_time


def outranked_by_waiting(scheduler):
    """Under vLLM's priority policy: the best waiting request ranks above the worst running one, so
    holding it back would serve lower-priority work first."""
    from vllm.v1.core.sched.request_queue import SchedulingPolicy

    if scheduler.policy != SchedulingPolicy.PRIORITY or not scheduler.running:
        return False
    heads = [queue.peek_request() for queue in (scheduler.waiting, scheduler.kv_holding_waiting) if queue]
    return bool(heads) and min(map(rank, heads)) < max(map(rank, scheduler.running))


def step_mix(scheduler_output):
    """(prefilling, decoding) request counts of one step: a request's share is a prefill when it
    computes more than one token beyond its speculative tokens."""
    spec = scheduler_output.scheduled_spec_decode_tokens
    prefill = decode = 0
    for req_id, num_tokens in scheduler_output.num_scheduled_tokens.items():
        if num_tokens > 1 + len(spec.get(req_id, ())):
            prefill += 1
        else:
            decode += 1
    return prefill, decode


def prefill_pending(scheduler):
    return (bool(scheduler.waiting) or bool(scheduler.kv_holding_waiting)
            or any(request.is_prefill_chunk for request in scheduler.running))


# Per scheduler: consecutive held steps during which prefill work was pending (the bounded wait).
_held_streak = weakref.WeakKeyDictionary()
_stats_files = {}


def _settings():
    """(threshold or None, max hold, stats file or None). The plan step validated the variables, so a
    bad value never reaches a scheduling step; reading them costs microseconds against a step's
    milliseconds, and follows the environment (tests change it between runs)."""
    path = STATS.read()
    if path and path not in _stats_files:
        _stats_files[path] = StatsLines(path, STATS_VAR)
    return read_threshold(), read_max_hold(), _stats_files.get(path)


def decide(scheduler, threshold, max_hold, report=False):
    """(decoding, held, released, pending): the rule for this step. ``released`` names why a step the
    threshold would hold runs as stock ("priority", "max_hold") or is None. What only a held step or
    the stats line needs is read only then (else None): a step below the threshold costs one pass
    over the running queue, and with no threshold none."""
    decoding = decoding_count(scheduler.running) if threshold is not None or report else None
    over = threshold is not None and decoding > 0 and decoding >= threshold
    pending = prefill_pending(scheduler) if over or report else None
    released = None
    streak = _held_streak.get(scheduler, 0)
    if over and pending:
        if outranked_by_waiting(scheduler):
            released = "priority"
        elif streak >= max_hold:
            released = "max_hold"
    held = over and released is None
    if held and pending:
        _held_streak[scheduler] = streak + 1
    elif streak:
        del _held_streak[scheduler]
    return decoding, held, released, pending


@PATCH.wrap("vllm.v1.core.sched.scheduler:Scheduler.schedule", contract="(self, throttle_prefills=False)")
def throttled_schedule(wrapped, instance, args, kwargs):
    configured, max_hold, stats = _settings()
    threshold = configured if configured is not None else default_threshold(instance.scheduler_config.max_num_seqs)
    decoding, held, released, pending = decide(instance, threshold, max_hold, report=stats is not None)
    if not held:
        output = wrapped(*args, **kwargs)
    else:
        saved = instance.prefill_capacity_bound
        instance.prefill_capacity_bound = False
        try:
            output = wrapped(True)
        finally:
            # A deferring step does not update the flag in vLLM either: restore it untouched.
            instance.prefill_capacity_bound = saved
    if stats is not None and output.total_num_scheduled_tokens > 0:
        prefill, decode = step_mix(output)
        stats.write({"decoding": decoding, "threshold": threshold, "held": held, "released": released,
                     "prefill_pending": pending, "prefill_reqs": prefill, "decode_reqs": decode,
                     "mixed": prefill > 0 and decode > 0})
    return output
