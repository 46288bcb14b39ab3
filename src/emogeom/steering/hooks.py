"""Residual-stream steering through plain forward hooks on decoder blocks (any HF decoder).

At each steered layer the hook adds ``alpha * norm[layer] * v / |v|`` to the block output
(``resid_post``) at every position the forward pass sees: the prompt on the first call and
each new token during ``generate`` (the KV cache holds the already-steered past).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch

from emogeom.errors import EmogeomError
from emogeom.extraction.pooled import decoder_layers
from emogeom.models.devices import input_device

VectorsLike = np.ndarray | torch.Tensor | Mapping[int, np.ndarray | torch.Tensor]


def check_layers(layers: int | Sequence[int], n_layers: int) -> list[int]:
    """Layer indices as a list, each checked to lie in 0..n_layers-1."""
    chosen = [int(layers)] if isinstance(layers, (int, np.integer)) else [int(x) for x in layers]
    if not chosen:
        raise EmogeomError("no layers to steer: give a layer, a range 'a-b' or 'all'")
    bad = [x for x in chosen if not 0 <= x < n_layers]
    if bad:
        raise EmogeomError(f"layer(s) {bad} out of range: this model has layers 0..{n_layers - 1}")
    return chosen


def _from_mapping(value: Mapping, layers: list[int], what: str) -> list:
    """The items of a {layer: item} mapping for ``layers``, every layer required."""
    missing = [x for x in layers if x not in value]
    if missing:
        raise EmogeomError(f"no {what} for layer(s) {missing}; give one per steered layer")
    return [value[x] for x in layers]


def steering_deltas(
    vectors: VectorsLike, layers: list[int], d_model: int, alpha: float,
    norms: Mapping[int, float] | Sequence[float] | None = None,
) -> list[torch.Tensor]:
    """The float32 vectors added at each layer: alpha * norm * unit(v)."""
    if isinstance(vectors, Mapping):
        vecs = _from_mapping(vectors, layers, "vector")
    else:
        arr = torch.as_tensor(np.asarray(vectors, dtype=np.float32)
                              if not isinstance(vectors, torch.Tensor) else vectors)
        if arr.dim() == 1:
            vecs = [arr] * len(layers)
        elif arr.dim() == 2 and arr.shape[0] == len(layers):
            vecs = list(arr)
        else:
            raise EmogeomError(f"steering vectors have shape {tuple(arr.shape)}: give one "
                               f"vector [d] or one per steered layer [{len(layers)}, d]")
    if norms is None:
        scales = [1.0] * len(layers)
    elif isinstance(norms, Mapping):
        scales = [float(x) for x in _from_mapping(norms, layers, "residual norm")]
    else:
        scales = [float(x) for x in norms]
        if len(scales) != len(layers):
            raise EmogeomError(f"{len(scales)} residual norms for {len(layers)} steered layers;"
                               " give one per layer")
    deltas = []
    for layer, v, scale in zip(layers, vecs, scales):
        v = torch.as_tensor(np.asarray(v, dtype=np.float32)
                            if not isinstance(v, torch.Tensor) else v).float().flatten()
        if v.numel() != d_model:
            raise EmogeomError(f"steering vector for layer {layer} has dimension {v.numel()} but "
                               f"the model's residual stream has {d_model}: vectors from "
                               "another model? Recompute them for this model")
        length = torch.linalg.vector_norm(v)
        if not torch.isfinite(length) or length == 0:
            raise EmogeomError(f"steering vector for layer {layer} is zero or non-finite; "
                               "check the emotion vectors")
        deltas.append(float(alpha) * scale * v / length)
    return deltas


def _add_hook(delta: torch.Tensor):
    def hook(_module, _inputs, output):
        if isinstance(output, tuple):
            hidden = output[0]
            return (hidden + delta.to(hidden.device, hidden.dtype), *output[1:])
        return output + delta.to(output.device, output.dtype)
    return hook


def _block_device(block: torch.nn.Module, default: torch.device) -> torch.device:
    """Where a decoder block computes (a model spread over GPUs has blocks on several)."""
    param = next(block.parameters(), None)
    return param.device if param is not None and param.device.type != "meta" else default


@contextlib.contextmanager
def steer(
    model: torch.nn.Module,
    vectors: VectorsLike,
    layers: int | Sequence[int],
    alpha: float,
    norms: Mapping[int, float] | Sequence[float] | None = None,
) -> Iterator[list[int]]:
    """Add ``alpha * norms[layer] * unit(vector)`` to the output of each decoder block in
    ``layers`` while the context is open; hooks are removed on exit, also on error.

    ``vectors``: one vector [d] for every layer, an array [len(layers), d], or {layer: [d]}.
    ``norms``: the residual scale per layer (None = 1, so alpha is in raw units). Yields the
    steered layer indices.
    """
    blocks = decoder_layers(model)
    chosen = check_layers(layers, len(blocks))
    d_model = model.config.get_text_config().hidden_size
    device = input_device(model)
    deltas = steering_deltas(vectors, chosen, d_model, alpha, norms)
    handles = []
    try:
        for layer, delta in zip(chosen, deltas):
            delta = delta.to(_block_device(blocks[layer], device))
            handles.append(blocks[layer].register_forward_hook(_add_hook(delta)))
        yield chosen
    finally:
        for h in handles:
            h.remove()
