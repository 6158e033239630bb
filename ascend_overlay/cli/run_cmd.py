"""``ascend-overlay run -- COMMAND``: run any command with the overlay on in every Python process it starts.

It sets ``VLLM_ASCEND_OVERLAY=1`` and puts the overlay's bootstrap directory first on ``PYTHONPATH``
(environment variables are what vLLM's spawned EngineCore and worker processes inherit), says which
settings would be ignored, runs the command, and when it exits prints what each process applied:
a short table read from the report (``--report FILE``, else a private temporary file removed
afterwards). The exit status is the command's own; a command killed by a signal makes ``run`` die
of the same signal.

The command stays in ``run``'s process group, so Ctrl-C in a terminal reaches it directly, as it
would without ``run``. A signal sent to ``run`` itself (``kill``, a supervisor's SIGTERM) is passed
on to the command; one the terminal sent to the whole group is not sent twice. Where the platform
cannot tell the two apart (no ``sigtimedwait``: not Linux), ``run`` replaces itself with the command
as it did before and prints no table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time
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
    _say_dropped(env)
    if not _can_supervise():
        os.execve(executable, command, env)
    private = None
    if not env.get("VLLM_ASCEND_OVERLAY_REPORT"):
        private = tempfile.mkdtemp(prefix="ascend-overlay-run-")   # 0700: the report is ours alone
        env["VLLM_ASCEND_OVERLAY_REPORT"] = os.path.join(private, "report.jsonl")
    try:
        started = time.time()
        status = supervise(executable, command, env)
        if env.get("VLLM_ASCEND_OVERLAY_LOG", "").strip().lower() != "off":
            _summary(env["VLLM_ASCEND_OVERLAY_REPORT"], started if private is None else None, command[0])
    finally:
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)
    return _exit_like(status)


def _say_dropped(env: dict[str, str]) -> None:
    from ascend_overlay.core.catalog import load_catalog
    from ascend_overlay.core.drops import dropped
    from ascend_overlay.core.settings import Settings

    try:
        known = load_catalog(Settings.from_env(env).hotfix_dirs).names()
    except Exception:  # noqa: BLE001 - the processes report a catalog that cannot load; run must still run
        known = None
    for line in dropped(env, known):
        print(f"ascend-overlay run: warning: {line}", file=sys.stderr)


# Signals passed on to the command when someone sends them to ``run``; SIGCHLD wakes the wait.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def _can_supervise() -> bool:
    return hasattr(signal, "sigtimedwait") and hasattr(signal, "pthread_sigmask")


def supervise(executable: str, command: list[str], env: dict[str, str]) -> int:
    """Run the command to its end, passing on the signals sent to this process; its return code
    (negative: killed by that signal, as ``subprocess`` says)."""
    waited = {*FORWARDED, signal.SIGCHLD}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, waited)

    def unblock() -> None:  # in the child, before exec: the command starts with the mask we found
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    try:
        proc = subprocess.Popen(command, executable=executable, env=env, preexec_fn=unblock)
        while True:
            info = signal.sigtimedwait(waited, 1.0)
            if info is not None and info.si_signo != signal.SIGCHLD and info.si_code <= 0:
                # si_code <= 0: sent by a process (kill, sigqueue). The terminal's Ctrl-C comes from the
                # kernel (SI_KERNEL, > 0) to the whole foreground group: the command has it already.
                try:
                    proc.send_signal(info.si_signo)
                except ProcessLookupError:
                    pass
            if proc.poll() is not None:
                return proc.returncode
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _exit_like(status: int) -> int:
    """The command's exit status; a command killed by a signal makes this process die of it too."""
    if status >= 0:
        return status
    sig = -status
    try:
        signal.signal(sig, signal.SIG_DFL)
    except (OSError, ValueError):
        pass  # SIGKILL and SIGSTOP have no handler to reset
    try:
        os.kill(os.getpid(), sig)
    except OSError:
        pass
    return 128 + sig


def _summary(report_path: str, since: float | None, name: str) -> None:
    """What each process applied, from the report (only this run's snapshots of a shared file)."""
    from ascend_overlay.cli import term
    from ascend_overlay.core.report_view import load

    try:
        view = load(report_path, since=since)
    except OSError:
        view = None
    if view is None or not view.processes:
        print(f"ascend-overlay run: no process of `{name}` reported (a process reports once one of vLLM's "
              "phases runs in it with the overlay on)", file=sys.stderr)
        return
    rows = [[p.role, p.pid, ", ".join(p.in_effect) or "-", p.skipped, p.failed] for p in view.processes]
    print(f"ascend-overlay run: what the overlay did in each process of `{name}`:", file=sys.stderr)
    term.print_table(["role", "pid", "applied", "skipped", "failed"], rows, keep=2, stream=sys.stderr)
    for p in view.processes:
        for problem in p.problems:
            print(f"  problem in {p.label}: {problem}", file=sys.stderr)
    if since is not None:
        print(f"  details: ascend-overlay report {report_path}", file=sys.stderr)


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
