"""How library code reports progress: a plain callback, so only the CLI knows about rich.

``progress(task, done, total)`` is called with a task name and counts as work advances;
``progress(message)`` (no counts) is a one-line note. ``None`` means silent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Progress(Protocol):
    def __call__(self, task: str, done: int | None = None, total: int | None = None) -> None: ...


def silent(task: str, done: int | None = None, total: int | None = None) -> None:
    """The do-nothing progress callback."""


def counter(progress: Progress | None, task: str, total: int) -> Callable[[int], None]:
    """A ``step(n)`` that advances ``task`` by n and reports done/total (starts at 0)."""
    report = progress or silent
    state = {"done": 0}
    report(task, 0, total)

    def step(n: int = 1) -> None:
        state["done"] += n
        report(task, state["done"], total)

    return step
