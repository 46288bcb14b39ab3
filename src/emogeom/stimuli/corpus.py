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


def _read_rows(path: Path) -> tuple[list[tuple[int, dict]], bytes]:
    """(line number, row) pairs from a JSON Lines or CSV file, and the file's bytes."""
    if not path.exists():
        raise EmogeomError(f"corpus file not found: {path} (give an existing .jsonl or .csv file)")
    if path.suffix.lower() == ".csv":
        raw = path.read_bytes()
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))
        return [(n, dict(row)) for n, row in enumerate(reader, start=2)], raw
    return _read_jsonl(path)


def _read_jsonl(path: Path) -> tuple[list[tuple[int, dict]], bytes]:
    raw = path.read_bytes()
    rows = []
    for n, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EmogeomError(f"{path}:{n}: not valid JSON ({exc.msg}); fix that line") from None
        if not isinstance(row, dict):
            raise EmogeomError(f"{path}:{n}: each line must be a JSON object")
        rows.append((n, row))
    return rows, raw


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
        for key in ("emotion", "id", "text"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise EmogeomError(f"{path}:{n}: field '{key}' is missing or empty")
        if row["emotion"] not in known:
            raise EmogeomError(
                f"{path}:{n}: unknown emotion label '{row['emotion']}' "
                f"(use one of: {', '.join(emotions)})"
            )
        if row["id"] in seen:
            raise EmogeomError(f"{path}:{n}: duplicate id '{row['id']}'; ids must be unique")
        seen.add(row["id"])
        stimuli.append(
            Stimulus(row["emotion"], row["id"], row["text"].strip(), row.get("topic"),
                     row.get("person"))
        )
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


def load_neutral_sentences(path: str | Path | None = None, n: int | None = None) -> Corpus:
    """Load neutral factual sentences (``{id, text}`` lines); ``n`` keeps the first n."""
    path = Path(path) if path is not None else default_neutral_path()
    rows, raw = _read_rows(path)
    stimuli = []
    for line_no, row in rows:
        if not isinstance(row.get("text"), str) or not row["text"].strip():
            raise EmogeomError(f"{path}:{line_no}: field 'text' is missing or empty")
        stimuli.append(Stimulus("neutral", str(row.get("id", line_no)), row["text"].strip(),
                                row.get("topic")))
    if n is not None:
        stimuli = stimuli[:n]
    if len(stimuli) < 2:
        raise EmogeomError(f"neutral sentences {path}: need at least 2, found {len(stimuli)}")
    digest = hashlib.sha256(raw + f":first{n}".encode()).hexdigest()
    return Corpus(tuple(stimuli), ("neutral",), digest, str(path))
