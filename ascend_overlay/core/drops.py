"""Settings that would otherwise be dropped without a word: each gets one warning line that names it.

These are the cases where the overlay, or vLLM on the overlay's behalf, ignores something the
operator set, and nothing else would say so:

- ``VLLM_PLUGINS`` that leaves out the overlay's platform plugin while the NPU platform is asked
  for: vLLM filters every plugin group by that list, so the NPU platform is never offered and vLLM
  runs on another platform (``vllm/plugins/__init__.py``, ``load_plugins_by_group``);
- ``VLLM_TARGET_DEVICE=cpu`` while the NPU platform is asked for: vLLM then picks its CPU platform
  without asking any platform plugin (``vllm/platforms/__init__.py``);
- ``VLLM_ASCEND_OVERLAY_SIMULATE_NPU`` with the overlay off, and the simulator's stats directory
  without the simulator: both are read only by a simulated NPU that never starts;
- a name in ``VLLM_ASCEND_OVERLAY_ENABLE`` or ``_DISABLE`` that is no patch (``toggles.validate``).

Options of vLLM that the NPU platform cannot honour (graph capture, a compilation mode) are said by
the platform itself where it overrides them (``npu/platform.py``). ``ascend-overlay status`` lists
these lines, ``ascend-overlay run`` prints them before it starts the command, and every process
with the overlay on logs them as it activates.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Mapping

from ascend_overlay.core import toggles
from ascend_overlay.core.errors import ConfigError
from ascend_overlay.core.settings import (
    ACTIVATE,
    DISABLE,
    ENABLE,
    SIMULATE_NPU,
    SIMULATE_NPU_STATS,
    parse_flag,
    parse_names,
)

PLATFORM_PLUGIN = "ascend_overlay_npu"   # the overlay's vllm.platform_plugins entry point (pyproject.toml)


def _flag(environ: Mapping[str, str], name: str) -> bool:
    try:
        return parse_flag(environ.get(name, ""))
    except ValueError:
        return False  # a bad value is reported by the settings themselves


def npu_asked(environ: Mapping[str, str]) -> str | None:
    """Why this environment asks for the NPU platform, or None: the simulated NPU, or a torch_npu."""
    if not _flag(environ, ACTIVATE):
        return None
    if _flag(environ, SIMULATE_NPU):
        return f"{SIMULATE_NPU}=1"
    if importlib.util.find_spec("torch_npu") is not None:
        return "torch_npu is installed"
    return None


def platform_plugin_blocked(environ: Mapping[str, str] | None = None) -> bool:
    """vLLM will not ask the overlay's platform plugin in processes started with this environment."""
    env = os.environ if environ is None else environ
    plugins = env.get("VLLM_PLUGINS")
    excluded = plugins is not None and PLATFORM_PLUGIN not in plugins.split(",")
    return excluded or env.get("VLLM_TARGET_DEVICE", "").strip().lower() == "cpu"


def dropped(environ: Mapping[str, str] | None = None, known_patches: Iterable[str] | None = None) -> list[str]:
    """One sentence per setting that would be ignored without a word (see the module's docstring).

    ``known_patches``: the patch names of the catalog, to name unknown ENABLE/DISABLE entries (left
    out when None, for a caller that reports those itself)."""
    env = os.environ if environ is None else environ
    lines = []
    asked = npu_asked(env)
    plugins = env.get("VLLM_PLUGINS")
    if asked and plugins is not None and PLATFORM_PLUGIN not in plugins.split(","):
        lines.append(f"VLLM_PLUGINS={plugins!r} leaves out {PLATFORM_PLUGIN}, the overlay's platform plugin: vLLM "
                     f"will not offer the NPU platform ({asked}) and runs on another one; add {PLATFORM_PLUGIN} "
                     "to VLLM_PLUGINS (comma-separated, no spaces) or unset it")
    if asked and env.get("VLLM_TARGET_DEVICE", "").strip().lower() == "cpu":
        lines.append(f"VLLM_TARGET_DEVICE=cpu makes vLLM pick its CPU platform without asking platform plugins: the "
                     f"NPU platform ({asked}) will not be used; unset VLLM_TARGET_DEVICE")
    if _flag(env, SIMULATE_NPU) and not _flag(env, ACTIVATE):
        lines.append(f"{SIMULATE_NPU}=1 is ignored: the overlay is off (set {ACTIVATE}=1, or use "
                     "`ascend-overlay run --simulate-npu`)")
    if env.get(SIMULATE_NPU_STATS) and not (_flag(env, SIMULATE_NPU) and _flag(env, ACTIVATE)):
        lines.append(f"{SIMULATE_NPU_STATS} is ignored: no simulated NPU runs (it needs {SIMULATE_NPU}=1 with the "
                     "overlay on)")
    if known_patches is not None:
        names = {}
        for variable in (ENABLE, DISABLE):
            try:
                names[variable] = parse_names(env.get(variable, ""))
            except ValueError:
                names[variable] = ()   # a malformed list is reported by the settings themselves
        errors: list[ConfigError] = toggles.validate(names[ENABLE], names[DISABLE], known_patches)
        lines += [str(e) for e in errors]
    return lines
