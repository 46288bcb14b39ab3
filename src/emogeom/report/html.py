"""HTML pieces of the report: style, escaped tables, number cells, embedded figures.

Every text that reaches the page goes through ``html.escape``; every figure is embedded as
PNG data and also saved under ``figures/`` as PNG and PDF."""

from __future__ import annotations

import base64
import io
import re
from html import escape
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from emogeom import artefacts as art

CSS = """
body{font-family:system-ui,sans-serif;max-width:1280px;margin:2em auto;color:#222;padding:0 1em;
line-height:1.4}
h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:2em}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f3f3f3;font-weight:600} td.n{text-align:right;white-space:nowrap}
.figs{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.figs img{max-width:100%;height:auto;border:1px solid #eee}
.note{color:#555;font-size:13px;max-width:1000px}
nav{font-size:13px;columns:2;max-width:700px} nav a{color:#1a5fb4}
"""

DPI = 110
PX_PER_INCH = 95  # shown size: two 6.4-inch figures side by side fill the page
_NUMBER = re.compile(r"^[-−–]?[\d.]")


def slug(text: str) -> str:
    """A file-name-safe form of a label (figure files)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def save_figure(fig: Figure, figdir: Path, name: str) -> tuple[str, int]:
    """Save a figure as ``figures/<name>.png`` and ``.pdf``; return the PNG base64-encoded
    and the width to show it at (CSS pixels)."""
    width = round(float(fig.get_size_inches()[0]) * PX_PER_INCH)
    png, pdf = io.BytesIO(), io.BytesIO()
    fig.savefig(png, format="png", dpi=DPI)
    fig.savefig(pdf, format="pdf")
    plt.close(fig)
    data = png.getvalue()
    art.atomic_write_bytes(figdir / f"{name}.png", data)
    art.atomic_write_bytes(figdir / f"{name}.pdf", pdf.getvalue())
    return base64.b64encode(data).decode(), width


def img(b64: str, alt: str, width: int) -> str:
    return f'<img width="{width}" alt="{escape(alt)}" src="data:image/png;base64,{b64}">'


def figure(fig: Figure, figdir: Path, name: str, alt: str) -> str:
    """Save ``fig`` (PNG + PDF) and return its ``<img>`` tag."""
    b64, width = save_figure(fig, figdir, slug(name))
    return img(b64, alt, width)


def figs(tags: list[str]) -> str:
    return f"<div class='figs'>{''.join(tags)}</div>" if tags else ""


def table(header: list[str], rows: list[list[object]]) -> str:
    """An escaped HTML table inside a horizontally scrolling box."""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(_td(c, k) for k, c in enumerate(r)) + "</tr>"
                   for r in rows)
    return f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>"


def _td(cell: object, column: int) -> str:
    """A cell, right-aligned and unbroken where it is a number (the first column never)."""
    text = str(cell)
    cls = " class='n'" if column and _NUMBER.match(text) else ""
    return f"<td{cls}>{escape(text)}</td>"


def note(text: str) -> str:
    return f"<p class='note'>{escape(text)}</p>"


def fmt(x: float | None, spec: str = ".3f") -> str:
    """A number for a table; an en dash where it is missing (null in JSON, NaN)."""
    if x is None or x != x:
        return "–"
    return format(x, spec)


def num(text: object, spec: str = ".3f") -> str:
    """A CSV cell or JSON value as a formatted number; an en dash where it is empty."""
    if text is None or text == "":
        return "–"
    try:
        return fmt(float(text), spec)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(text)


def ci(row: dict, key: str, low: str, high: str) -> str:
    """``ρ [low, high]`` from a CSV row (dashes where missing)."""
    if not row.get(low) and not row.get(high):
        return num(row.get(key))
    return f"{num(row.get(key))} [{num(row.get(low))}, {num(row.get(high))}]"
