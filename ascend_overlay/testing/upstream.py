"""Run a subset of vLLM's own tests stock and with patches applied, and say which outcomes differ.

    python -m ascend_overlay.testing.upstream --tests tests/v1/core --patches balance_scheduling
    make upstream-tests TESTS=tests/v1/core PATCHES=balance_scheduling

The tests are those of the installed vLLM's version, from its sdist (``testing.sdist``, fetched
once into the cache). Both runs are ``python -m pytest`` in a child process, in the unpacked tree
(so vLLM's ``tests`` package and pytest settings apply), against the installed vLLM; the patched run
adds ``-p ascend_overlay.testing`` with the phases of the named patches, and only those patches
switched on (``VLLM_ASCEND_OVERLAY_DISABLE=*``, ``--ascend-overlay-enable=NAMES``), so every
difference is theirs. Hub model names the tests use are pointed at tiny local models through vLLM's
``VLLM_MODEL_REDIRECT_PATH``. pytest's own output streams through (a long run shows progress);
unknown arguments go to pytest (``--ignore=...`` for tests that need real weights). A patch's own
variables reach the patched run only through ``--set NAME=VALUE`` (both runs otherwise see no
``VLLM_ASCEND_OVERLAY_*`` variable but the hotfix path), so a run says which setting it tested.
Exit code: 0 same outcomes, 1 some differ, 2 bad input, no tests, or a run that produced no results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from ascend_overlay.core.errors import OverlayError
from ascend_overlay.core.settings import split_names
from ascend_overlay.core.vocabulary import Phase

# Hub names vLLM's offline-runnable tests build configs from (``facebook/opt-125m`` is the scheduler
# tests' model, ``Qwen/Qwen3-0.6B`` is ``ModelConfig``'s default); the tests never run the model, so a
# tiny config of the same architecture (and a small tokenizer) is enough.
TINY_MODELS = {"facebook/opt-125m": "opt", "Qwen/Qwen3-0.6B": "qwen3"}


@dataclass(frozen=True)
class Outcome:
    status: str       # passed | failed | error | skipped
    message: str = ""


def parse_junit(path: Path) -> dict[str, Outcome]:
    """Test id (``file.py::Class::name``) -> outcome, from pytest's ``--junitxml``."""
    outcomes: dict[str, Outcome] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        classname, name = case.get("classname", ""), case.get("name", "")
        parts = classname.split(".")
        # classname is the dotted module path, then the class (if any): rebuild a pytest node id.
        split = next((i for i in range(len(parts), 0, -1) if not parts[i - 1][:1].isupper()), len(parts))
        node = "/".join(parts[:split]) + ".py" + "".join(f"::{c}" for c in parts[split:]) + f"::{name}"
        status, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            child = case.find(tag)
            if child is not None:
                status = {"failure": "failed"}.get(tag, tag)
                message = (child.get("message") or "").splitlines()[0][:200] if child.get("message") else ""
                break
        outcomes[node] = Outcome(status, message)
    return outcomes


def tiny_models(directory: Path) -> dict[str, str]:
    """Local stand-ins for the hub names in ``TINY_MODELS`` (made once, no download)."""
    from ascend_overlay.serving.tiny_model import make_tiny_model

    made = {}
    for name, kind in TINY_MODELS.items():
        target = directory / name.replace("/", "--")
        if not (target / ".complete").is_file():
            make_tiny_model(target)
            if kind == "opt":
                from transformers import OPTConfig

                OPTConfig(vocab_size=512, hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=2,
                          max_position_embeddings=2048, word_embed_proj_dim=64).save_pretrained(target)
            elif kind == "qwen3":
                from transformers import Qwen3Config

                Qwen3Config(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                            num_attention_heads=2, num_key_value_heads=2, head_dim=32,
                            max_position_embeddings=40960, torch_dtype="bfloat16").save_pretrained(target)
            (target / ".complete").write_text(name, encoding="utf-8")
        made[name] = str(target)
    return made


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """Can this machine reach the model hub? Offline, tests naming other hub models would each
    wait out the hub client's retries; with ``HF_HUB_OFFLINE=1`` they fail at once (the redirected
    names keep working)."""
    import socket

    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _catalog_of(names: tuple[str, ...]):
    from ascend_overlay.core import toggles
    from ascend_overlay.core.catalog import load_catalog
    from ascend_overlay.core.settings import Settings

    catalog = load_catalog(Settings.from_env().hotfix_dirs)
    errors = toggles.validate(names, (), catalog.names())
    if errors:
        raise OverlayError("; ".join(str(e) for e in errors))
    return catalog


