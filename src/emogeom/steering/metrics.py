"""Text-quality metrics of one steered output (pure Python/NumPy, no torch): words,
repetition (repeated 3-grams, distinct-2) and perplexity ratios."""

from __future__ import annotations

import math
import re
from collections import Counter

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def words(text: str) -> list[str]:
    """Lower-cased words (letters/digits, inner apostrophes kept); punctuation dropped."""
    return [w.lower() for w in _WORD.findall(text)]


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def max_ngram_count(text: str, n: int = 3) -> int:
    """How often the most frequent word n-gram occurs (0 when the text has none)."""
    counts = Counter(ngrams(words(text), n))
    return max(counts.values(), default=0)


def repeated_ngram_share(text: str, n: int = 3) -> float:
    """Share of the text's n-gram occurrences that repeat an earlier one (1 − distinct/total);
    0 when the text has no n-gram."""
    grams = ngrams(words(text), n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def distinct_n(text: str, n: int = 2) -> float:
    """distinct-n: distinct word n-grams / all word n-grams (NaN when there is none)."""
    grams = ngrams(words(text), n)
    return len(set(grams)) / len(grams) if grams else math.nan


def perplexity(token_nlls: list[float]) -> float:
    """exp(mean negative log-likelihood per token); NaN for no tokens."""
    return math.exp(sum(token_nlls) / len(token_nlls)) if token_nlls else math.nan


def ratio(value: float, reference: float) -> float:
    """value / reference, NaN when either is missing or the reference is 0."""
    if not (math.isfinite(value) and math.isfinite(reference)) or reference == 0:
        return math.nan
    return value / reference


def text_metrics(text: str) -> dict[str, float]:
    """The torch-free metrics of one output: length, repetition and diversity."""
    return {
        "words": len(words(text)),
        "max_3gram_count": max_ngram_count(text, 3),
        "repeated_3gram_share": repeated_ngram_share(text, 3),
        "distinct_2": distinct_n(text, 2),
    }
