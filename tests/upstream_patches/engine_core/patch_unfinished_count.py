"""Test double of a scheduler patch with one known effect on vLLM's own scheduler tests.

``Scheduler.get_num_unfinished_requests`` counts one request too many, so vLLM 0.32.0's
``tests/v1/core/test_scheduler.py::test_get_num_unfinished_requests`` fails with it applied (its
first assertion: 10 == 9) and passes without it, while ``test_add_requests`` passes either way. The
tests of ``ascend_overlay.testing`` use it to prove the plugin applied the patch, and undid it.
"""

from ascend_overlay import Patch

PATCH = Patch(
    name="unfinished_count_off_by_one",
    phase="engine_core",
    vllm=">=0.32",
    default=False,
    why="test double: a deliberately wrong count whose effect on vLLM's scheduler tests is known",
    remove_when="never: test fixture",
)


@PATCH.replace("vllm.v1.core.sched.scheduler:Scheduler.get_num_unfinished_requests", contract="(self)")
def get_num_unfinished_requests(self):
    return len(self.waiting) + len(self.running) + 1
