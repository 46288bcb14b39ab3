"""Model-based scores of outputs (torch): token ids of a generation, perplexity under the
unsteered model, and the projection of an output's pooled state on an emotion direction."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from emogeom.extraction import extract_pooled
from emogeom.models import LoadedModel
from emogeom.models.generate import encode, prompt_text
from emogeom.models.generate import generate_ids as generate_batch
from emogeom.models.loading import input_device
from emogeom.steering.metrics import perplexity


def prompt_ids(lm: LoadedModel, prompt: str, chat_template: bool = True) -> list[int]:
    """Token ids of ``prompt`` as ``generate`` feeds it (chat template when the model has one)."""
    return encode(lm.tokenizer, *prompt_text(lm.tokenizer, prompt, chat_template))


def generate_ids(
    lm: LoadedModel, ids: Sequence[int], seed: int, max_new_tokens: int,
    temperature: float = 0.0, top_p: float = 0.95,
) -> list[int]:
    """New token ids after ``ids``: greedy when temperature is 0, else sampling seeded by
    ``seed`` (the same seed at every strength, so only the steering differs)."""
    return generate_batch(lm, [ids], seed, max_new_tokens, temperature, top_p)[0]


def continuation_perplexity(lm: LoadedModel, ids: Sequence[int], new: Sequence[int]) -> float:
    """Perplexity of the tokens ``new`` given ``ids`` under the model as it is (call it
    outside any steering context to score with the unsteered model)."""
    if not new:
        return float("nan")
    device = input_device(lm.model)
    full = torch.tensor([list(ids) + list(new)], device=device)
    with torch.inference_mode():
        logits = lm.model(input_ids=full, attention_mask=torch.ones_like(full),
                          use_cache=False).logits[0, len(ids) - 1:-1].float()
    nll = torch.nn.functional.cross_entropy(logits, full[0, len(ids):], reduction="none")
    return perplexity(nll.tolist())


def pooled_projections(
    lm: LoadedModel, texts: Sequence[str], layer: int, directions: np.ndarray,
) -> np.ndarray:
    """Projection of each text's mean-pooled block output at ``layer`` (first token skipped)
    on its unit direction (rows of ``directions`` [N, d]); NaN for blank texts."""
    out = np.full(len(texts), np.nan)
    keep = [i for i, t in enumerate(texts) if t.strip()]
    if keep:
        acts = extract_pooled(lm.model, lm.tokenizer, [texts[i] for i in keep], "mean", 1,
                              layers=[layer])[0].astype(np.float64)
        out[keep] = np.einsum("nd,nd->n", acts, np.asarray(directions, np.float64)[keep])
    return out
