"""``ascend-overlay run -- COMMAND``: run any command with the overlay on in every Python process it starts.

It sets ``VLLM_ASCEND_OVERLAY=1`` and puts the overlay's bootstrap directory first on ``PYTHONPATH``,
then replaces itself with the command (``exec``), so signals and exit codes are the command's own.
Environment variables are what vLLM's spawned EngineCore and worker processes inherit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import site
import sys
from pathlib import Path

import ascend_overlay


def bootstrap_dir() -> str:
    return str(Path(ascend_overlay.__file__).resolve().parent / "doors" / "bootstrap")


def overlay_environment(environ: dict[str, str]) -> dict[str, str]:
    env = dict(environ)
    env["VLLM_ASCEND_OVERLAY"] = "1"
    entries = [bootstrap_dir()]
    package_parent = str(Path(ascend_overlay.__file__).resolve().parent.parent)
    site_dirs = {str(Path(p).resolve()) for p in site.getsitepackages() + [site.getusersitepackages()]}
    if package_parent not in site_dirs:
        entries.append(package_parent)  # a checkout that is not installed: children must import it too
    existing = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in entries]
    env["PYTHONPATH"] = os.pathsep.join(entries + existing)
    return env


def find_command(name: str, path: str | None) -> str | None:
    """``name`` on PATH, else beside this interpreter: ``vllm`` is installed next to ``ascend-overlay``
    in the same environment, which is often not on PATH (a venv used without activating it)."""
    found = shutil.which(name, path=path)
    if found is None and os.sep not in name:
        found = shutil.which(name, path=str(Path(sys.executable).parent))
    return found


def _run(args: argparse.Namespace) -> int:
    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("ascend-overlay run: give the command to run, e.g. ascend-overlay run -- vllm serve MODEL",
              file=sys.stderr)
        return 2
    from ascend_overlay.doors.ray_workers import ray_missing

    refusal = ray_missing(command)
    if refusal is not None:
        print(f"ascend-overlay run: {refusal}", file=sys.stderr)
        return 2
    from ascend_overlay.doors.bootstrap.precompile import precompile

    precompile()
    env = overlay_environment(dict(os.environ))
    if args.simulate_npu:
        from ascend_overlay.npu.sim.cli import simulation_environment

        env, refusal = simulation_environment(env)
        if refusal is not None:
            print(f"ascend-overlay run: --simulate-npu refused: {refusal}", file=sys.stderr)
            return 2
    if args.strict:
        env["VLLM_ASCEND_OVERLAY_STRICT"] = "1"
    if args.report:
        env["VLLM_ASCEND_OVERLAY_REPORT"] = os.path.abspath(args.report)
    executable = find_command(command[0], env.get("PATH"))
    if executable is None:
        print(f"ascend-overlay run: command not found: {command[0]} (looked on PATH and in "
              f"{Path(sys.executable).parent}, where ascend-overlay is installed)", file=sys.stderr)
        return 127
    os.execve(executable, command, env)
    return 0  # not reached


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a command with the overlay active in every process it starts",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strict", action="store_true", help="fail instead of skipping a broken patch")
    p.add_argument("--report", metavar="PATH", help="append per-process JSON lines to PATH")
    p.add_argument("--simulate-npu", action="store_true",
                   help="run the NPU platform on a simulated Ascend NPU (CPU memory; refused where a real "
                        "torch_npu is importable); sets VLLM_ASCEND_OVERLAY_SIMULATE_NPU=1 for the command")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    p.set_defaults(handler=_run)
