"""E2E test patch (worker phase): the sampler always picks token 42, seen in the returned token ids."""

from ascend_overlay import Patch

PATCH = Patch(
    name="e2e_worker_forced_token",
    phase="worker",
    vllm=">=0.32",
    why="end-to-end proof that worker-phase patches land in the worker process",
    remove_when="never: test fixture",
)


@PATCH.wrap("vllm.v1.sample.sampler:Sampler.forward",
            contract="(self, logits, sampling_metadata, predict_bonus_token=False, logprobs_mode_override=None)")
def force_token(wrapped, instance, args, kwargs):
    out = wrapped(*args, **kwargs)
    out.sampled_token_ids.fill_(42)
    return out
