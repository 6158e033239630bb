"""``ascend-overlay run --simulate-npu``: the environment that turns the simulated NPU on.

Checked here, before the command starts, so that an operator who asks for the simulator on a
machine with a real NPU, or with a simulator variable it cannot run with, gets a refusal at once
rather than a vLLM that quietly runs on the card or fails in every process.
"""

from __future__ import annotations

from ascend_overlay.npu import SIMULATE_NPU


def simulation_environment(env: dict[str, str]) -> tuple[dict[str, str], str | None]:
    """``env`` with the simulator switched on, and None; or ``env`` unchanged and the refusal."""
    from ascend_overlay.npu import sim

    reason = sim.refusal(env)
    if reason is not None:
        return env, reason
    return {**env, SIMULATE_NPU: "1"}, None
