"""Corpus schema (JSON Lines `{emotion, id, text}`, optional `topic`, `person`) and loading.

A corpus holds the emotion stories; the neutral factual sentences (for anisotropy and denoising)
live in a separate file with ``{id, text}`` lines.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from emogeom.emotions import EMOTIONS
from emogeom.errors import EmogeomError

MIN_PER_EMOTION = 2
MIN_EMOTIONS = 3


@dataclass(frozen=True)
class Stimulus:
    """One text with its emotion label; ``topic`` and ``person`` are optional metadata."""

    emotion: str
    id: str
    text: str
    topic: str | None = None
    person: str | None = None


@dataclass(frozen=True)
class Corpus:
    """A validated set of emotion stimuli, in file order, with the hash of its content."""

    stimuli: tuple[Stimulus, ...]
    emotions: tuple[str, ...]
    sha256: str
    source: str
    extra: dict = field(default_factory=dict)

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.stimuli]

    @property
    def labels(self) -> list[str]:
        return [s.emotion for s in self.stimuli]

    def counts(self) -> dict[str, int]:
        return {e: sum(s.emotion == e for s in self.stimuli) for e in self.emotions}


def default_corpus_path() -> Path:
    """The shipped story corpus (package data)."""
    return Path(str(files("emogeom.stimuli").joinpath("data/stories.jsonl")))


def default_neutral_path() -> Path:
    """The shipped neutral factual sentences (package data)."""
    return Path(str(files("emogeom.stimuli").joinpath("data/neutral_sentences.jsonl")))


CORPUS_FIELDS = (("emotion", "id", "text"), ("topic", "person"))
NEUTRAL_FIELDS = (("text",), ("id", "topic"))
_TYPE_NAMES = {bool: "a boolean (true/false)", int: "an integer", float: "a decimal number",
               list: "a list", dict: "an object"}


def read_bytes(path: Path, what: str = "corpus file", kind: str = ".jsonl or .csv") -> bytes:
    """A user-given file's bytes; a missing, directory or unreadable file is one clear error."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise EmogeomError(f"{what} not found: {path} (give an existing {kind} file)") from None
    except IsADirectoryError:
        raise EmogeomError(f"{path}: is a folder, not a file; give a {kind} file") from None
    except PermissionError:
        raise EmogeomError(f"{path}: cannot read it (permission denied); check the file's "
                           "permissions") from None
    except OSError as exc:
        raise EmogeomError(f"{path}: cannot read it ({exc.strerror or exc}); check the path"
                           ) from None


def decode_utf8(path: Path, raw: bytes) -> str:
    """``raw`` as UTF-8 text (a leading BOM dropped); other bytes name their line and offset."""
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise EmogeomError(f"{path}:{line}: not UTF-8 (byte 0x{raw[exc.start]:02x} at byte "
                           f"offset {exc.start}); save the file as UTF-8") from None


def _read_rows(path: Path, fields=CORPUS_FIELDS,
               what: str = "corpus file") -> tuple[list[tuple[int, dict]], bytes]:
    """(line number, row) pairs from a JSON Lines or CSV file, and the file's bytes."""
    raw = read_bytes(path, what)
    text = decode_utf8(path, raw)
    if path.suffix.lower() == ".csv":
        return _read_csv(path, text, fields), raw
    return _read_jsonl(path, text), raw


def _read_csv(path: Path, text: str, fields) -> list[tuple[int, dict]]:
    """Rows of a CSV file whose header names at least the needed columns."""
    reader = csv.DictReader(io.StringIO(text))
    try:
        reader.fieldnames = _check_header(path, reader.fieldnames, fields)
        rows = [(reader.line_num, dict(row)) for row in reader]
    except csv.Error as exc:
        raise EmogeomError(f"{path}:{reader.line_num}: not valid CSV ({exc}); fix that line"
                           ) from None
    if not rows:
        raise EmogeomError(f"{path}:2: CSV file has a header but no rows; add one row per "
                           "text under the header")
    return rows


def _check_header(path: Path, header: list[str] | None, fields) -> list[str]:
    """The CSV header's column names, stripped; no header or a needed column missing is refused."""
    needed, optional = fields
    wants = f"{', '.join(needed)} (optional: {', '.join(optional)})"
    header = [h.strip() for h in header or []]
    if not any(header):
        raise EmogeomError(f"{path}:1: CSV file has no header; its first line must name the "
                           f"columns {wants}")
    if not set(needed) <= set(header):
        raise EmogeomError(f"{path}:1: CSV header has {', '.join(header)}; it needs {wants}")
    return header


def _read_jsonl(path: Path, text: str) -> list[tuple[int, dict]]:
    """(line number, object) pairs of a JSON Lines text, blank lines skipped."""
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as exc:  # bad JSON, a huge number, deep nesting
            msg = getattr(exc, "msg", "a number or nesting too large")
            raise EmogeomError(f"{path}:{n}: not valid JSON ({msg}); fix that line") from None
        if not isinstance(row, dict):
            raise EmogeomError(f"{path}:{n}: each line must be a JSON object")
        rows.append((n, row))
    return rows


