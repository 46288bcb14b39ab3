"""Pooled ``resid_post`` of every decoder layer in one pass, pooled inside forward hooks.

"Layer i" is the output of decoder block i (0-based), for every layer including the last one:
HF's ``hidden_states[-1]`` has the final norm applied, our last layer does not. Whole hidden
sequences are never kept: each hook reduces its block output to [batch, d] at once (on the
device, brought back once per batch), and the forward stops after the deepest layer requested
(the LM head never runs). On device out-of-memory a batch is split and retried.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

from emogeom.errors import EmogeomError
from emogeom.extraction.batching import pad_batch, token_budget_batches
from emogeom.extraction.context import (
    context_limit,
    model_name,
    over_long,
    too_long,
    truncate_ids,
)
from emogeom.models.devices import free_cached_memory, input_device, is_oom
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


class _Pooler:
    """Hooks on the ``wanted`` blocks that pool each block output with the batch's weights
    on the block's device into one buffer on the input device; ``run`` brings the buffer back
    to the CPU once per batch. The forward stops after the deepest wanted block."""

    def __init__(self, model: torch.nn.Module, wanted: Sequence[int]):
        self.model, self.wanted = model, list(wanted)
        self.device = input_device(model)
        self.base = backbone(model)
        self.state: dict = {}
        self.handles: list = []

    def _hook(self, k: int, deepest: bool):
        def hook(_module, _inputs, output):
            hidden = output[0] if isinstance(output, tuple) else output
            weights = self.state["weights"]
            if weights.device != hidden.device:  # a model spread over devices
                weights = weights.to(hidden.device)
            pooled = torch.einsum("...bt,btd->...bd", weights, hidden.float())
            buf = self.state.get("buffer")
            if buf is None:
                buf = torch.empty((len(self.wanted), *pooled.shape), dtype=pooled.dtype,
                                  device=self.device)
                self.state["buffer"] = buf
            buf[k].copy_(pooled)
            self.state["dtypes"][k] = hidden.dtype
            if deepest:
                raise _StopForward
        return hook

    def __enter__(self) -> _Pooler:
        blocks = decoder_layers(self.model)
        deepest = max(self.wanted)
        self.handles = [blocks[layer].register_forward_hook(self._hook(k, layer == deepest))
                        for k, layer in enumerate(self.wanted)]
        return self

    def __exit__(self, *_exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
        self.state.clear()

    def run(self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
            weights: torch.Tensor) -> np.ndarray:
        """float32 [len(wanted), ..., B, d] pooled block outputs of one batch; raises
        ``NonFiniteActivations`` naming the first wanted layer that is not finite."""
        device = self.device
        self.state.clear()
        self.state.update(weights=weights.to(device), dtypes={})
        try:
            with contextlib.suppress(_StopForward):
                self.base(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                          position_ids=positions.to(device), use_cache=False)
            pooled = self.state["buffer"].cpu().numpy()
            dtypes = self.state["dtypes"]
        finally:
            self.state.clear()
        finite = np.isfinite(pooled.reshape(len(self.wanted), -1)).all(axis=1)
        if not finite.all():
            k = int(np.argmin(finite))
            raise NonFiniteActivations(
                f"layer {self.wanted[k]} produced non-finite activations at dtype "
                f"{dtypes[k]} (overflow?): use --dtype bf16 or fp32")
        return pooled


def pool_blocks(
    model: torch.nn.Module, wanted: Sequence[int], batches: Iterable[Batch],
    store: Callable[[int, np.ndarray, np.ndarray], None],
    on_batch: Callable[[int], None] | None = None,
) -> None:
    """Run batches ``(rows, input_ids, mask, positions, weights [..., B, T])`` through the
    decoder stack; a hook on each block in ``wanted`` pools its output with the weights and
    ``store(layer, rows, pooled [..., B, d])`` gets them once the batch is through. The
    forward stops after the deepest wanted block; hooks are removed however it ends."""
    with _Pooler(model, wanted) as pooler, torch.inference_mode():
        for rows, input_ids, mask, positions, weights in batches:
            pooled = pooler.run(input_ids, mask, positions, weights)
            for k, layer in enumerate(pooler.wanted):
                store(layer, rows, pooled[k])
            if on_batch is not None:
                on_batch(len(rows))


def pool_sequences(
    model: torch.nn.Module, wanted: Sequence[int], lengths: Sequence[int],
    make_batch: Callable[[list[int]], tuple[torch.Tensor, ...]],
    store: Callable[[int, np.ndarray, np.ndarray], None],
    max_batch_tokens: int = 8192,
    on_batch: Callable[[int], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    stats: dict | None = None,
) -> None:
    """``pool_blocks`` over sequences of ``lengths`` batched under a token budget
    (``make_batch(indices)`` → input_ids, mask, positions, weights). On device out-of-memory
    the budget halves (below the failed batch's padded size), the failed batch and the rest
    are batched again and the run goes on, with a one-line note to ``on_note``; ``stats``
    receives ``max_batch_tokens_used`` (the budget that worked) and ``oom_halvings``."""
    budget, halvings = int(max_batch_tokens), 0
    queue = token_budget_batches(list(lengths), budget)
    with _Pooler(model, wanted) as pooler, torch.inference_mode():
        while queue:
            batch = queue.pop(0)
            try:
                pooled = pooler.run(*make_batch(batch))
            except Exception as exc:
                if not is_oom(exc):
                    raise
                free_cached_memory()
                longest = max(lengths[i] for i in batch)
                if len(batch) == 1:
                    raise EmogeomError(
                        f"out of memory on {pooler.device} on a single text of {longest:,} "
                        "tokens: use a smaller model or dtype, another device, or shorter "
                        "texts") from None
                new = max(1, min(budget, len(batch) * longest) // 2)
                if on_note is not None:
                    on_note(f"{pooler.device.type.upper()} out of memory at {budget:,} tokens "
                            f"per batch; retrying at {new:,}")
                budget, halvings = new, halvings + 1
                rest = batch + [i for b in queue for i in b]
                queue = [[rest[j] for j in b]
                         for b in token_budget_batches([lengths[i] for i in rest], budget)]
                continue
            rows = np.array(batch)
            for k, layer in enumerate(pooler.wanted):
                store(layer, rows, pooled[k])
            if on_batch is not None:
                on_batch(len(batch))
    if stats is not None:
        stats.update(max_batch_tokens_used=budget, oom_halvings=halvings)


def extract_pooled(
    model: torch.nn.Module,
    tokenizer,
    texts: Sequence[str],
    pooling: str | Sequence[str] = "mean",
    mean_start: int = 1,
    layers: Sequence[int] | None = None,
    max_batch_tokens: int = 8192,
    padding_side: str | None = None,
    on_batch: Callable[[int], None] | None = None,
    add_special_tokens: bool = True,
    on_note: Callable[[str], None] | None = None,
    stats: dict | None = None,
    truncate: bool = False,
) -> np.ndarray | dict[str, np.ndarray]:
    """Pooled block outputs float32 [len(layers), len(texts), d] in the order of ``texts``;
    for several poolings (``("last", "mean")``) a dict of them, all read in the same pass.

    Texts are tokenised as given (with the tokenizer's special tokens unless
    ``add_special_tokens`` is off, for texts already in a chat template), sorted by length and
    batched under a token budget. Inputs go to the input embedding's device; pooled sums stay
    there and come back as float32 once per batch. On device out-of-memory the token budget
    halves and the batch is retried (a note to ``on_note``; ``stats`` gets
    ``max_batch_tokens_used`` and ``oom_halvings``). Raises ``NonFiniteActivations`` naming
    the first non-finite layer. A text longer than the model's context (``context_limit``)
    is an error before any forward pass, or with ``truncate`` is cut to its first tokens
    (``stats["truncated"]`` counts them).
    """
    names = [pooling] if isinstance(pooling, str) else list(dict.fromkeys(pooling))
    for name in names:
        if name not in POOLINGS:
            raise EmogeomError(f"unknown pooling '{name}' (use one of: {', '.join(POOLINGS)})")
    if not texts:
        raise EmogeomError("no texts to extract from")
    blocks = decoder_layers(model)
    wanted = list(range(len(blocks))) if layers is None else sorted(set(layers))
    if wanted[0] < 0 or wanted[-1] >= len(blocks):
        raise EmogeomError(f"layers must lie in 0..{len(blocks) - 1}, got {list(layers)}")
    side = padding_side or getattr(tokenizer, "padding_side", "right") or "right"
    ids = [list(tokenizer(t, add_special_tokens=add_special_tokens)["input_ids"])
           for t in texts]
    limit = context_limit(model)
    over = over_long([len(x) for x in ids], limit)
    if over and not truncate:
        raise too_long(f"text {over[0]} (of {len(texts)})", len(ids[over[0]]),
                       model_name(model), limit, len(over) - 1)
    truncated = truncate_ids(ids, limit) if truncate else 0
    d = model.config.get_text_config().hidden_size
    out = np.zeros((len(names), len(wanted), len(texts), d), dtype=np.float32)
    slot = {layer: k for k, layer in enumerate(wanted)}

    pad_id = pad_token_id(tokenizer, model)

    def make_batch(batch: list[int]):
        input_ids, mask, positions = pad_batch([ids[i] for i in batch], pad_id, side)
        return (input_ids, mask, positions,
                torch.stack([pooling_weights(mask, positions, p, mean_start) for p in names]))

    def store(layer: int, rows: np.ndarray, pooled: np.ndarray) -> None:
        out[:, slot[layer], rows] = pooled

    pool_sequences(model, wanted, [len(x) for x in ids], make_batch, store, max_batch_tokens,
                   on_batch, on_note, stats)
    if stats is not None:
        stats["truncated"] = truncated
    if isinstance(pooling, str):
        return out[0]
    return {name: out[k] for k, name in enumerate(names)}
