"""The CLI's progress callback: rich bars on a terminal, plain dated lines in a log."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

PLAIN_EVERY_S = 30.0


@contextlib.contextmanager
def cli_progress(console: Console) -> Iterator:
    """Yield a ``progress(task, done=None, total=None)`` callback for library code."""
    if console.is_terminal:
        bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=False)
        tasks: dict[str, int] = {}

        def report(task: str, done: int | None = None, total: int | None = None) -> None:
            if done is None:
                bars.console.print(escape(task), soft_wrap=True, highlight=False)
                return
            if task not in tasks:
                tasks[task] = bars.add_task(escape(task), total=total)
            bars.update(tasks[task], completed=done, total=total)

        with bars:
            yield report
        return
    started = time.monotonic()
    last: dict[str, float] = {}

    def report(task: str, done: int | None = None, total: int | None = None) -> None:
        now = time.monotonic()
        if done is None:
            console.print(escape(task), soft_wrap=True, highlight=False)
            return
        finished = total is not None and done >= total
        if done == 0 or finished or now - last.get(task, 0.0) >= PLAIN_EVERY_S:
            last[task] = now
            console.print(f"{escape(task)}: {done}/{total if total is not None else '?'} "
                          f"({now - started:.0f} s)", soft_wrap=True, highlight=False)

    yield report