def _type_name(value) -> str:
    """How a JSON value's type reads in an error message."""
    return _TYPE_NAMES.get(type(value), f"a {type(value).__name__}")


def _field(path: Path, n: int, row: dict, key: str, needed: bool = True) -> str | None:
    """``row[key]`` as a string: integer ids become text, other non-strings are refused."""
    value = row.get(key)
    if key == "id" and type(value) is int:
        value = str(value)
    if value is not None and not isinstance(value, str):
        kind = "a string or an integer" if key == "id" else "a string"
        raise EmogeomError(f"{path}:{n}: field '{key}' must be {kind} (got {_type_name(value)})")
    if needed and (value is None or not value.strip()):
        raise EmogeomError(f"{path}:{n}: field '{key}' is missing or empty")
    return value


def load_corpus(
    path: str | Path | None = None,
    emotions: tuple[str, ...] = EMOTIONS,
    per_emotion: int | None = None,
) -> Corpus:
    """Load and validate a story corpus (.jsonl or .csv); ``per_emotion`` keeps the first N
    stories of each emotion. The corpus's emotions are those it holds (a subset of
    ``emotions`` is allowed), in canonical order.

    Errors (one line each): missing file, bad JSON, missing/empty fields, unknown emotion label,
    duplicate id, empty corpus, fewer than 3 emotions, an emotion with fewer than 2 stories.
    """
    path = Path(path) if path is not None else default_corpus_path()
    rows, raw = _read_rows(path)
    if not rows:
        raise EmogeomError(f"corpus {path} is empty: it needs lines of {{emotion, id, text}}")
    known = set(emotions)
    seen: set[str] = set()
    stimuli: list[Stimulus] = []
    for n, row in rows:
        s = _stimulus(path, n, row)
        if s.emotion not in known:
            raise EmogeomError(
                f"{path}:{n}: unknown emotion label '{s.emotion}' "
                f"(use one of: {', '.join(emotions)})"
            )
        if s.id in seen:
            raise EmogeomError(f"{path}:{n}: duplicate id '{s.id}'; ids must be unique")
        seen.add(s.id)
        stimuli.append(s)
    if per_emotion is not None:
        kept: dict[str, int] = {}
        out = []
        for s in stimuli:
            if kept.get(s.emotion, 0) < per_emotion:
                out.append(s)
                kept[s.emotion] = kept.get(s.emotion, 0) + 1
        stimuli = out
    present = tuple(e for e in emotions if any(s.emotion == e for s in stimuli))
    if len(present) < MIN_EMOTIONS:
        raise EmogeomError(f"corpus {path} holds {len(present)} emotion(s); an RDM needs at "
                           f"least {MIN_EMOTIONS}")
    counts = {e: sum(s.emotion == e for s in stimuli) for e in present}
    short = [f"{e} ({c})" for e, c in counts.items() if c < MIN_PER_EMOTION]
    if short:
        raise EmogeomError(
            f"corpus {path}: emotions with fewer than {MIN_PER_EMOTION} stories: "
            f"{', '.join(short)}; add stories for them"
        )
    digest = hashlib.sha256(raw).hexdigest()
    if per_emotion is not None:
        digest = hashlib.sha256(f"{digest}:first{per_emotion}".encode()).hexdigest()
    return Corpus(tuple(stimuli), present, digest, str(path))


def _stimulus(path: Path, n: int, row: dict) -> Stimulus:
    """One corpus row as a Stimulus, each field's presence and type checked."""
    emotion, sid, text = (_field(path, n, row, key) for key in CORPUS_FIELDS[0])
    topic, person = (_field(path, n, row, key, needed=False) for key in CORPUS_FIELDS[1])
    return Stimulus(emotion, sid, text.strip(), topic, person)


def load_neutral_sentences(path: str | Path | None = None, n: int | None = None) -> Corpus:
    """Load neutral factual sentences (``{id, text}`` lines); ``n`` keeps the first n."""
    path = Path(path) if path is not None else default_neutral_path()
    rows, raw = _read_rows(path, NEUTRAL_FIELDS, "neutral sentences file")
    stimuli = []
    for line_no, row in rows:
        text = _field(path, line_no, row, "text")
        sid = _field(path, line_no, row, "id", needed=False) or str(line_no)
        stimuli.append(Stimulus("neutral", sid, text.strip(),
                                _field(path, line_no, row, "topic", needed=False)))
    if n is not None:
        stimuli = stimuli[:n]
    if len(stimuli) < 2:
        raise EmogeomError(f"neutral sentences {path}: need at least 2, found {len(stimuli)}")
    digest = hashlib.sha256(raw + f":first{n}".encode()).hexdigest()
    return Corpus(tuple(stimuli), ("neutral",), digest, str(path))
