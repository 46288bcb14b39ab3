"""Model-based scores of outputs (torch): token ids of a generation, perplexity under the
unsteered model, and the projection of an output's pooled state on an emotion direction."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from emogeom.extract import extract_pooled
from emogeom.models import LoadedModel
from emogeom.models.generate import format_prompt
from emogeom.steering.metrics import perplexity


def prompt_ids(lm: LoadedModel, prompt: str, chat_template: bool = True) -> list[int]:
    """Token ids of ``prompt`` as ``generate`` feeds it (chat template when the model has one)."""
    text, templated = format_prompt(lm, prompt, chat_template)
    return lm.tokenizer(text, add_special_tokens=not templated)["input_ids"]


def generate_ids(
    lm: LoadedModel, ids: Sequence[int], seed: int, max_new_tokens: int,
    temperature: float = 0.0, top_p: float = 0.95,
) -> list[int]:
    """New token ids after ``ids``: greedy when temperature is 0, else sampling seeded by
    ``seed`` (the same seed at every strength, so only the steering differs)."""
    device = next(lm.model.parameters()).device
    input_ids = torch.tensor([list(ids)], device=device)
    torch.manual_seed(seed)
    sample = temperature > 0
    with torch.inference_mode():
        out = lm.model.generate(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
            max_new_tokens=max_new_tokens, do_sample=sample,
            temperature=temperature if sample else None, top_p=top_p if sample else None,
            top_k=None, pad_token_id=lm.tokenizer.pad_token_id,
        )
    return out[0, input_ids.shape[1]:].tolist()


def continuation_perplexity(lm: LoadedModel, ids: Sequence[int], new: Sequence[int]) -> float:
    """Perplexity of the tokens ``new`` given ``ids`` under the model as it is (call it
    outside any steering context to score with the unsteered model)."""
    if not new:
        return float("nan")
    device = next(lm.model.parameters()).device
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
