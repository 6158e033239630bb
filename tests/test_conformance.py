"""One conformance test for every built-in patch and hook point, against the installed vLLM (as
ddtrace runs one base test for every integration): a patch that lands is covered the day it lands.

For each: apply it (past ``requires``: an NPU patch is applied here although no NPU exists, because
only its application and undo are under test), check every target changed, apply it again through the
runtime (a no-op: nothing wrapped twice), undo it, and check that every original is back by identity.
"""

from __future__ import annotations

import pytest

from ascend_overlay.core import applier
from ascend_overlay.core.catalog import load_catalog
from ascend_overlay.core.runtime import Overlay
from ascend_overlay.core.settings import Settings
from ascend_overlay.core.vocabulary import Decision, Reason, Status

_ABSENT = object()
CATALOG = load_catalog((), entry_points=False)
EVERY_PATCH = CATALOG.patches  # hook points first, then the patches they fire


def _state(patch) -> list[tuple[object, str, object]]:
    """(owner, attribute, what the owner's own __dict__ holds) for every target of the patch."""
    out = []
    for edit in patch.edits:
        resolved = applier.resolve(edit.module, edit.path)
        assert isinstance(resolved, applier.Resolved), resolved
        out.append((resolved.owner, resolved.attr, vars(resolved.owner).get(resolved.attr, _ABSENT)))
    return out


@pytest.mark.parametrize("patch", EVERY_PATCH, ids=[p.name for p in EVERY_PATCH])
def test_apply_twice_undo_restores_by_identity(patch, monkeypatch: pytest.MonkeyPatch) -> None:
    assert CATALOG.problems == []
    before = _state(patch)
    overlay = Overlay(Settings(enabled=True, log_level="off"), catalog=load_catalog((), entry_points=False, hooks=False))
    # Force past planning (requires npu, off by default): conformance is about applying and undoing.
    monkeypatch.setattr("ascend_overlay.core.runtime.plan", lambda p, ctx: Decision(True, Reason.ENABLED, "forced"))
    try:
        assert overlay.apply(patch), overlay.report.outcomes[patch.name]
        during = _state(patch)
        for (owner, attr, old), (_, _, new) in zip(before, during, strict=True):
            assert new is not old, f"{patch.name}: {owner}.{attr} did not change"
        assert overlay.apply(patch) is True
        assert _state(patch) == during, f"{patch.name}: applying twice changed something"
        assert overlay.report.outcomes[patch.name].status is Status.APPLIED
    finally:
        overlay.deactivate()
    after = _state(patch)
    for (owner, attr, old), (_, _, restored) in zip(before, after, strict=True):
        assert restored is old, f"{patch.name}: {owner}.{attr} not restored by identity"
    assert overlay.report.outcomes[patch.name].status is Status.UNPATCHED
