"""Per-kernel call counts of the simulated torch_npu, readable from outside the process.

The kernels run inside vLLM's worker processes, which an operator (or a test) cannot inspect. With
``VLLM_ASCEND_OVERLAY_SIMULATE_NPU_STATS=DIR`` each process keeps ``DIR/kernels-<pid>.json`` up to
date: a background thread rewrites it (atomically) within a fraction of a second of a call, and
once more at exit, so the counts survive however vLLM stops its workers. Without the variable the
counts are only kept in memory.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from pathlib import Path

from ascend_overlay.core.settings import SIMULATE_NPU_STATS

STATS_ENV = SIMULATE_NPU_STATS  # declared, with every other variable, in settings.py
_FLUSH_INTERVAL = 0.2


class KernelCounters:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._directory: Path | None = None
        self._thread: threading.Thread | None = None

    def record(self, name: str) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + 1
        self._dirty.set()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def start(self, directory: str | None) -> None:
        """Write counts under ``directory`` from now on (no-op without one)."""
        if not directory or self._directory is not None:
            return
        self._directory = Path(directory)
        self._directory.mkdir(parents=True, exist_ok=True)
        atexit.register(self.flush)
        os.register_at_fork(after_in_child=self._restart_in_child)
        self._start_thread()

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name="npu-sim-counters", daemon=True)
        self._thread.start()

    def _restart_in_child(self) -> None:
        # A forked child is a process of its own: its own file, its own counts, a live flusher.
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self.counts = {}
        if self._directory is not None:
            self._start_thread()

    def _run(self) -> None:
        while True:
            self._dirty.wait()
            time.sleep(_FLUSH_INTERVAL)
            self.flush()

    def flush(self) -> None:
        if self._directory is None:
            return
        self._dirty.clear()
        if not self.counts:
            return  # a process that ran no kernel (the API server, say) leaves no file
        record = {"pid": os.getpid(), "time": round(time.time(), 3), "kernels": self.snapshot()}
        target = self._directory / f"kernels-{os.getpid()}.json"
        staging = target.with_suffix(".tmp")
        try:
            staging.write_text(json.dumps(record, sort_keys=True), encoding="utf-8")
            os.replace(staging, target)
        except OSError:
            pass  # a stats directory removed under us must not disturb the kernels


counters = KernelCounters()


def read_counts(directory: str | os.PathLike[str]) -> dict[int, dict[str, int]]:
    """Kernel counts per process id, as last written under ``directory``."""
    found: dict[int, dict[str, int]] = {}
    for path in sorted(Path(directory).glob("kernels-*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        found[int(record["pid"])] = {str(k): int(v) for k, v in record["kernels"].items()}
    return found


def total_counts(directory: str | os.PathLike[str]) -> dict[str, int]:
    """Kernel counts summed over every process that wrote under ``directory``."""
    total: dict[str, int] = {}
    for counts in read_counts(directory).values():
        for name, count in counts.items():
            total[name] = total.get(name, 0) + count
    return total
