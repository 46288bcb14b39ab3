"""Corpus schema (`{emotion, text}`, optional `id`, `style`, `topic`, `person`, any other
columns kept as metadata) and loading from JSON Lines, CSV or TSV.

A corpus holds the emotion texts; the neutral factual sentences (for anisotropy and denoising)
live in a separate file with ``{id, text}`` lines.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from importlib.resources import files
from pathlib import Path

from emogeom.emotions import EMOTIONS
from emogeom.errors import EmogeomError
from emogeom.stimuli.tables import parse_columns, read_table

MIN_PER_EMOTION = 2
MIN_EMOTIONS = 3


@dataclass(frozen=True)
class Stimulus:
    """One text with its emotion label; ``style``, ``topic``, ``person`` and ``meta`` (the
    file's other columns) are optional metadata."""

    emotion: str
    id: str
    text: str
    topic: str | None = None
    person: str | None = None
    style: str | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)


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

    @property
    def styles(self) -> tuple[str, ...]:
        """The styles of writing the corpus labels, in first-seen order (empty: none)."""
        return tuple(dict.fromkeys(s.style for s in self.stimuli if s.style))


def default_corpus_path() -> Path:
    """The shipped corpus v2 (package data; docs/corpus.md)."""
    return Path(str(files("emogeom.stimuli").joinpath("data/corpus.jsonl")))


def default_neutral_path() -> Path:
    """The shipped neutral factual sentences (package data)."""
    return Path(str(files("emogeom.stimuli").joinpath("data/neutral_sentences.jsonl")))


CORPUS_FIELDS = (("emotion", "text"), ("id", "style", "topic", "person"))
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


def _read_rows(path: Path, fields=CORPUS_FIELDS, what: str = "corpus file",
               columns: dict[str, str] | None = None, labels: tuple[str, ...] = ()
               ) -> tuple[list[tuple[int, dict]], bytes]:
    """(line number, row) pairs from a JSON Lines, CSV or TSV file, and the file's bytes."""
    raw = read_bytes(path, what, ".jsonl, .csv or .tsv")
    return read_table(path, decode_utf8(path, raw), fields, columns, labels), raw


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
    columns: str | dict[str, str] | None = None,
) -> Corpus:
    """Load and validate a corpus (.jsonl, .csv or .tsv; ``#`` lines are comments; a table
    may have a header or not); ``per_emotion`` keeps the first N texts of each emotion, taken
    in turn from each style when the corpus has styles; ``columns`` maps emogeom's fields to
    the file's column names (``'text=passage,emotion=label'``, or positions without a
    header). The corpus's emotions are those it holds (a subset of ``emotions`` is allowed),
    in canonical order. Ids need only be unique within an emotion (when they repeat across
    emotions every id becomes ``emotion-id``); a file without ids gets ``emotion-n``.

    Errors (one line each): missing file, bad JSON or table, missing/empty fields, unknown
    emotion label, duplicate id, empty corpus, fewer than 3 emotions, an emotion with fewer
    than 2 texts.
    """
    path = Path(path) if path is not None else default_corpus_path()
    mapping = parse_columns(columns, (*CORPUS_FIELDS[0], *CORPUS_FIELDS[1]))
    rows, raw = _read_rows(path, CORPUS_FIELDS, "corpus file", mapping, tuple(emotions))
    if not rows:
        raise EmogeomError(f"corpus {path} is empty: it needs rows of {{emotion, text}} "
                           "(optional: id, style, topic, person)")
    known = set(emotions)
    seen: dict[str, set[str]] = {}
    stimuli: list[Stimulus] = []
    for n, row in rows:
        s = _stimulus(path, n, row, 1 + len(seen.get(_label(row.get("emotion")), ())))
        if s.emotion not in known:
            raise EmogeomError(
                f"{path}:{n}: unknown emotion label '{s.emotion}' "
                f"(use one of: {', '.join(emotions)})"
            )
        mine = seen.setdefault(s.emotion, set())
        if s.id in mine:
            raise EmogeomError(f"{path}:{n}: duplicate id '{s.id}' within {s.emotion}; ids "
                               "must be unique within an emotion")
        mine.add(s.id)
        stimuli.append(s)
    if sum(map(len, seen.values())) > len(set().union(*seen.values())):
        stimuli = [replace(s, id=f"{s.emotion}-{s.id}") for s in stimuli]
    if per_emotion is not None:
        stimuli = _first_per_emotion(stimuli, per_emotion)
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
    if mapping:
        key = ",".join(f"{k}={v}" for k, v in sorted(mapping.items()))
        digest = hashlib.sha256(f"{digest}:columns={key}".encode()).hexdigest()
    if per_emotion is not None:
        digest = hashlib.sha256(f"{digest}:first{per_emotion}".encode()).hexdigest()
    return Corpus(tuple(stimuli), present, digest, str(path))


def _first_per_emotion(stimuli: list[Stimulus], n: int) -> list[Stimulus]:
    """The first ``n`` texts of each emotion in file order; with styles, taken round-robin
    over the styles (first of each style, then second of each, ...) so a subset keeps the
    style mix."""
    by_cell: dict[tuple[str, str], list[int]] = {}
    for i, s in enumerate(stimuli):
        by_cell.setdefault((s.emotion, s.style or ""), []).append(i)
    keep: set[int] = set()
    for emotion in dict.fromkeys(s.emotion for s in stimuli):
        cells = [idx for (e, _), idx in by_cell.items() if e == emotion]
        order = [idx[k] for k in range(max(map(len, cells))) for idx in cells if k < len(idx)]
        keep.update(order[:n])
    return [s for i, s in enumerate(stimuli) if i in keep]


def _label(value) -> str | None:
    """An emotion label as emogeom compares it: stripped, lower case."""
    return value.strip().lower() if isinstance(value, str) else None


def _stimulus(path: Path, n: int, row: dict, nth: int) -> Stimulus:
    """One corpus row as a Stimulus, each field's presence and type checked; a missing id
    becomes ``emotion-nth``; other columns are kept in ``meta``."""
    emotion, text = (_field(path, n, row, key) for key in CORPUS_FIELDS[0])
    sid, style, topic, person = (_field(path, n, row, key, needed=False)
                                 for key in CORPUS_FIELDS[1])
    emotion = _label(emotion)
    sid = sid.strip() if sid and sid.strip() else f"{emotion}-{nth}"
    meta = {k: v for k, v in row.items() if k not in (*CORPUS_FIELDS[0], *CORPUS_FIELDS[1])}
    return Stimulus(emotion, sid, text.strip(), topic or None, person or None,
                    style.strip() if style and style.strip() else None, meta)


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
