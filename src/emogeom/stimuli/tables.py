"""Rows of a stimulus file as researchers keep them: JSON Lines, CSV or TSV, ``#`` comment
lines, a header or none, and a column mapping for files whose names differ from emogeom's.

Every row comes back as ``(line number, {canonical field: value, ...extra columns})``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

from emogeom.errors import EmogeomError

ID_COLUMNS = ("id", "passage_id")
_DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}


def parse_columns(spec: str | dict[str, str] | None, known: tuple[str, ...]) -> dict[str, str]:
    """``'text=passage,emotion=label'`` (or a dict) → ``{field: file column}``; a column may be
    a 1-based position in a file without a header (``text=3``)."""
    if spec is None or spec == "":
        return {}
    pairs = spec.items() if isinstance(spec, dict) else (
        part.split("=", 1) if "=" in part else (part, "") for part in str(spec).split(","))
    out: dict[str, str] = {}
    for name, column in pairs:
        name, column = str(name).strip(), str(column).strip()
        if name not in known or not column:
            raise EmogeomError(f"cannot read the column mapping '{spec}': give field=column "
                               f"pairs such as text=passage,emotion=label (fields: "
                               f"{', '.join(known)})")
        out[name] = column
    return out


def read_table(path: Path, text: str, fields: tuple[tuple[str, ...], tuple[str, ...]],
               columns: dict[str, str] | None = None, labels: tuple[str, ...] = ()
               ) -> list[tuple[int, dict]]:
    """(line number, row) pairs of ``text`` read as JSON Lines (``.jsonl``/``.json``) or as a
    delimited table (``.csv``, ``.tsv``); lines starting with ``#`` are comments. ``fields``:
    (needed, optional) canonical names; ``columns`` maps them to the file's names;
    ``labels`` are values of the first needed field that mark a first row as data, not a
    header."""
    columns = columns or {}
    delimiter = _DELIMITERS.get(path.suffix.lower())
    if delimiter is None:
        return [(n, _renamed(row, columns)) for n, row in _jsonl_rows(path, text)]
    return _table_rows(path, text, delimiter, fields, columns, labels)


def _renamed(row: dict, columns: dict[str, str]) -> dict:
    """A JSON row with the mapped keys renamed to emogeom's field names."""
    out = dict(row)
    for name, column in columns.items():
        if column in row:
            out[name] = out.pop(column)
    return out


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[int, dict]]:
    """(line number, object) pairs of a JSON Lines text; blank and ``#`` lines skipped."""
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as exc:  # bad JSON, a huge number, deep nesting
            msg = getattr(exc, "msg", "a number or nesting too large")
            raise EmogeomError(f"{path}:{n}: not valid JSON ({msg}); fix that line") from None
        if not isinstance(row, dict):
            raise EmogeomError(f"{path}:{n}: each line must be a JSON object")
        yield n, row


