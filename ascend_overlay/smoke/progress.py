"""What a long run is doing: a line per step, and a line every few seconds while it waits.

A model's startup takes minutes on an NPU (and one on 2 CPU cores); a gate that prints nothing that
long looks hung. Every line says the stage, the time since the run began, and what it waits for;
while waiting for the server it also shows vLLM's newest log line, so a stuck step is visible.

Plain lines rather than a ``rich`` progress display, on purpose: these lines are the run's record
(CI keeps them, a reviewer reads them next to smoke.md), and a CI job that prints nothing for
fifteen minutes of model loading is killed as hung, where a live display that is quiet when piped
would print nothing. The commands' progress bars (``cli/term.py``) are rich, and quiet when piped.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None, every: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        self.every = every
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 60}:{seconds % 60:02d}"

    def say(self, stage: str, message: str) -> None:
        with self._lock:
            print(f"[smoke {self.elapsed()} {stage}] {message}", file=self.stream, flush=True)

    @contextmanager
    def waiting(self, stage: str, what: str, limit: float | None = None,
                detail: Callable[[], str] | None = None) -> Iterator[None]:
        """Say every ``every`` seconds that ``what`` is still awaited (with ``detail()`` if given)."""
        began = time.monotonic()
        done = threading.Event()

        def tick() -> None:
            while not done.wait(self.every):
                waited = time.monotonic() - began
                budget = f" of {limit:.0f} s" if limit else ""
                extra = detail() if detail else ""
                self.say(stage, f"waiting for {what}: {waited:.0f} s{budget}" + (f" | {extra}" if extra else ""))

        ticker = threading.Thread(target=tick, name="smoke-progress", daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()
