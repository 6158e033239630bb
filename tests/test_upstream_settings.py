"""``ascend_overlay.testing.upstream --set``: a patch's own variables reach the patched run only when
named, and only with a value the patch accepts (a typo fails the command instead of testing a default)."""

from __future__ import annotations

import pytest

pytest.importorskip("vllm")

@pytest.mark.parametrize("item,expected", [
    ("VLLM_ASCEND_OVERLAY_PREFILL_THROTTLE_THRESHOLD", "expected NAME=VALUE"),
    ("VLLM_ASCEND_OVERLAY_BALANCE_TYPO=1", "declared: VLLM_ASCEND_OVERLAY_PREFILL_THROTTLE_MAX_HOLD"),
    ("VLLM_ASCEND_OVERLAY_PREFILL_THROTTLE_THRESHOLD=-1", "integer >= 0"),
])
def test_set_refuses_what_the_named_patches_do_not_declare_or_accept(item: str, expected: str) -> None:
    from ascend_overlay.core.errors import OverlayError
    from ascend_overlay.testing.upstream import patch_settings

    with pytest.raises(OverlayError) as info:
        patch_settings(("prefill_throttle",), [item])
    assert expected in str(info.value)


def test_set_passes_accepted_values_through() -> None:
    from ascend_overlay.testing.upstream import patch_settings

    assert patch_settings(("prefill_throttle",), ["VLLM_ASCEND_OVERLAY_PREFILL_THROTTLE_THRESHOLD=1"]) == \
        {"VLLM_ASCEND_OVERLAY_PREFILL_THROTTLE_THRESHOLD": "1"}
