"""Plan: would this patch apply here, and why (not)? The one place that answers it.

The runtime, ``ascend-overlay status`` and ``list``, and ``hotfix verify`` all call ``plan`` with a
``Context`` and get the same typed ``Decision``: they cannot disagree. ``plan`` is pure (it reads the
context and the patch's own variables, nothing else); ``applier.precheck`` adds the one check that
must import vLLM: every target resolves and honours its contract pin.

The order of the checks is the order an operator would ask: blocked by another patch? switched off?
this vLLM in range? already fixed upstream? its settings readable? the hardware here?
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from packaging.version import Version

from ascend_overlay.core import applier, requirements, toggles
from ascend_overlay.core.errors import ConfigError
from ascend_overlay.core.patch import Patch
from ascend_overlay.core.settings import VERSION, Settings
from ascend_overlay.core.vllm_version import installed_from_metadata, parse_version, version_matches
from ascend_overlay.core.vocabulary import Decision, Reason


@dataclass(frozen=True)
class Context:
    """What a decision depends on besides the patch itself."""

    settings: Settings
    version: Version | None
    blocked: Mapping[str, Decision] = field(default_factory=dict)
    # Is the named patch in effect? The runtime answers "applied in this process"; status and verify
    # answer "would apply", so ``requires=("patch:x",)`` reads the same everywhere.
    satisfied: Callable[[str], bool] = lambda name: False
    # A prediction for processes that will run on the simulated NPU (status only; a live process
    # asks the simulator it has installed, or not, like any torch_npu).
    simulated_npu: bool = False


def plan(patch: Patch, ctx: Context) -> Decision:
    blocked = ctx.blocked.get(patch.name)
    if blocked is not None:
        return blocked
    if patch.internal:
        switched = Decision(True, Reason.HOOK, "the overlay's own hook point")
    else:
        switched = toggles.switch(patch.name, patch.default, ctx.settings.enable, ctx.settings.disable)
        if not switched.applies:
            return switched
    if ctx.version is None:
        return Decision(False, Reason.NO_VLLM, "vLLM is not installed",
                        f"install vLLM, or set {VERSION} if this is a source build")
    if not version_matches(patch.vllm, ctx.version):
        return Decision(False, Reason.VERSION, f"vLLM {ctx.version} is outside {patch.vllm}", _override_hint(ctx))
    if patch.fixed_in is not None and ctx.version >= parse_version(patch.fixed_in, "fixed_in"):
        return Decision(False, Reason.OBSOLETE,
                        f"obsolete: vLLM {ctx.version} includes the fix (fixed in {patch.fixed_in})",
                        f"remove this hotfix ({patch.file}){_override_hint(ctx, ', or ')}")
    for variable in patch.variables:
        try:
            variable.read()
        except ConfigError as exc:
            return Decision(False, Reason.BAD_SETTING, str(exc), "fix or unset the variable")
    missing = requirements.unmet(patch.requires, ctx.satisfied, simulated_npu=ctx.simulated_npu)
    if missing:
        return Decision(False, Reason.REQUIREMENT, missing)
    return switched


def _override_hint(ctx: Context, lead: str = "") -> str:
    if not ctx.settings.version_override:
        return ""
    return (f"{lead}note: gated on {VERSION}={ctx.settings.version_override}, not the installed "
            f"{installed_from_metadata() or 'vLLM'}")


def would_apply(patches: list[Patch], ctx: Context, *, check_targets: bool = True,
                refusal: Callable[[Patch], Decision | None] | None = None) -> dict[str, Decision]:
    """Every patch's decision as a whole install would see it, for status, list and verify: a
    ``patch:`` requirement is met when the required patch would apply (cycles count as unmet).

    ``refusal`` answers what ``applier.precheck(patch).refusal`` would (``precheck_cache`` gives the
    remembered answer); by default precheck itself is asked."""
    refused = refusal or (lambda patch: applier.precheck(patch).refusal)
    by_name = {p.name: p for p in patches}
    decided: dict[str, Decision] = {}
    deciding: set[str] = set()

    def decide(name: str) -> Decision:
        if name in decided:
            return decided[name]
        if name in deciding or name not in by_name:
            return Decision(False, Reason.REQUIREMENT, f"requires patch {name}")
        deciding.add(name)
        local = Context(ctx.settings, ctx.version, ctx.blocked, lambda other: decide(other).applies,
                        ctx.simulated_npu)
        decision = plan(by_name[name], local)
        if decision.applies and check_targets:
            decision = refused(by_name[name]) or decision
        deciding.discard(name)
        decided[name] = decision
        return decision

    for patch in patches:
        decide(patch.name)
    return decided
