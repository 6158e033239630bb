"""Real vLLM processes for end-to-end tests: a tiny local model, ``vllm serve`` on 127.0.0.1, offline
generation in a subprocess, and the overlay's per-process report. Nothing here is mocked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from ascend_overlay.serving import server as serving
from ascend_overlay.serving.server import BIN, KV_CACHE_BYTES, SERVE_ARGS, alive, descendants, free_port, wait_gone

__all__ = ["BIN", "KV_CACHE_BYTES", "SERVE_ARGS", "VllmServer", "alive", "wait_gone", "descendants", "free_port", "REPO", "base_env",
           "run_offline", "report_by_role", "outcome", "build_wheel", "fresh_python", "run_cli", "run_cli_here",
           "run_python"]

REPO = Path(__file__).resolve().parent.parent
# The tests' vLLM runs eagerly: torch.compile of the tiny model costs ~40 s cold per distinct config on
# these 2-core machines and proves nothing about the overlay. One test runs vLLM's default compiled
# path with the overlay on (test_overlay_on_fires_each_phase_in_its_own_process passes SERVE_ARGS).
TEST_SERVE_ARGS = [*SERVE_ARGS, "--enforce-eager"]


class VllmServer(serving.VllmServer):
    """The serving harness's ``vllm serve``, eager unless the test passes its own ``serve_args``; its
    log in pytest's temporary directory (``log_dir``, set by conftest), which pytest prunes, rather
    than in a temporary file nothing deletes (tests read the log after the server has stopped)."""

    log_dir: Path | None = None

    def __init__(self, model: Path | str, env: dict[str, str], *args: Any, serve_args: list[str] | None = None,
                 **kwargs: Any) -> None:
        if kwargs.get("log_path") is None and self.log_dir is not None:
            fd, name = tempfile.mkstemp(prefix="vllm-serve-", suffix=".log", dir=self.log_dir)
            os.close(fd)
            kwargs["log_path"] = Path(name)
        super().__init__(model, env, *args, serve_args=TEST_SERVE_ARGS if serve_args is None else serve_args,
                         **kwargs)


def trusted_copy(src: Path, dst: Path) -> Path:
    """A copy of a hotfix directory with the permissions the hotfix trust rules accept (a checkout's
    may be group-writable, which they refuse)."""
    shutil.copytree(src, dst)
    for path in [dst, *dst.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dst


def base_env(overlay: bool, **extra: str) -> dict[str, str]:
    """The environment of a test run: the overlay's variables cleared, then set as asked."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_ASCEND_OVERLAY") and k != "VLLM_VERSION"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                        if p and Path(p).resolve() != REPO)
    if overlay:
        env["VLLM_ASCEND_OVERLAY"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env["PYTHONPATH"]) if p)
    env.update(extra)
    return env


OFFLINE_SCRIPT = textwrap.dedent('''
    import json, sys
    from vllm import LLM, SamplingParams

    if __name__ == "__main__":
        model, out, max_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
        prompts = json.loads(sys.argv[4])
        llm = LLM(model=model, load_format="dummy", kv_cache_memory_bytes=256 * 2**20, max_model_len=256,
                  max_num_seqs=8, seed=0, enforce_eager=True)
        params = SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True)
        outs = llm.generate(prompts, params)
        json.dump([list(o.outputs[0].token_ids) for o in outs], open(out, "w"))
''')


def run_offline(model: Path, env: dict[str, str], tmp: Path, prompts: list[str],
                max_tokens: int = 8, timeout: float = 300, python: Path | None = None) -> tuple[list[list[int]], str]:
    """Greedy offline generation with ``vllm.LLM`` in a fresh interpreter; returns token ids and the log."""
    script = tmp / "offline_generate.py"
    script.write_text(OFFLINE_SCRIPT)
    out = tmp / f"tokens-{time.monotonic_ns()}.json"
    proc = subprocess.run([str(python or sys.executable), str(script), str(model), str(out), str(max_tokens),
                           json.dumps(prompts)],
                          env=env, capture_output=True, text=True, timeout=timeout, cwd=tmp)
    if proc.returncode != 0:
        raise RuntimeError(f"offline generation failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(out.read_text()), proc.stderr


def run_python(code: str, env: dict[str, str], *interpreter_args: str,
               timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter of this environment (``interpreter_args`` before ``-c``)."""
    return subprocess.run([sys.executable, *interpreter_args, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``ascend-overlay ARGS`` as a user runs it (the overlay's variables cleared unless ``env`` says)."""
    return subprocess.run([str(BIN / "ascend-overlay"), *args], capture_output=True, text=True, timeout=timeout,
                          env=env or base_env(overlay=False), cwd=cwd)


def run_cli_here(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``ascend-overlay ARGS`` through the console script's own ``main``, in this process, as
    ``run_cli`` runs it (the overlay's variables cleared, then ``env`` set). For the commands that start
    no child process and whose cost is importing what this process has already imported (``hotfix
    new`` and ``hotfix verify`` import vLLM's modules, ~9 s of CPU in a fresh interpreter; ``check
    --vllm TREE`` the overlay and griffe); the console script itself is run as a user runs it in
    test_cli.py."""
    import contextlib
    import io

    from ascend_overlay.cli import main

    saved = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.clear()
        os.environ.update(base_env(overlay=False, **env))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(["ascend-overlay", *args], code, out.getvalue(), err.getvalue())


def report_by_role(path: Path) -> dict[str, list[dict[str, Any]]]:
    from ascend_overlay.core.report import latest_per_process, read_jsonl

    roles: dict[str, list[dict[str, Any]]] = {}
    for rec in latest_per_process(read_jsonl(str(path))):
        roles.setdefault(rec["role"], []).append(rec)
    return roles


def outcome(record: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((p for p in record["patches"] if p["name"] == name), None)


def build_wheel(directory: Path) -> Path:
    """The overlay's wheel, built from a copy of this checkout (so the checkout gets no build output)."""
    import shutil

    source = directory / "src"
    shutil.copytree(REPO, source, symlinks=True,
                    ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__", ".cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(directory / "dist"), str(source)], check=True, capture_output=True, text=True, cwd=directory)
    return next((directory / "dist").glob("ascend_overlay-*.whl"))


def fresh_python(directory: Path) -> Path:
    """A new, empty environment of this interpreter's base Python that sees this one's packages (vLLM,
    torch...) as a plain path entry: no site directory of ours, so none of the checkout's editable-install
    files (its finder, its start-up line) run there. Install the overlay into it as the test needs."""
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(directory)], check=True)
    python = directory / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "dependencies_for_test.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


def pip_install(wheel: Path, *, python: Path | None = None, target: Path | None = None) -> None:
    where = ["--python", str(python)] if python else []
    into = ["--target", str(target)] if target else []
    subprocess.run([sys.executable, "-m", "pip", *where, "install", "--no-deps", "--no-index", "-q", *into, str(wheel)],
                   check=True, capture_output=True, text=True)
