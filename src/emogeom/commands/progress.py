"""The CLI's progress callback: rich bars on a terminal, plain lines in a log.

Plain lines (output not a terminal, e.g. ``cmd > log``): ``task: done/total (elapsed s)`` when a
task starts, when it ends and at most every ``PLAIN_EVERY_S`` seconds as it advances; when no
line was printed for ``PLAIN_EVERY_S`` seconds (one long batch), the latest count is repeated
with "still working", so a log shows life at least that often."""

from __future__ import annotations

import contextlib
import threading
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
    lock = threading.Lock()
    state: dict = {"printed": started, "latest": None}

    def say(text: str) -> None:
        console.print(text, soft_wrap=True, highlight=False)
        state["printed"] = time.monotonic()

    def count_line(task: str, done: int, total: int | None, now: float, tail: str = "") -> str:
        return (f"{escape(task)}: {done}/{total if total is not None else '?'} "
                f"({now - started:.0f} s{tail})")

    def report(task: str, done: int | None = None, total: int | None = None) -> None:
        now = time.monotonic()
        with lock:
            if done is None:
                say(escape(task))
                return
            finished = total is not None and done >= total
            state["latest"] = None if finished else (task, done, total)
            if done == 0 or finished or now - last.get(task, 0.0) >= PLAIN_EVERY_S:
                last[task] = now
                say(count_line(task, done, total, now))

    stop = threading.Event()

    def heartbeat() -> None:
        # A batch can outlast PLAIN_EVERY_S: repeat the latest count so a log shows life.
        while not stop.wait(PLAIN_EVERY_S / 3):
            with lock:
                now = time.monotonic()
                if state["latest"] is not None and now - state["printed"] >= PLAIN_EVERY_S:
                    say(count_line(*state["latest"], now, "; still working"))

    beat = threading.Thread(target=heartbeat, name="emogeom-progress", daemon=True)
    beat.start()
    try:
        yield report
    finally:
        stop.set()
        beat.join()
