"""CLI command groups, one module per room, each with ``register(app)``; ``cli.py`` wires them."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

_err = Console(stderr=True)


def fail(exc: Exception) -> None:
    """Print ``error: <message>`` as one line on stderr (message escaped) and exit 2."""
    _err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
    raise typer.Exit(2)
