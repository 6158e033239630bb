"""Prefill throttle: keep new prefill work out of decode steps while the decode batch is large.

The rule, evaluated at the start of every ``Scheduler.schedule`` call (one engine step):

* D = the number of requests in the running queue that have finished their prompt (decoding);
* T = ``VLLM_ASCEND_OVERLAY_PREFILL_THROTTLE_THRESHOLD`` (an integer >= 0; default: half of
  ``--max-num-seqs``, rounded down, at least 1).

If D > 0 and D >= T, the step is *held*: it schedules the decodes and no prefill work, i.e. no
waiting request is admitted unless it has at most one token left to compute (a fully cached
prompt, which costs what a decode costs), and no partly prefilled prompt gets its next chunk.
Otherwise (D == 0 or D < T) vLLM schedules exactly as it would without the patch. So a step mixes
prefill with decode only while the decode batch is below T; with T of 0 or 1 steps never mix.

The held step is vLLM's own prefill deferral (``schedule(throttle_prefills=True)``, the data-parallel
balancing path of 0.32/0.33) with its saturation escape (``prefill_capacity_bound``) suspended for
that one call: the rule, not the queue length, decides. Everything else (budgets, preemption, KV
allocation, ordering) is vLLM's code. Requests held back wait at most until enough decodes finish,
which max_tokens and max_model_len bound.

``VLLM_ASCEND_OVERLAY_PREFILL_THROTTLE_STATS=<file>`` appends one JSON line per step that scheduled work:
the decode count at the start, the threshold, whether the step was held, whether prefill work was
pending, and how many requests prefilled or decoded in it (``mixed`` when both). It lets an operator
verify the rule and tune T on a live server; it costs nothing when unset.
"""

from ascend_overlay import Patch
from ascend_overlay.patchlib import StatsLines, parse_stats_path

THRESHOLD_VAR = "VLLM_ASCEND_OVERLAY_PREFILL_THROTTLE_THRESHOLD"
STATS_VAR = "VLLM_ASCEND_OVERLAY_PREFILL_THROTTLE_STATS"

PATCH = Patch(
    name="prefill_throttle",
    phase="engine_core",
    vllm=">=0.32,<0.34",
    default=False,
    why=("vLLM mixes prefill chunks into decode steps whenever budget allows, so every decode in the "
         "batch waits for the prefill: inter-token latency jumps whenever a long prompt arrives. "
         "Experimental rule: at the start of a step let D be the number of decoding requests and T "
         f"{THRESHOLD_VAR} (integer >= 0, default max(1, max_num_seqs // 2)); if D > 0 and D >= T the "
         "step schedules decodes only (no new admission needing more than one token of compute, no "
         "further chunk of a partial prefill), else it is stock. Implemented by calling vLLM's own "
         "schedule(throttle_prefills=True) with its saturation escape suspended for that step; "
         "relies on Scheduler.running, Request.is_prefill_chunk and Scheduler.prefill_capacity_bound, "
         "identical in 0.32 and 0.33."),
    upstream="vllm/v1/core/sched/scheduler.py: Scheduler.schedule (throttle_prefills / prefill_capacity_bound)",
    remove_when="vLLM offers a decode-protecting prefill policy of its own, or this experiment is judged not worth it",
)


def _parse_threshold(raw):
    text = raw.strip()
    if not text:
        return None
    if not text.isdigit():
        raise ValueError("")
    return int(text)


THRESHOLD = PATCH.variable(
    THRESHOLD_VAR, default=None, parse=_parse_threshold,
    accepted="an integer >= 0 (unset: max(1, max_num_seqs // 2))",
    doc="prefill throttle: the decode batch size from which new prefills wait")
STATS = PATCH.variable(
    STATS_VAR, default=None, parse=parse_stats_path, accepted="a file path in a writable directory (lines are appended)",
    doc="prefill throttle: append one JSON line per step that scheduled work to this file")


def read_threshold(environ=None):
    """The threshold set by the operator, or None for the default; a bad value raises ConfigError."""
    return THRESHOLD.read(environ)


def default_threshold(max_num_seqs):
    return max(1, max_num_seqs // 2)


def decoding_count(running):
    """Requests of the running queue past their prompt, as vLLM's own deferral counts them."""
    return sum(1 for request in running if not request.is_prefill_chunk)


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


_stats_files = {}


def _settings():
    """(threshold or None, stats file or None). The plan step validated both variables, so a bad
    value never reaches a scheduling step; reading them costs microseconds against a step's
    milliseconds, and follows the environment (tests change it between runs)."""
    path = STATS.read()
    if path and path not in _stats_files:
        _stats_files[path] = StatsLines(path, STATS_VAR)
    return read_threshold(), _stats_files.get(path)


@PATCH.wrap("vllm.v1.core.sched.scheduler:Scheduler.schedule", contract="(self, throttle_prefills=False)")
def throttled_schedule(wrapped, instance, args, kwargs):
    configured, stats = _settings()
    threshold = configured if configured is not None else default_threshold(instance.scheduler_config.max_num_seqs)
    decoding = decoding_count(instance.running)
    held = decoding > 0 and decoding >= threshold
    pending = prefill_pending(instance) if stats is not None else None
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
        stats.write({"decoding": decoding, "threshold": threshold, "held": held,
                     "prefill_pending": pending, "prefill_reqs": prefill, "decode_reqs": decode,
                     "mixed": prefill > 0 and decode > 0})
    return output
