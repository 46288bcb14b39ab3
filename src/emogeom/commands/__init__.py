"""CLI command groups, one module per room, each with ``register(app)``; ``cli.py`` wires them."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

_err = Console(stderr=True)

DEVICE_HELP = ("auto (CUDA if present, else MPS, else CPU) | cpu | cuda | cuda:N | mps. A "
               "model larger than one GPU's free memory spreads over the visible GPUs.")
MAX_MEMORY_HELP = ("Memory per device when a model spreads over GPUs (device_map auto), e.g. "
                   "'0=20GiB,1=20GiB,cpu=64GiB', or one size for every GPU: '20GiB'.")


def device_option(default: str | None = "auto"):
    """The ``--device`` option every command that loads a model takes."""
    return typer.Option(default, "--device", help=DEVICE_HELP)


def max_memory_option():
    """The ``--max-memory`` option that goes with ``--device``."""
    return typer.Option(None, "--max-memory", help=MAX_MEMORY_HELP)


def print_error(line: str) -> None:
    """``error: <line>`` as one line on stderr (escaped, never wrapped)."""
    _err.print(f"[bold red]error:[/] {escape(line)}", soft_wrap=True, highlight=False)


def fail(exc: Exception) -> None:
    """Print ``error: <message>`` as one line on stderr and exit 2."""
    print_error(str(exc))
    raise typer.Exit(2)
