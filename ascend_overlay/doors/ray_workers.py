"""The overlay in vLLM's Ray workers: carry its variables to them, and find the ones that run stock.

Ray starts vLLM's workers as actors in Ray's own worker processes, children of the node's raylet, not
of ``vllm serve``. When the cluster was started by a plain ``ray start`` (an operator's, outside
``ascend-overlay run``), those processes have none of the overlay's variables. vLLM copies the
driver's ``VLLM_*`` variables to a worker, but only once the actor already exists
(``RayWorkerProc.initialize_worker``, ``update_environment_variables``): too late, because the actor's
arguments (the ``VllmConfig``, whose device is ``npu``) are unpickled first, and the platform is
resolved first. What reaches a Ray worker process *at start* is the actor's Ray runtime environment,
which vLLM builds from ``parallel_config.ray_runtime_env``; the ``ray_workers_overlay`` patches put the
overlay's variables into it (a value the operator put there is kept). With the package installed on
the node, the worker then activates at interpreter start exactly as a spawned vLLM worker does.

A node without the package cannot activate at all, and nothing on that node can say so. So the
driver asks every worker, once they are up, whether the overlay is active there (a probe sent by
value, which needs nothing of ours on the worker), and names the hosts that run stock.
"""

from __future__ import annotations

import logging
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ascend_overlay.core.settings import PREFIX
from ascend_overlay.core.vocabulary import Phase

log = logging.getLogger("ascend_overlay")

INSTALL_HINT = "pip install 'ascend-overlay[ray]'"


def overlay_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """The overlay's variables as this process has them: what a worker needs to act alike."""
    return {k: v for k, v in environ.items() if k.startswith(PREFIX)}


def carry_into(runtime_env: dict[str, Any] | None, environ: Mapping[str, str]) -> dict[str, Any]:
    """``runtime_env`` with the overlay's variables added to its ``env_vars``; a variable the runtime
    environment sets already keeps its value (the operator's word wins over the driver's)."""
    runtime_env = runtime_env if runtime_env is not None else {}
    carried = overlay_variables(environ)
    if carried:
        env_vars = runtime_env.setdefault("env_vars", {})
        for name, value in carried.items():
            env_vars.setdefault(name, value)
    return runtime_env


# -- which workers run stock --------------------------------------------------------------------------

_PROBE_SOURCE = '''
def ascend_overlay_probe(worker=None):
    import os, socket, sys
    activation = sys.modules.get("ascend_overlay.doors.activation")
    overlay = activation.current() if activation is not None else None
    return {"host": socket.gethostname(), "pid": os.getpid(), "active": overlay is not None,
            "installed": "ascend_overlay" in sys.modules,
            "phases": list(overlay.report.phases) if overlay is not None else []}
'''


def make_probe() -> Callable[..., dict[str, Any]]:
    """A function that says whether the overlay is active in the process that calls it.

    It is built in a namespace no module owns, so cloudpickle (vLLM's ``collective_rpc``) sends it by
    value: a worker without ``ascend_overlay`` installed can still run it and answer "stock".
    """
    namespace: dict[str, Any] = {"__name__": "ascend_overlay_probe_by_value"}
    exec(compile(_PROBE_SOURCE, "<ascend-overlay ray probe>", "exec"), namespace)
    probe: Callable[..., dict[str, Any]] = namespace["ascend_overlay_probe"]
    return probe


def stock_workers(answers: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The answers of workers where the overlay did not reach the worker phase."""
    return [a for a in answers if not a.get("active") or Phase.WORKER.value not in a.get("phases", ())]


def stock_message(stock: Sequence[dict[str, Any]], total: int) -> str:
    hosts = sorted({a["host"] for a in stock})
    pids = ", ".join(f"{a['host']}:{a['pid']}" for a in stock)
    missing = sorted({a["host"] for a in stock if not a.get("installed")})
    cause = (f"ascend-overlay is not installed there ({', '.join(missing)}): install it on every node "
             f"({INSTALL_HINT}) in the environment `ray start` runs from" if missing else
             "the overlay is installed there but did not reach the worker phase: run `ascend-overlay status` "
             "on that node, and check that nothing there sets VLLM_ASCEND_OVERLAY=0")
    return (f"{len(stock)} of {total} Ray workers run stock vLLM, without the overlay, on host(s) "
            f"{', '.join(hosts)} (pids {pids}); {cause}")


def check_workers(collective_rpc: Callable[..., list[Any]]) -> list[dict[str, Any]]:
    """Ask every worker through vLLM's ``collective_rpc`` and report the hosts that run stock: logged
    as a warning, and a problem in this process's report (raised in strict mode). Returns the answers;
    a probe that cannot be sent is logged and changes nothing."""
    from ascend_overlay.core.errors import OverlayError
    from ascend_overlay.doors import activation

    try:
        answers = list(collective_rpc(make_probe(), timeout=60))
    except Exception as exc:  # the check must never take the executor down
        log.warning("ascend-overlay: could not ask the Ray workers whether the overlay is active: %s", exc)
        return []
    stock = stock_workers(answers)
    overlay = activation.current()
    if stock:
        message = stock_message(stock, len(answers))
        if overlay is not None:
            overlay.problem("ray", ",".join(sorted({a["host"] for a in stock})), message, OverlayError(message))
            overlay.emit("ray_workers")
        else:
            log.warning("ascend-overlay: %s", message)
    else:
        log.info("ascend-overlay: the overlay is active in all %d Ray workers (%s)", len(answers),
                 ", ".join(f"{a['host']}:{a['pid']}" for a in answers))
    return answers


# -- Ray asked for, Ray missing -----------------------------------------------------------------------

def ray_requested(argv: Sequence[str]) -> bool:
    """Whether a command line asks vLLM for the Ray executor (``--distributed-executor-backend ray``)."""
    flag = "--distributed-executor-backend"
    for index, arg in enumerate(argv):
        if arg == flag and index + 1 < len(argv) and argv[index + 1] == "ray":
            return True
        if arg == f"{flag}=ray":
            return True
    return False


def _ray_installed() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):  # a broken or blocked install counts as none
        return False


def ray_missing(argv: Sequence[str]) -> str | None:
    """Why this command cannot run here, when it asks for Ray and Ray is not installed; else None."""
    if not ray_requested(argv) or _ray_installed():
        return None
    return (f"`{shlex.join(argv[:2])} ... --distributed-executor-backend ray` needs Ray, which is not installed "
            f"in this environment ({sys.prefix}); "
            f"install it with: {INSTALL_HINT} (and the same on every node of the Ray cluster)")
