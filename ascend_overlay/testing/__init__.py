"""A pytest plugin that runs tests (vLLM's own, or yours) against vLLM with the overlay's patches.

Phases normally fire from vLLM's hook points, which a unit test never reaches: vLLM's scheduler
tests build ``Scheduler`` directly, so without this plugin they test stock code whatever the
overlay's variables say. With it, each test that asks for phases gets the overlay activated in the
test process, the phases fired, and everything undone after the test::

    pytest -p ascend_overlay.testing --ascend-overlay-phase=engine_core tests/v1/core
    pytest -p ascend_overlay.testing --ascend-overlay-phase=engine_core \\
        --ascend-overlay-enable=balance_scheduling tests/v1/core/test_scheduler.py

    @pytest.mark.ascend_overlay(phase="engine_core", enable="balance_scheduling")
    def test_something(ascend_overlay):   # the fixture: the active overlay (its report), or None
        ...

Which patches apply follows the overlay's own rules: the toggles (``VLLM_ASCEND_OVERLAY_ENABLE`` /
``_DISABLE``, plus the ``enable``/``disable`` of the option or marker, which take precedence), the
``vllm`` ranges, requirements, hotfix directories (``VLLM_ASCEND_OVERLAY_PATH``). Import-phase
patches apply as in every process the overlay runs in. A patch named in ``enable`` that does not
apply fails the test's set-up with the reason, so a run cannot silently test stock code.

Only the core's entrances are used: ``activation.activate``, ``phases.fire``,
``activation.deactivate``. The overlay must not already be on in the test process
(``VLLM_ASCEND_OVERLAY=1`` with the sitecustomize door): the plugin then refuses to start.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import pytest

from ascend_overlay.core.patch import Phase
from ascend_overlay.core.vocabulary import Status

MARKER = "ascend_overlay"
FIRED_PHASES = tuple(p.value for p in Phase if p is not Phase.IMPORT)
_STASH = pytest.StashKey[dict[str, Any]]()


def _names(value: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    if not value:
        return ()
    from ascend_overlay.core.settings import split_names

    if isinstance(value, str):
        return split_names(value)
    return tuple(name for item in value for name in split_names(item))


def _phases(value: str | tuple[str, ...] | list[str] | None, where: str) -> tuple[str, ...]:
    phases = _names(value)
    bad = [p for p in phases if p not in FIRED_PHASES]
    if bad:
        raise pytest.UsageError(f"{where}: unknown phase {', '.join(map(repr, bad))}; use one or more of "
                                f"{', '.join(FIRED_PHASES)} (import-phase patches apply on activation)")
    return phases


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ascend-overlay", "run tests against vLLM with ascend-overlay's patches")
    group.addoption("--ascend-overlay-phase", default="", metavar="PHASES",
                    help=f"fire these phases (comma list of {', '.join(FIRED_PHASES)}) around every test")
    group.addoption("--ascend-overlay-enable", default="", metavar="NAMES",
                    help="patches to switch on, added to VLLM_ASCEND_OVERLAY_ENABLE (each must then apply)")
    group.addoption("--ascend-overlay-disable", default="", metavar="NAMES",
                    help="patches to switch off, added to VLLM_ASCEND_OVERLAY_DISABLE ('*' for all but enabled ones)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(phase, enable=(), disable=()): run this test with ascend-overlay's patches of "
                   "these phases applied (and undone after it); enable/disable add to the toggles")
    from ascend_overlay.doors import activation

    enable = _names(config.getoption("--ascend-overlay-enable"))
    disable = _names(config.getoption("--ascend-overlay-disable"))
    options = {"phases": _phases(config.getoption("--ascend-overlay-phase"), "--ascend-overlay-phase"),
               "enable": enable, "disable": disable, "runs": 0, "applied": {}}
    config.stash[_STASH] = options
    if activation.current() is not None:
        raise pytest.UsageError("ascend-overlay is already active in this process (VLLM_ASCEND_OVERLAY=1 "
                                "and the sitecustomize door?); unset VLLM_ASCEND_OVERLAY: the plugin "
                                "activates it around each test that asks for it")
    if enable or disable:
        _validate(enable, disable, "--ascend-overlay-enable/--ascend-overlay-disable")


def _validate(enable: tuple[str, ...], disable: tuple[str, ...], where: str) -> None:
    from ascend_overlay.core import toggles
    from ascend_overlay.core.catalog import load_catalog
    from ascend_overlay.core.settings import Settings

    catalog = load_catalog(Settings.from_env().hotfix_dirs)
    errors = toggles.validate(enable, disable, catalog.names())
    if errors:
        raise pytest.UsageError(f"{where}: " + "; ".join(str(e) for e in errors))


def _request(item: pytest.Item) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] | None:
    """(phases, enable, disable) for this test: its marker wins over the command line."""
    options = item.config.stash[_STASH]
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return (options["phases"], options["enable"], options["disable"]) if options["phases"] else None
    phase = marker.kwargs.get("phase", marker.args[0] if marker.args else None)
    phases = _phases(phase, f"{item.nodeid}: @pytest.mark.{MARKER}")
    if not phases:
        return None  # @pytest.mark.ascend_overlay(phase=None): this test runs stock
    enable = options["enable"] + _names(marker.kwargs.get("enable"))
    disable = options["disable"] + _names(marker.kwargs.get("disable"))
    if marker.kwargs.get("enable") or marker.kwargs.get("disable"):
        _validate(enable, disable, f"{item.nodeid}: @pytest.mark.{MARKER}")
    return phases, enable, disable


@pytest.fixture(autouse=True)
def _ascend_overlay_phases(request: pytest.FixtureRequest) -> Iterator[Any]:
    wanted = _request(request.node)
    if wanted is None:
        yield None
        return
    from ascend_overlay.core.phases import fire
    from ascend_overlay.core.settings import Settings
    from ascend_overlay.doors import activation

    phases, enable, disable = wanted
    env = Settings.from_env()
    # The option's and marker's names take precedence over the variables': a name enabled here is
    # taken out of VLLM_ASCEND_OVERLAY_DISABLE, and the other way round.
    settings = dataclasses.replace(
        env, enabled=True,
        enable=tuple(n for n in env.enable if n not in disable) + enable,
        disable=tuple(n for n in env.disable if n not in enable) + disable)
    overlay = activation.activate(door="pytest", settings=settings)
    if overlay is None:
        pytest.fail("ascend-overlay could not be activated in the test process (see the warning above)")
    try:
        for phase in phases:
            fire(Phase(phase), "pytest plugin (ascend_overlay.testing)")
        _require(overlay, enable, disable)
        stash = request.config.stash[_STASH]
        stash["runs"] += 1
        for name, outcome in overlay.report.outcomes.items():
            if outcome.status is Status.APPLIED and not outcome.internal:
                stash["applied"][name] = stash["applied"].get(name, 0) + 1
        yield overlay
    finally:
        activation.deactivate()


def _require(overlay: Any, enable: tuple[str, ...], disable: tuple[str, ...]) -> None:
    """A patch asked for by name must apply; otherwise the test would run stock code unnoticed."""
    for name in enable:
        if name == "*" or name in disable:
            continue
        outcome = overlay.report.outcomes.get(name)
        if outcome is None:
            pytest.fail(f"ascend-overlay: patch {name!r} was enabled but is not of the fired phases; its phase "
                        "must be passed with --ascend-overlay-phase or the marker's phase", pytrace=False)
        if outcome.status is not Status.APPLIED:
            pytest.fail(f"ascend-overlay: patch {name!r} was enabled but is {outcome.status}: {outcome.reason}",
                        pytrace=False)


@pytest.fixture
def ascend_overlay(_ascend_overlay_phases: Any) -> Any:
    """The overlay active for this test (``.report.outcomes``: what applied and why not), or None when
    the test runs stock."""
    return _ascend_overlay_phases


def pytest_report_header(config: pytest.Config) -> str | None:
    options = config.stash.get(_STASH, None)
    if not options or not options["phases"]:
        return None
    toggles = "".join(f", {k} {','.join(options[k])}" for k in ("enable", "disable") if options[k])
    return f"ascend-overlay: phases {','.join(options['phases'])} fired around every test{toggles}"


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    options = config.stash.get(_STASH, None)
    if not options or not options["runs"]:
        return
    applied = ", ".join(f"{name} ({count})" for name, count in sorted(options["applied"].items())) or "none"
    terminalreporter.write_line(f"ascend-overlay: {options['runs']} tests ran with the overlay; patches applied "
                                f"(tests): {applied}; pid {os.getpid()}")
