"""Corpus quality checks: counts (per style × emotion), length balance (per style), topic
spread, duplicates, emotion-word leakage."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emogeom.errors import EmogeomError
from emogeom.stimuli.corpus import (
    Corpus,
    decode_utf8,
    default_corpus_path,
    load_corpus,
    read_bytes,
)

LENGTH_RATIO_MAX = 1.3
_TOKEN = re.compile(r"\w+|[^\w\s]")


def default_synonyms_path() -> Path:
    """Per-emotion lists of an emotion's own word and direct synonyms (shipped)."""
    return default_corpus_path().parent / "synonyms.json"


def load_synonyms(path: str | Path | None = None) -> dict[str, list[str]]:
    """A JSON file ``{emotion: [words]}``; a bad file is one clear error naming it."""
    path = Path(path or default_synonyms_path())
    text = decode_utf8(path, read_bytes(path, "synonyms file", ".json"))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EmogeomError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); fix that line"
                           ) from None
    except (ValueError, RecursionError):
        raise EmogeomError(f"{path}: not valid JSON (a number or nesting too large); fix it"
                           ) from None
    return _check_synonyms(path, data)


def _check_synonyms(path: Path, data) -> dict[str, list[str]]:
    """``data`` if it is an object of lists of words, else one clear error."""
    if not isinstance(data, dict):
        raise EmogeomError(f"{path}: must be a JSON object {{emotion: [words]}}; fix the file")
    for emotion, words in data.items():
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise EmogeomError(f"{path}: entry '{emotion}' must be a list of words (strings), "
                               'e.g. ["sad", "unhappy"]; fix the file')
    return data


def n_tokens(text: str) -> int:
    """Tokens as words and punctuation marks (model-free, so every model sees the same count)."""
    return len(_TOKEN.findall(text))


@dataclass
class EmotionRow:
    emotion: str
    count: int
    mean_tokens: float
    topics: int
    leaks: list[str]


@dataclass
class CheckReport:
    """``styles``: style → emotion → count (empty without styles); ``style_ratios``: style →
    mean-length ratio of its longest to its shortest emotion; ``topics``: distinct topics."""

    rows: list[EmotionRow]
    length_ratio: float
    duplicates: list[list[str]]
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    styles: dict[str, dict[str, int]] = field(default_factory=dict)
    style_ratios: dict[str, float] = field(default_factory=dict)
    topics: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


def leaks(text: str, words: list[str]) -> list[str]:
    """The listed words that occur in ``text`` as whole words (case-insensitive)."""
    return [w for w in words if re.search(rf"\b{re.escape(w)}\b", text, re.IGNORECASE)]


def check_corpus(corpus: Corpus | str | Path | None = None,
                 synonyms: dict[str, list[str]] | None = None) -> CheckReport:
    """Check a corpus: errors for leakage and duplicate texts, warnings for imbalance
    (unequal counts, mean-length ratio above 1.3, uneven topic coverage)."""
    if not isinstance(corpus, Corpus):
        corpus = load_corpus(corpus)
    synonyms = synonyms if synonyms is not None else load_synonyms()
    rows = []
    for e in corpus.emotions:
        stories = [s for s in corpus.stimuli if s.emotion == e]
        words = sorted({e, *synonyms.get(e, [])}) if e != "neutral" else synonyms.get(e, [])
        found = [f"{s.id}: {', '.join(hits)}" for s in stories if (hits := leaks(s.text, words))]
        rows.append(EmotionRow(e, len(stories),
                               sum(n_tokens(s.text) for s in stories) / len(stories),
                               len({s.topic for s in stories if s.topic}), found))
    means = [r.mean_tokens for r in rows]
    ratio = max(means) / min(means)
    seen: dict[str, list[str]] = {}
    for s in corpus.stimuli:
        seen.setdefault(" ".join(s.text.lower().split()), []).append(s.id)
    dups = [ids for ids in seen.values() if len(ids) > 1]
    report = CheckReport(rows, ratio, dups, topics=len({s.topic for s in corpus.stimuli
                                                         if s.topic}))
    _check_styles(corpus, report)
    for r in rows:
        if r.leaks:
            report.errors.append(f"{r.emotion}: {len(r.leaks)} stories use the emotion's own "
                                 f"word or a listed synonym ({'; '.join(r.leaks[:3])})")
    for ids in dups:
        report.errors.append(f"duplicate texts: {', '.join(ids)}")
    counts = Counter(r.count for r in rows)
    if len(counts) > 1:
        report.warnings.append(f"unequal counts per emotion: {min(counts)}..{max(counts)}")
    if ratio > LENGTH_RATIO_MAX:
        report.warnings.append(f"mean length ratio {ratio:.2f} > {LENGTH_RATIO_MAX}: "
                               "longest vs shortest emotion")
    topic_counts = [r.topics for r in rows]
    if max(topic_counts) and min(topic_counts) < max(topic_counts):
        thin = [r.emotion for r in rows if r.topics < max(topic_counts)]
        report.warnings.append(f"fewer topics than others: {', '.join(thin)}")
    return report


def _check_styles(corpus: Corpus, report: CheckReport) -> None:
    """The style × emotion counts and each style's length ratio; warnings for a style whose
    emotions differ in count or whose ratio is above the limit, and for texts without a style
    in a corpus that has styles."""
    styles = corpus.styles
    if not styles:
        return
    for style in styles:
        texts = [s for s in corpus.stimuli if s.style == style]
        report.styles[style] = {e: sum(s.emotion == e for s in texts) for e in corpus.emotions}
        means = [np.mean([n_tokens(s.text) for s in texts if s.emotion == e])
                 for e in corpus.emotions if report.styles[style][e]]
        report.style_ratios[style] = float(max(means) / min(means))
        counts = set(report.styles[style].values())
        if len(counts) > 1:
            report.warnings.append(f"style '{style}': unequal counts per emotion "
                                   f"{min(counts)}..{max(counts)}")
        if report.style_ratios[style] > LENGTH_RATIO_MAX:
            report.warnings.append(f"style '{style}': mean length ratio "
                                   f"{report.style_ratios[style]:.2f} > {LENGTH_RATIO_MAX}")
    unstyled = sum(1 for s in corpus.stimuli if not s.style)
    if unstyled:
        report.warnings.append(f"{unstyled} texts have no style; cross-style statistics "
                               "leave them out")
