"""Rows of a stimulus file as researchers keep them: JSON Lines, CSV or TSV, ``#`` comment
lines, a header or none, and a column mapping for files whose names differ from emogeom's.

Every row comes back as ``(line number, {canonical field: value, ...extra columns})``.
"""

from __future__ import annotations

import csv
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


def _lines(text: str) -> list[str]:
    """Lines split at line feeds only (a CR before one dropped): other Unicode separators,
    which ``str.splitlines`` would also split at, stay inside the text."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[int, dict]]:
    """(line number, object) pairs of a JSON Lines text; blank and ``#`` lines skipped."""
    for n, line in enumerate(_lines(text), start=1):
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


class _Feed:
    """The lines of a table for ``csv.reader``: at the start of a record, blank lines and
    ``#`` comment lines are skipped (inside a quoted field every line is data); ``start`` is
    the line number where the current record began."""

    def __init__(self, text: str, on_comment) -> None:
        self.lines = _lines(text)
        self.n = 0
        self.start = 0
        self.at_start = True
        self.on_comment = on_comment

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        while self.n < len(self.lines):
            line = self.lines[self.n]
            self.n += 1
            if self.at_start and (not line.strip() or line.lstrip().startswith("#")):
                if line.strip():
                    self.on_comment(self.n, line)
                continue
            if self.at_start:
                self.start, self.at_start = self.n, False
            return line + "\n"
        raise StopIteration


def _table_rows(path: Path, text: str, delimiter: str, fields, columns: dict[str, str],
                labels: tuple[str, ...]) -> list[tuple[int, dict]]:
    """Rows of a CSV/TSV text, with or without a header, comments dropped. Every row must
    have as many cells as the header (or the first row); a text holding the delimiter must
    be quoted."""
    kind = "TSV" if delimiter == "\t" else "CSV"
    known = frozenset(label.lower() for label in labels)
    comments: list[tuple[int, str]] = []
    feed = _Feed(text, lambda n, line: comments.append((n, line)))
    reader = csv.reader(feed, delimiter=delimiter, strict=True)
    records: list[tuple[int, list[str]]] = []
    while True:
        feed.at_start = True
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            hint = ("a quote opened here is never closed" if "end of data" in str(exc) else
                    "a field that starts with a quote must end with one (double any quote "
                    "inside it)")
            raise EmogeomError(f"{path}:{feed.start}: not valid {kind} ({exc}); {hint}"
                               ) from None
        records.append((feed.start, cells))
    if not records:
        raise EmogeomError(f"{path}:1: {kind} file holds no rows; add a header naming the "
                           f"columns {_wants(fields)} and one row per text")
    first_n, first = records[0]
    cells = [c.strip() for c in first]
    if _is_header(cells, fields, columns, known):
        names = _header_names(path, first_n, kind, cells, fields, columns)
        body = records[1:]
        if not body:
            raise EmogeomError(f"{path}:{first_n + 1}: {kind} file has a header but no rows; "
                               "add one row per text under the header")
    else:
        names = _positional_names(path, first_n, kind, records, fields, columns, known)
        body = records
    _check_widths(path, kind, len(names), body)
    _check_comments(path, kind, comments, delimiter, len(names), known)
    return [(n, {name: value for name, value in zip(names, record) if name})
            for n, record in body]


def _check_widths(path: Path, kind: str, width: int, body) -> None:
    """A row with more cells than the header would lose text silently: refuse it."""
    for n, record in body:
        if len(record) > width:
            sep = "tab" if kind == "TSV" else "comma"
            raise EmogeomError(f"{path}:{n}: {kind} row has {len(record)} cells but the table "
                               f"has {width} columns; quote a text that contains a {sep}")


def _check_comments(path: Path, kind: str, comments, delimiter: str, width: int,
                    known: frozenset[str]) -> None:
    """A ``#`` line that reads as a data row (as many cells as the table, one of them an
    emotion label, ``known`` in lower case) is refused rather than skipped as a comment."""
    for n, line in comments:
        cells = next(csv.reader([line], delimiter=delimiter), [])
        if width > 1 and len(cells) == width and known & {c.strip().lower() for c in cells}:
            raise EmogeomError(f"{path}:{n}: this line starts with '#' (a comment) but reads "
                               f"as a {kind} row; quote its first cell (\"#...\") to keep it "
                               "or remove the line")


def _wants(fields) -> str:
    needed, optional = fields
    return f"{', '.join(needed)} (optional: {', '.join(optional)})"


def _is_header(cells: list[str], fields, columns: dict[str, str],
               known: frozenset[str]) -> bool:
    """A first row is a header when it names a known or mapped column, or when it holds no
    label value (``known``, lower case: every data row of a corpus holds its label)."""
    names = {n.lower() for group in fields for n in group} | set(ID_COLUMNS)
    names |= {c.lower() for c in columns.values() if not c.isdigit()}
    lowered = {c.lower() for c in cells}
    if lowered & names:
        return True
    return bool(known) and not lowered & known


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


def _positional_names(path: Path, n: int, kind: str, records: list[tuple[int, list[str]]],
                      fields, columns: dict[str, str], known: frozenset[str]
                      ) -> list[str | None]:
    """Field names of a headerless table: positions from the mapping (``text=3``); else, in a
    corpus of 2 or 3 columns, the column holding an emotion label in the first row is the
    emotion, of the others the one with more characters over all rows the text, and a third
    column the id."""
    needed, _ = fields
    cells = [c.strip() for c in records[0][1]]
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
    found = [k for k, c in enumerate(cells) if c.lower() in known]
    if tuple(needed) == ("emotion", "text") and width in (2, 3) and len(found) == 1:
        names: list[str | None] = ["id"] * width
        names[found[0]] = "emotion"
        others = [k for k in range(width) if k != found[0]]
        names[max(others, key=lambda k: sum(len(r[k]) for _, r in records if k < len(r)))
              ] = "text"
        return names
    if tuple(needed) == ("text",) and width in (1, 2):
        return ["text"] if width == 1 else ["id", "text"]
    raise EmogeomError(f"{path}:{n}: {kind} file has no header and {width} columns; add a "
                       f"header naming the columns {_wants(fields)} or give their positions "
                       "with --columns, e.g. emotion=1,text=3")
