"""What the commands print to a person: tables fitted to the terminal, progress that only a terminal sees.

``rich`` does the column fitting (a long cell wraps inside its column instead of breaking the whole
table into noise), the width detection (the terminal's, or ``COLUMNS``) and colour only where a
terminal shows it. Output that goes to a pipe or a file is not fitted (a script reading it gets
whole lines, at most ``PIPE_WIDTH`` wide) and carries no colour or progress animation; ``--json``
remains the form for machines.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

# Wide enough that a pipe never sees a table wrapped for no reader; a terminal is always fitted.
PIPE_WIDTH = 1000


def console(stream: IO[str] | None = None) -> Console:
    """A console for ``stream`` (stdout by default): fitted to the terminal, plain when piped."""
    stream = stream or sys.stdout
    terminal = _is_terminal(stream)
    width = None if terminal or os.environ.get("COLUMNS", "").isdigit() else PIPE_WIDTH
    return Console(file=stream, width=width, highlight=False, soft_wrap=False, emoji=False,
                   color_system="auto" if terminal else None)


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None,
          keep: int = 1, header: bool = True, gap: int = 2) -> Table:
    """A plain table: the first ``keep`` columns keep their text whole, the others wrap to fit."""
    t = Table(title=title, title_justify="left", show_edge=False, box=None, pad_edge=False, show_header=header,
              header_style="bold", show_lines=False, padding=(0, gap, 0, 0))
    for index, name in enumerate(columns):
        t.add_column(name, no_wrap=index < keep, overflow="fold")
    for row in rows:
        t.add_row(*[cell if isinstance(cell, Text) else Text(_text(cell)) for cell in row])
    return t


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


_TRAILING = re.compile(r" +((?:\x1b\[[0-9;]*m)*)$")


def emit(*renderables: Any, stream: IO[str] | None = None, indent: int = 0) -> None:
    """Print to ``stream`` (stdout) as the console lays it out, without the spaces rich pads each
    line with to the table's width (a copied or diffed line should end where its text does)."""
    stream = stream or sys.stdout
    out = console(stream)
    with out.capture() as captured:
        for item in renderables:
            out.print(Padding(item, (0, 0, 0, indent)) if indent else item)
    stream.write("".join(_TRAILING.sub(r"\1", line) + "\n" for line in captured.get().splitlines()))
    stream.flush()


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None,
                keep: int = 1, header: bool = True, stream: IO[str] | None = None, indent: int = 0,
                gap: int = 2) -> None:
    emit(table(columns, rows, title=title, keep=keep, header=header, gap=gap), stream=stream, indent=indent)


@contextmanager
def progress(description: str, total: int | None, stream: IO[str] | None = None) -> Iterator[Any]:
    """A progress bar on a terminal; nothing at all when ``stream`` (stderr) is piped.

    Yields ``advance(text)``: one step done, and the text names the next one."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    out = console(stream or sys.stderr)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=out, transient=True, disable=not out.is_terminal)
    with bar:
        task = bar.add_task(description, total=total)

        def advance(text: str | None = None) -> None:
            bar.update(task, advance=1, description=text or description)

        yield advance
