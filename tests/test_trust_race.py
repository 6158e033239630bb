"""A second local user racing the trust check never gets code run as the service, and every start-up
that did not load a configured hotfix directory says why. A few seconds of the race run here; the
full loops (200 start-ups, 200 ``hotfix verify`` runs) are ``make race`` (docs/security.md)."""

from __future__ import annotations

import pytest
import race_harness


def test_a_second_user_swapping_hotfixes_and_parent_symlinks_never_gets_code_run() -> None:
    try:
        verdict = race_harness.run(runs=2, seconds_per_loader=1.5, verify_runs=3)
    except race_harness.Unavailable as exc:
        pytest.skip(f"the race needs a second local user: {exc}")
    assert verdict.errors == []
    assert verdict.swaps > 100 and verdict.loader_loads > 20, "the race did not happen"
    assert verdict.second_user_code_ran == 0, "the second user's code ran as the service"
    assert verdict.unsigned_code_ran == 0, "a file that did not match SHA256SUMS ran"
    assert verdict.attacked_loaded == 0, "a hotfix directory below another user's directory was loaded"
    assert verdict.refused_without_reason == []
    assert verdict.control_missing == 0, "the operator's own hotfix directory was not loaded under the race"
    assert verdict.signed_loaded > 0, "the signed file never loaded between the owner's swaps"
