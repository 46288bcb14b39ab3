"""A slow, trusted path: one text at a time through HF ``output_hidden_states`` with eager
attention, pooled the same way as the fast path. Used by ``emogeom doctor`` and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from emogeom.extraction.pooled import backbone, pooling_weights
from emogeom.models.devices import input_device

FINAL_NORMS = ("norm", "ln_f", "final_layernorm", "final_norm")


def strip_final_norm(model: torch.nn.Module) -> bool:
    """Replace the decoder's final norm by identity so the last hidden state is the raw output
    of the last block; False when no known final norm was found."""
    base = backbone(model)
    for name in FINAL_NORMS:
        if isinstance(getattr(base, name, None), torch.nn.Module):
            setattr(base, name, torch.nn.Identity())
            return True
    return False


def per_text_hidden_states(
    model: torch.nn.Module, tokenizer, texts: Sequence[str], pooling: str = "mean",
    mean_start: int = 1,
) -> np.ndarray:
    """Pooled block outputs float32 [L, N, d] from ``output_hidden_states``, one text per
    forward pass (entries 1..L of hidden_states; the model's final norm must be stripped for
    the last entry to be a raw block output)."""
    rows = []
    device = input_device(model)
    with torch.inference_mode():
        for text in texts:
            ids = torch.tensor([tokenizer(text)["input_ids"]])
            mask = torch.ones_like(ids)
            positions = torch.arange(ids.shape[1])[None]
            w = pooling_weights(mask, positions, pooling, mean_start)
            hs = model(ids.to(device), attention_mask=mask.to(device),
                       output_hidden_states=True).hidden_states
            rows.append([torch.einsum("bt,btd->bd", w.to(h.device), h.float())[0].cpu().numpy()
                         for h in hs[1:]])
    return np.array(rows, dtype=np.float32).transpose(1, 0, 2)