def patch_settings(names: tuple[str, ...], assignments: list[str]) -> dict[str, str]:
    """``NAME=VALUE`` items for the patched run, each a variable one of the named patches declares,
    with a value it accepts (checked here, so a typo fails the command instead of testing a default)."""
    catalog = _catalog_of(names)
    declared = {v.name: v for name in names for v in catalog.get(name).variables}
    chosen: dict[str, str] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep or name.strip() not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise OverlayError(f"--set {item!r}: expected NAME=VALUE with NAME a variable of "
                               f"{', '.join(names)} (declared: {known})")
        declared[name.strip()].read({name.strip(): value})  # ConfigError (an OverlayError) names what is accepted
        chosen[name.strip()] = value
    return chosen


def phases_of(names: tuple[str, ...]) -> tuple[str, ...]:
    """The phases the named patches apply in (what the patched run must fire)."""
    catalog = _catalog_of(names)
    phases = []
    for name in names:
        phase = catalog.get(name).phase
        if phase is not Phase.IMPORT and phase.value not in phases:
            phases.append(phase.value)
    return tuple(phases) or ("engine_core",)


def run_pytest(tree: Path, tests: list[str], junit: Path, env: dict[str, str], extra: list[str],
               plugin_args: list[str] | None = None, timeout: int = 3600) -> int:
    """One pytest run in a child process; its output goes to ours (progress of a long run)."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
               *(["-p", "ascend_overlay.testing", *plugin_args] if plugin_args is not None else []), *extra, *tests]
    sys.stdout.flush()
    try:
        return subprocess.run(command, cwd=tree, env=env, timeout=timeout, check=False).returncode
    except subprocess.TimeoutExpired:
        raise OverlayError(f"the run took longer than {timeout} s (--timeout); nothing was compared") from None


@dataclass
class Comparison:
    stock: dict[str, Outcome]
    patched: dict[str, Outcome]
    seconds: tuple[float, float]

    def differences(self) -> list[tuple[str, Outcome | None, Outcome | None]]:
        ids = sorted(set(self.stock) | set(self.patched))
        return [(i, self.stock.get(i), self.patched.get(i)) for i in ids
                if (self.stock.get(i) or Outcome("absent")).status != (self.patched.get(i) or Outcome("absent")).status]


def compare(tests: list[str], patches: tuple[str, ...], *, phases: tuple[str, ...] = (), extra: tuple[str, ...] = (),
            work: Path | None = None, version: str | None = None, timeout: int = 3600,
            settings: dict[str, str] | None = None) -> Comparison:
    """Run ``tests`` (paths relative to vLLM's source root) stock, then with ``patches`` (and the
    patches' variables in ``settings`` set for that run only)."""
    from ascend_overlay.core.vllm_version import installed_vllm_version
    from ascend_overlay.testing.sdist import upstream_tree

    installed = installed_vllm_version()
    if installed is None and version is None:
        raise OverlayError("no vLLM is installed here: the tests run against the installed vLLM")
    version = version or (installed.base_version if installed is not None else None)
    assert version is not None
    tree = upstream_tree(version)
    if work is None:
        with tempfile.TemporaryDirectory(prefix="ascend-overlay-upstream-") as scratch:
            return _compare(tree, tests, patches, phases, list(extra), Path(scratch), timeout, settings or {})
    work.mkdir(parents=True, exist_ok=True)
    return _compare(tree, tests, patches, phases, list(extra), work, timeout, settings or {})


def _compare(tree: Path, tests: list[str], patches: tuple[str, ...], phases: tuple[str, ...], extra: list[str],
             work: Path, timeout: int, settings: dict[str, str]) -> Comparison:
    from ascend_overlay.main2main.sources import cache_dir

    redirect = work / "model_redirect.json"
    redirect.write_text(json.dumps(tiny_models(cache_dir() / "upstream" / "models")), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_ASCEND_OVERLAY") or k == "VLLM_ASCEND_OVERLAY_PATH"}
    env["VLLM_MODEL_REDIRECT_PATH"] = str(redirect)
    if "HF_HUB_OFFLINE" not in env and not hub_reachable():
        print("note: the model hub is unreachable: HF_HUB_OFFLINE=1 for both runs (tests needing other hub "
              "models fail fast, the same way in both)", flush=True)
        env["HF_HUB_OFFLINE"] = "1"
    phases = phases or phases_of(patches)
    results, seconds = [], []
    for label, plugin in (("stock", None), ("patched", [f"--ascend-overlay-phase={','.join(phases)}",
                                                         "--ascend-overlay-disable=*",
                                                         f"--ascend-overlay-enable={','.join(patches)}"])):
        junit = work / f"{label}.xml"
        junit.unlink(missing_ok=True)
        start = time.perf_counter()
        print(f"== {label} run: {' '.join(tests)}", flush=True)
        code = run_pytest(tree, tests, junit, env if plugin is None else {**env, **settings}, extra, plugin, timeout)
        seconds.append(time.perf_counter() - start)
        if not junit.is_file():
            raise OverlayError(f"the {label} run produced no results (pytest exit code {code}; its output is above)")
        results.append(parse_junit(junit))
    return Comparison(results[0], results[1], (seconds[0], seconds[1]))


def _summary(outcomes: dict[str, Outcome]) -> str:
    counts: dict[str, int] = {}
    for o in outcomes.values():
        counts[o.status] = counts.get(o.status, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no tests"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ascend_overlay.testing.upstream", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", nargs="+", default=["tests/v1/core"],
                        help="test paths or node ids relative to vLLM's source root (default: %(default)s)")
    parser.add_argument("--patches", required=True, help="comma list of patch names to apply in the patched run")
    parser.add_argument("--phase", default="", help="phases to fire (default: those of the patches)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="NAME=VALUE",
                        help="a variable of the named patches, set for the patched run (repeatable)")
    parser.add_argument("-k", dest="keyword", default="", help="pytest -k expression")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per run (default: %(default)s)")
    parser.add_argument("--test-timeout", type=int, default=300,
                        help="seconds per test (pytest-timeout; 0: none; default: %(default)s)")
    args, extra = parser.parse_known_args(argv)
    if args.test_timeout:
        extra = [f"--timeout={args.test_timeout}", *extra]
    patches = split_names(args.patches)
    if args.keyword:
        extra += ["-k", args.keyword]
    try:
        settings = patch_settings(patches, args.settings)
        result = compare(args.tests, patches, phases=tuple(p for p in args.phase.split(",") if p),
                         extra=tuple(extra), timeout=args.timeout, settings=settings)
    except OverlayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"stock:   {_summary(result.stock)} ({result.seconds[0]:.0f} s)")
    chosen = "".join(f" {name}={value}" for name, value in settings.items())
    print(f"patched: {_summary(result.patched)} ({result.seconds[1]:.0f} s) with {', '.join(patches)}{chosen}")
    if not result.stock:
        print("error: no tests ran", file=sys.stderr)
        return 2
    diffs = result.differences()
    if not diffs:
        print("no test changed outcome")
        return 0
    print(f"{len(diffs)} tests changed outcome:")
    for node, before, after in diffs:
        b, a = (before.status if before else "absent"), (after.status if after else "absent")
        why = f"  ({after.message})" if after and after.message else ""
        print(f"  {b} -> {a}: {node}{why}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
