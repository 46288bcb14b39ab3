"""Pooled ``resid_post`` of every decoder layer in one pass, pooled inside forward hooks.

"Layer i" is the output of decoder block i (0-based), for every layer including the last one:
HF's ``hidden_states[-1]`` has the final norm applied, our last layer does not. Whole hidden
sequences are never kept: each hook reduces its block output to [batch, d] at once, and the
forward stops after the deepest layer requested (the LM head never runs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

from emogeom.errors import EmogeomError
from emogeom.extraction.batching import pad_batch, token_budget_batches
from emogeom.models.loading import pad_token_id

POOLINGS = ("last", "mean")


class NonFiniteActivations(EmogeomError):
    """A layer produced inf/NaN (fp16 overflow, as Gemma-3 does)."""


class _StopForward(Exception):
    """Raised by the deepest hook to end the forward pass early."""


def backbone(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder stack without the LM head (``get_decoder`` where it gives one, else
    ``base_model``): Gemma-3's ``base_model`` is the whole CausalLM, GPT-2's ``get_decoder``
    too."""
    get = getattr(model, "get_decoder", None)
    decoder = get() if callable(get) else None
    if decoder is not None and decoder is not model:
        return decoder
    return getattr(model, "base_model", model)


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The list of decoder blocks of an HF causal LM (llama/qwen2/gemma/mistral/gpt2 layouts)."""
    base = backbone(model)
    for owner in (base, getattr(base, "language_model", None), model):
        if owner is None:
            continue
        for name in ("layers", "h", "blocks", "decoder_layers"):
            layers = getattr(owner, name, None)
            if isinstance(layers, torch.nn.ModuleList) and len(layers) > 0:
                return layers
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise EmogeomError(f"cannot find decoder layers in {type(model).__name__}")
    return max(lists, key=len)


def pooling_weights(
    mask: torch.Tensor, positions: torch.Tensor, pooling: str, mean_start: int
) -> torch.Tensor:
    """[B, T] float32 weights that pool a [B, T, d] state into [B, d].

    ``last``: the last real token (whatever the padding side). ``mean``: real tokens whose
    position is ≥ ``mean_start`` (1 skips the first token: BOS or the attention sink); a text
    with no such token falls back to its last token.
    """
    real = mask.bool()
    last = torch.zeros_like(real)
    last_idx = (real * torch.arange(real.shape[1])).argmax(dim=1)
    last[torch.arange(real.shape[0]), last_idx] = True
    if pooling == "last":
        keep = last
    elif pooling == "mean":
        keep = real & (positions >= mean_start)
        empty = ~keep.any(dim=1)
        keep[empty] = last[empty]
    else:
        raise EmogeomError(f"unknown pooling '{pooling}' (use one of: {', '.join(POOLINGS)})")
    w = keep.float()
    return w / w.sum(dim=1, keepdim=True)


Batch = tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def pool_blocks(
    model: torch.nn.Module, wanted: Sequence[int], batches: Iterable[Batch],
    store: Callable[[int, np.ndarray, np.ndarray], None],
    on_batch: Callable[[int], None] | None = None,
) -> None:
    """Run batches ``(rows, input_ids, mask, positions, weights [..., B, T])`` through the
    decoder stack; a hook on each block in ``wanted`` pools its output with the weights and
    calls ``store(layer, rows, pooled [..., B, d])``. The forward stops after the deepest
    wanted block; hooks are removed however it ends."""
    blocks = decoder_layers(model)
    deepest = max(wanted)
    device = next(model.parameters()).device
    state: dict = {}

    def make_hook(layer: int):
        def hook(_module, _inputs, output):
            hidden = output[0] if isinstance(output, tuple) else output
            pooled = torch.einsum("...bt,btd->...bd", state["weights"], hidden.float())
            if not torch.isfinite(pooled).all():
                raise NonFiniteActivations(
                    f"layer {layer} produced non-finite activations at dtype "
                    f"{hidden.dtype} (overflow?): use --dtype bf16 or fp32"
                )
            store(layer, state["rows"], pooled.cpu().numpy())
            if layer == deepest:
                raise _StopForward
        return hook

    handles = [blocks[layer].register_forward_hook(make_hook(layer)) for layer in wanted]
    base = backbone(model)
    try:
        with torch.inference_mode():
            for rows, input_ids, mask, positions, weights in batches:
                state["rows"], state["weights"] = rows, weights.to(device)
                with contextlib.suppress(_StopForward):
                    base(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                         position_ids=positions.to(device), use_cache=False)
                if on_batch is not None:
                    on_batch(len(rows))
    finally:
        for h in handles:
            h.remove()


def extract_pooled(
    model: torch.nn.Module,
    tokenizer,
    texts: Sequence[str],
    pooling: str = "mean",
    mean_start: int = 1,
    layers: Sequence[int] | None = None,
    max_batch_tokens: int = 8192,
    padding_side: str | None = None,
    on_batch: Callable[[int], None] | None = None,
    add_special_tokens: bool = True,
) -> np.ndarray:
    """Pooled block outputs float32 [len(layers), len(texts), d] in the order of ``texts``.

    Texts are tokenised as given (with the tokenizer's special tokens unless
    ``add_special_tokens`` is off, for texts already in a chat template), sorted by length and
    batched under a token budget. Raises ``NonFiniteActivations`` naming the first non-finite layer.
    """
    if pooling not in POOLINGS:
        raise EmogeomError(f"unknown pooling '{pooling}' (use one of: {', '.join(POOLINGS)})")
    if not texts:
        raise EmogeomError("no texts to extract from")
    blocks = decoder_layers(model)
    wanted = list(range(len(blocks))) if layers is None else sorted(set(layers))
    if wanted[0] < 0 or wanted[-1] >= len(blocks):
        raise EmogeomError(f"layers must lie in 0..{len(blocks) - 1}, got {list(layers)}")
    side = padding_side or getattr(tokenizer, "padding_side", "right") or "right"
    ids = [tokenizer(t, add_special_tokens=add_special_tokens)["input_ids"] for t in texts]
    d = model.config.get_text_config().hidden_size
    out = np.zeros((len(wanted), len(texts), d), dtype=np.float32)
    slot = {layer: k for k, layer in enumerate(wanted)}

    pad_id = pad_token_id(tokenizer, model)

    def batches():
        for batch in token_budget_batches([len(x) for x in ids], max_batch_tokens):
            input_ids, mask, positions = pad_batch([ids[i] for i in batch], pad_id, side)
            yield (np.array(batch), input_ids, mask, positions,
                   pooling_weights(mask, positions, pooling, mean_start))

    def store(layer: int, rows: np.ndarray, pooled: np.ndarray) -> None:
        out[slot[layer], rows] = pooled

    pool_blocks(model, wanted, batches(), store, on_batch)
    return out
