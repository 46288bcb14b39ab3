"""Dose-response: generate under a grid of strengths × scenarios, then score every output."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from emogeom.config import STEER_STRENGTHS
from emogeom.errors import EmogeomError
from emogeom.models import LoadedModel
from emogeom.steering.hooks import steer
from emogeom.steering.metrics import ratio, text_metrics
from emogeom.steering.scoring import (
    continuation_perplexity,
    generate_ids,
    pooled_projections,
    prompt_ids,
)
from emogeom.steering.vectors import SteeringVectors


@dataclass(frozen=True)
class Scenario:
    """A prompt and the emotion to steer it toward."""

    name: str
    prompt: str
    emotion: str


HOSTILE_PROMPT = ("You useless idiot, you ruined my whole order again. I am sick of your "
                  "excuses. What do you have to say for yourself?")
NEUTRAL_PROMPT = "Describe how a public library lends books to its members."
# Strengths are in units of the layer's mean residual norm: 1 adds a vector as long as a
# typical residual state, which already wrecks both embedded models' text.
DEFAULT_STRENGTHS = STEER_STRENGTHS
DEFAULT_SCENARIOS = (
    Scenario("hostile→calm", HOSTILE_PROMPT, "calm"),
    Scenario("neutral→hostile", NEUTRAL_PROMPT, "hostile"),
)


def parse_strengths(text: str | Sequence[float]) -> list[float]:
    """Strengths from '0,0.1,0.2,0.4,0.8' (or a sequence), sorted, with 0 (the unsteered reference)
    added when missing."""
    try:
        values = [float(x) for x in (text.split(",") if isinstance(text, str) else text)
                  if str(x).strip()]
    except ValueError:
        raise EmogeomError(f"cannot read strengths '{text}': give numbers like 0,0.1,0.2,0.4,0.8"
                           ) from None
    if not values or not all(np.isfinite(values)):
        raise EmogeomError(f"cannot read strengths '{text}': give finite numbers like "
                           "0,0.1,0.2,0.4,0.8")
    return sorted(set(values) | {0.0}, key=lambda v: (abs(v), v))


def readout_layer(layers: Sequence[int]) -> int:
    """Layer whose pooled state measures the emotion shift: the median steered layer."""
    ordered = sorted(layers)
    return ordered[(len(ordered) - 1) // 2]


def dose_response(
    lm: LoadedModel, sv: SteeringVectors, scenarios: Sequence[Scenario],
    strengths: Sequence[float], max_new_tokens: int = 40, temperature: float = 0.0,
    top_p: float = 0.95, seed: int = 0, samples: int = 1, chat_template: bool = True,
    on_output: Callable[[int], None] | None = None,
) -> list[dict]:
    """One record per scenario × sample × strength with the output and its metrics.

    Strength 0 is the unsteered reference: perplexity ratios and emotion shifts are taken
    against the strength-0 output of the same scenario and sample (same seed).
    """
    strengths = parse_strengths(strengths)
    if samples < 1:
        raise EmogeomError(f"samples must be ≥ 1, got {samples}")
    if temperature == 0 and samples > 1:
        raise EmogeomError("greedy decoding gives one output per prompt: use --samples 1 or "
                           "a temperature > 0")
    norms = [sv.norms[x] for x in sv.layers]
    records: list[dict] = []
    for sc in scenarios:
        direction = sv.emotion(sc.emotion)
        ids = prompt_ids(lm, sc.prompt, chat_template)
        for k in range(samples):
            for alpha in strengths:
                with steer(lm.model, direction, sv.layers, alpha, norms):
                    new = generate_ids(lm, ids, seed + k, max_new_tokens, temperature, top_p)
                text = lm.tokenizer.decode(new, skip_special_tokens=True)
                records.append({"scenario": sc.name, "prompt": sc.prompt, "emotion": sc.emotion,
                                "strength": alpha, "sample": k, "seed": seed + k,
                                "output": text, "n_tokens": len(new), "_ids": ids,
                                "_new": new, **text_metrics(text)})
                if on_output is not None:
                    on_output(1)
    score(lm, sv, records)
    return records


def score(lm: LoadedModel, sv: SteeringVectors, records: list[dict]) -> None:
    """Add perplexity (unsteered model), its ratio to the unsteered output's, the projection
    on the unit emotion vector at the readout layer and its shift from unsteered, in place."""
    layer = readout_layer(sv.layers)
    for r in records:
        r["perplexity"] = continuation_perplexity(lm, r.pop("_ids"), r.pop("_new"))
    units = np.stack([sv.unit(r["emotion"], layer) for r in records])
    proj = pooled_projections(lm, [r["output"] for r in records], layer, units)
    base = {}
    for r, p in zip(records, proj):
        r["projection"] = float(p)
        r["readout_layer"] = layer
        if r["strength"] == 0:
            base[(r["scenario"], r["sample"])] = r
    for r in records:
        ref = base[(r["scenario"], r["sample"])]
        r["perplexity_ratio"] = ratio(r["perplexity"], ref["perplexity"])
        r["emotion_shift"] = r["projection"] - ref["projection"]
