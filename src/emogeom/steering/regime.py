"""Steering regimes from the outputs at one strength (no torch).

Two rules, both recorded:

* ``reference_regime`` — the reference study's rule on the outputs' text: *repetitive
  collapse* if more than 50 % of outputs repeat some word 3-gram at least 3 times; otherwise
  *explosive* if more than 30 % have fewer than 3 words; otherwise *surgical*.
* ``perplexity_regime`` — on the ratio of each steered output's perplexity to the unsteered
  output's (same prompt and seed), both scored by the unsteered model: *explosive* if the
  median ratio is at least 4 (the text is off the model's distribution: ≥ ln 4 ≈ 1.4 nats per
  token less likely); *repetitive collapse* if the median ratio is at most 0.5 (loops are
  twice as predictable as the model's own unsteered text); otherwise *surgical*.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from emogeom.steering.metrics import max_ngram_count, words

SURGICAL, REPETITIVE, EXPLOSIVE = "surgical", "repetitive collapse", "explosive"
REPEAT_MIN_COUNT = 3  # a 3-gram occurring this often marks an output as repeating
REPEAT_SHARE = 0.5  # more than this share of repeating outputs → repetitive collapse
SHORT_WORDS = 3  # an output with fewer words is "short"
SHORT_SHARE = 0.3  # more than this share of short outputs → explosive
PPL_EXPLOSIVE = 4.0  # median perplexity ratio at or above → explosive
PPL_REPETITIVE = 0.5  # median perplexity ratio at or below → repetitive collapse


def repeating_share(outputs: Sequence[str]) -> float:
    """Share of outputs in which some word 3-gram occurs ≥ REPEAT_MIN_COUNT times."""
    if not outputs:
        return math.nan
    return sum(max_ngram_count(t, 3) >= REPEAT_MIN_COUNT for t in outputs) / len(outputs)


def short_share(outputs: Sequence[str]) -> float:
    """Share of outputs with fewer than SHORT_WORDS words."""
    if not outputs:
        return math.nan
    return sum(len(words(t)) < SHORT_WORDS for t in outputs) / len(outputs)


def reference_regime(outputs: Sequence[str]) -> str:
    """The reference study's text rule (see the module docstring)."""
    if not outputs:
        raise ValueError("no outputs to classify")
    if repeating_share(outputs) > REPEAT_SHARE:
        return REPETITIVE
    if short_share(outputs) > SHORT_SHARE:
        return EXPLOSIVE
    return SURGICAL


def median(values: Sequence[float]) -> float:
    """Median of the finite values (NaN when there is none)."""
    xs = sorted(v for v in values if v is not None and math.isfinite(v))
    if not xs:
        return math.nan
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def perplexity_regime(ratios: Sequence[float]) -> str:
    """The perplexity-ratio rule (see the module docstring); no finite ratio → explosive."""
    m = median(ratios)
    if not math.isfinite(m) or m >= PPL_EXPLOSIVE:
        return EXPLOSIVE
    if m <= PPL_REPETITIVE:
        return REPETITIVE
    return SURGICAL


def overall(regimes_by_strength: Sequence[tuple[float, str]]) -> dict:
    """Summary over a dose grid: the regime at the strongest strength, the smallest non-zero
    strength whose regime is not surgical (None if all are), and the unsteered (α = 0)
    regime, reported apart: a model that already loops unsteered has no steering onset at 0."""
    ordered = sorted(regimes_by_strength, key=lambda x: abs(x[0]))
    onset = next((s for s, r in ordered if s != 0 and r != SURGICAL), None)
    baseline = next((r for s, r in ordered if s == 0), None)
    return {"regime": ordered[-1][1] if ordered else None, "onset_strength": onset,
            "baseline_regime": baseline}


def _mean(values: Sequence[float]) -> float:
    xs = [v for v in values if v is not None and math.isfinite(v)]
    return sum(xs) / len(xs) if xs else math.nan


def summarise(records: Sequence[dict]) -> list[dict]:
    """Per-strength metrics and both regimes from dose-response records (dicts with
    strength, output, words, repeated_3gram_share, distinct_2, perplexity,
    perplexity_ratio, emotion_shift)."""
    rows = []
    for s in sorted({r["strength"] for r in records}, key=lambda v: (abs(v), v)):
        group = [r for r in records if r["strength"] == s]
        outputs = [r["output"] for r in group]
        ratios = [r["perplexity_ratio"] for r in group]
        rows.append({
            "strength": s,
            "n_outputs": len(group),
            "mean_words": _mean([r["words"] for r in group]),
            "share_repeating": repeating_share(outputs),
            "share_short": short_share(outputs),
            "mean_repeated_3gram_share": _mean([r["repeated_3gram_share"] for r in group]),
            "mean_distinct_2": _mean([r["distinct_2"] for r in group]),
            "median_perplexity": median([r["perplexity"] for r in group]),
            "median_perplexity_ratio": median(ratios),
            "mean_emotion_shift": _mean([r["emotion_shift"] for r in group]),
            "regime_reference": reference_regime(outputs),
            "regime_perplexity": perplexity_regime(ratios),
        })
    return rows


def regimes(rows: Sequence[dict]) -> dict:
    """Both rules summarised over the grid (see ``overall``), with the thresholds used."""
    return {
        "reference": overall([(r["strength"], r["regime_reference"]) for r in rows]),
        "perplexity": overall([(r["strength"], r["regime_perplexity"]) for r in rows]),
        "thresholds": {"repeat_min_count": REPEAT_MIN_COUNT, "repeat_share": REPEAT_SHARE,
                       "short_words": SHORT_WORDS, "short_share": SHORT_SHARE,
                       "ppl_explosive": PPL_EXPLOSIVE, "ppl_repetitive": PPL_REPETITIVE},
    }
