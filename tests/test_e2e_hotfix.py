"""Against a real `vllm serve`: a worker-phase hotfix takes effect and is seen by a
client, while a tampered file, a world-writable directory, a foreign-owned file, a syntax error, an
invalid declaration and an obsolete hotfix are each refused or skipped precisely, a patch that raises
halfway is rolled back, and vLLM serves. The served run is shared with two other files
(tests/served_overlay.py builds the hotfix directories)."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import outcome, report_by_role
from served_overlay import OverlayServed

pytestmark = pytest.mark.e2e


def test_hotfixes_apply_or_are_refused_precisely_while_vllm_serves(overlay_served: OverlayServed) -> None:
    served = overlay_served
    if not served.foreign_owner:
        pytest.skip("the foreign-owner case needs root to chown; CI on this machine kind runs as root")
    assert served.children_left == []

    token_ids = served.result["choices"][0]["token_ids"]
    assert token_ids and set(token_ids) == {42}, "the worker-phase hotfix did not take effect"
    worker = report_by_role(served.report)["worker"][0]
    assert outcome(worker, "e2e_worker_forced_token")["status"] == "applied"
    assert outcome(worker, "e2e_worker_forced_token")["source"] == f"path:{served.good}"
    half = outcome(worker, "half_broken_fix")
    assert half["status"] == "failed" and "rolled back" in half["reason"] and "boom halfway" in half["reason"]
    refused = {Path(p["path"]).name: p["message"] for p in worker["problems"]}
    assert refused["patch_tampered.py"].startswith("SHA-256 mismatch")
    assert refused["patch_syntax.py"].startswith("syntax error at line")
    assert "patch name 'Invalid Name' must be lower_snake_case" in refused["patch_invalid.py"]
    assert "owned by uid 4242" in refused["patch_foreign.py"]
    assert "untrusted directory refused" in refused["loose"] and "mode 777" in refused["loose"]
    main = report_by_role(served.report)["api_server"][0]
    assert outcome(main, "obsolete_fix")["reason"].startswith("obsolete: vLLM 0.32.0 includes the fix")
    assert "obsolete_fix" in served.log and "remove this hotfix" in served.log
