"""``ascend-overlay run --simulate-npu``: the environment that turns the simulated NPU on.

Checked here, before the command starts, so that an operator who asks for the simulator on a
machine with a real NPU gets a refusal at once rather than a vLLM that quietly runs on the card
(each vLLM process would refuse again, and go on with the real NPU).
"""

from __future__ import annotations

from ascend_overlay.npu import SIMULATE_NPU


def simulation_environment(env: dict[str, str]) -> tuple[dict[str, str], str | None]:
    """``env`` with the simulator switched on, and None; or ``env`` unchanged and the refusal."""
    from ascend_overlay.npu import sim

    reason = sim.refusal()
    if reason is None:
        try:
            sim.visible_device_count(env)
        except sim.SimulatorRefused as exc:
            reason = str(exc)
    if reason is not None:
        return env, reason
    return {**env, SIMULATE_NPU: "1"}, None
