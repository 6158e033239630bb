"""Per-kernel call counts of the simulated torch_npu, and whether the process initialised the NPU,
readable from outside the process.

The kernels run inside vLLM's worker processes, which an operator (or a test) cannot inspect. With
``VLLM_ASCEND_OVERLAY_SIMULATE_NPU_STATS=DIR`` each process that runs the simulated NPU keeps
``DIR/kernels-<pid>.json`` up to date: written when the simulator starts (so a process that never
touches the NPU, such as the API server, is on record with no kernel and no initialisation), then
rewritten (atomically) by a background thread within a fraction of a second of a call, and once more
at exit, so the counts survive however vLLM stops its workers. Without the variable the counts are
only kept in memory.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from ascend_overlay.core.settings import SIMULATE_NPU_STATS

STATS_ENV = SIMULATE_NPU_STATS  # declared, with every other variable, in settings.py
_FLUSH_INTERVAL = 0.2


class KernelCounters:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.lazy_inits = 0
        self.initialised_by: str | None = None
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._directory: Path | None = None
        self._thread: threading.Thread | None = None

    def record(self, name: str) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + 1
        self._dirty.set()

    def note_init(self, where: str) -> None:
        """The NPU was initialised in this process (``lazy_init``), by ``where``."""
        with self._lock:
            self.lazy_inits += 1
            self.initialised_by = where
        self._dirty.set()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def start(self, directory: str | None) -> None:
        """Write counts under ``directory`` from now on (no-op without one); ``OSError`` when the
        directory cannot be made or written."""
        if not directory or self._directory is not None:
            return
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        self._directory = target
        self.flush(strict=True)
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
        self.lazy_inits = 0
        self.initialised_by = None
        if self._directory is not None:
            self._dirty.set()
            self._start_thread()

    def _run(self) -> None:
        while True:
            self._dirty.wait()
            time.sleep(_FLUSH_INTERVAL)
            self.flush()

    def flush(self, strict: bool = False) -> None:
        if self._directory is None:
            return
        self._dirty.clear()
        with self._lock:
            record = {"pid": os.getpid(), "time": round(time.time(), 3), "kernels": dict(self.counts),
                      "lazy_inits": self.lazy_inits, "initialised_by": self.initialised_by}
        target = self._directory / f"kernels-{os.getpid()}.json"
        staging = target.with_suffix(".tmp")
        try:
            staging.write_text(json.dumps(record, sort_keys=True), encoding="utf-8")
            os.replace(staging, target)
        except OSError:
            if strict:
                raise
            # a stats directory removed under us must not disturb the kernels


counters = KernelCounters()


def read_records(directory: str | os.PathLike[str]) -> dict[int, dict[str, Any]]:
    """Each process's last record under ``directory``: kernel counts, NPU initialisations and by whom."""
    found: dict[int, dict[str, Any]] = {}
    for path in sorted(Path(directory).glob("kernels-*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        found[int(record["pid"])] = record
    return found


def read_counts(directory: str | os.PathLike[str]) -> dict[int, dict[str, int]]:
    """Kernel counts per process id, as last written under ``directory`` (processes that ran none included)."""
    return {pid: {str(k): int(v) for k, v in record["kernels"].items()}
            for pid, record in read_records(directory).items()}


def total_counts(directory: str | os.PathLike[str]) -> dict[str, int]:
    """Kernel counts summed over every process that wrote under ``directory``."""
    total: dict[str, int] = {}
    for counts in read_counts(directory).values():
        for name, count in counts.items():
            total[name] = total.get(name, 0) + count
    return total
