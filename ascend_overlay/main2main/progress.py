"""Progress for the long main2main commands (drift, wheel downloads), shown only on a terminal.

``rich`` draws it (a vLLM dependency already, declared in pyproject for main2main): a spinner with
the current step on stderr, so a person waiting on a 15-second comparison sees it move, while a
pipe, a file or CI gets nothing but the result.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any


class Progress:
    """``with Progress() as say: say("step")``: a transient status line on a terminal, silence elsewhere."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self._status: Any = None

    @property
    def live(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def __enter__(self) -> Progress:
        if self.live:
            try:
                from rich.console import Console
            except ImportError:  # rich missing: plain silence, never a failure
                return self
            self._status = Console(file=self.stream).status("starting")
            self._status.start()
        return self

    def __call__(self, text: str) -> None:
        if self._status is not None:
            self._status.update(text)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