def _uncommented(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of a delimited text without its ``#`` comment lines and blank
    lines; a line inside a quoted multi-line field is never taken for a comment."""
    inside = False
    for n, line in enumerate(text.splitlines(keepends=True), start=1):
        if not inside and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.count('"') % 2:
            inside = not inside
        yield n, line


def _table_rows(path: Path, text: str, delimiter: str, fields, columns: dict[str, str],
                labels: tuple[str, ...]) -> list[tuple[int, dict]]:
    """Rows of a CSV/TSV text, with or without a header, comments dropped."""
    kind = "TSV" if delimiter == "\t" else "CSV"
    lines = list(_uncommented(text))
    if not lines:
        raise EmogeomError(f"{path}:1: {kind} file holds no rows; add a header naming the "
                           f"columns {_wants(fields)} and one row per text")
    records = _records(path, kind, lines, delimiter)
    first_n, first = records[0]
    cells = [c.strip() for c in first]
    if _is_header(cells, fields, columns, labels):
        names = _header_names(path, first_n, kind, cells, fields, columns)
        body = records[1:]
        if not body:
            raise EmogeomError(f"{path}:{first_n + 1}: {kind} file has a header but no rows; "
                               "add one row per text under the header")
    else:
        names = _positional_names(path, first_n, kind, cells, fields, columns, labels)
        body = records
    rows = []
    for n, record in body:
        row = {name: value for name, value in zip(names, record) if name}
        rows.append((n, row))
    return rows


def _records(path: Path, kind: str, lines: list[tuple[int, str]], delimiter: str
             ) -> list[tuple[int, list[str]]]:
    """Records of a table (a quoted field may span lines), each with its first line number."""
    out: list[tuple[int, list[str]]] = []
    buffer, start = "", 0
    for n, line in lines:
        buffer, start = buffer + line, start or n
        if buffer.count('"') % 2 == 0:
            out += _parse(path, kind, start, buffer, delimiter)
            buffer, start = "", 0
    if buffer:
        out += _parse(path, kind, start, buffer, delimiter)
    return out


def _parse(path: Path, kind: str, n: int, chunk: str, delimiter: str
           ) -> list[tuple[int, list[str]]]:
    try:
        return [(n, cells) for cells in csv.reader(io.StringIO(chunk), delimiter=delimiter)]
    except csv.Error as exc:
        raise EmogeomError(f"{path}:{n}: not valid {kind} ({exc}); fix that line") from None


def _wants(fields) -> str:
    needed, optional = fields
    return f"{', '.join(needed)} (optional: {', '.join(optional)})"


def _is_header(cells: list[str], fields, columns: dict[str, str],
               labels: tuple[str, ...]) -> bool:
    """A first row is a header when it names a known or mapped column, or when it holds no
    label value (every data row of a corpus holds its emotion label)."""
    names = {n.lower() for group in fields for n in group} | set(ID_COLUMNS)
    names |= {c.lower() for c in columns.values() if not c.isdigit()}
    lowered = {c.lower() for c in cells}
    if lowered & names:
        return True
    return bool(labels) and not lowered & {label.lower() for label in labels}


def _header_names(path: Path, n: int, kind: str, cells: list[str], fields,
                  columns: dict[str, str]) -> list[str | None]:
    """Each header column's field name (mapped, canonical, or kept as given for extra
    columns); a needed field without a column is refused, naming the fix."""
    needed, optional = fields
    by_column = {column.lower(): name for name, column in columns.items()}
    canonical = {name.lower(): name for name in (*needed, *optional)}
    names: list[str | None] = []
    for cell in cells:
        key = cell.lower()
        name = by_column.get(key) or canonical.get(key)
        if name is None and key in ID_COLUMNS and "id" in (*needed, *optional):
            name = "id"
        names.append(name or cell or None)
    missing = [f for f in needed if f not in names]
    if missing:
        raise EmogeomError(
            f"{path}:{n}: {kind} header has {', '.join(cells)}; it needs {_wants(fields)}; "
            "or map your columns with --columns, e.g. --columns text=passage,emotion=label")
    return names


def _positional_names(path: Path, n: int, kind: str, cells: list[str], fields,
                      columns: dict[str, str], labels: tuple[str, ...]) -> list[str | None]:
    """Field names of a headerless table: positions from the mapping (``text=3``); else, in a
    corpus of 2 or 3 columns, the column holding an emotion label in the first row is the
    emotion, the longest other cell the text and a third column the id."""
    needed, _ = fields
    width = len(cells)
    if columns:
        bad = [c for c in columns.values() if not re.fullmatch(r"\d+", c)]
        if bad:
            raise EmogeomError(f"{path}:{n}: {kind} file has no header, so --columns must give "
                               f"positions (e.g. emotion=1,text=3), not names like '{bad[0]}'")
        names: list[str | None] = [None] * width
        for name, column in columns.items():
            pos = int(column) - 1
            if not 0 <= pos < width:
                raise EmogeomError(f"{path}:{n}: column {column} of --columns is outside the "
                                   f"file's {width} columns")
            names[pos] = name
        return names
    lowered = [c.lower() for c in cells]
    found = [k for k, c in enumerate(lowered) if c in {label.lower() for label in labels}]
    if tuple(needed) == ("emotion", "text") and width in (2, 3) and len(found) == 1:
        names: list[str | None] = ["id"] * width
        names[found[0]] = "emotion"
        others = [k for k in range(width) if k != found[0]]
        names[max(others, key=lambda k: len(cells[k]))] = "text"
        return names
    if tuple(needed) == ("text",) and width in (1, 2):
        return ["text"] if width == 1 else ["id", "text"]
    raise EmogeomError(f"{path}:{n}: {kind} file has no header and {width} columns; add a "
                       f"header naming the columns {_wants(fields)} or give their positions "
                       "with --columns, e.g. emotion=1,text=3")
