"""The vector emogeom's steering adds at each layer, for writers that hand it to other tools.

``emogeom steer`` and ``emogeom.steer`` add ``alpha × norm[layer] × unit(v)`` to the output of
decoder block ``layer`` (0-based), ``norm`` being the layer's mean per-token residual norm on
the neutral sentences. An exporter gets the same vectors from ``steering_directions`` so a
vector used elsewhere moves the model as far as emogeom's own steering at the same ``alpha``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from emogeom.errors import EmogeomError
from emogeom.geometry.layers import parse_layers


def checked_layers(geometry: Any, layers: int | Sequence[int]) -> list[int]:
    """Layer numbers as a list in the order given, each checked against the geometry."""
    picked = [int(layers)] if isinstance(layers, (int, np.integer)) else [int(x) for x in layers]
    bad = [x for x in picked if not 0 <= x < geometry.n_layers]
    if bad or not picked:
        raise EmogeomError(f"layer(s) {bad or picked} out of range: this geometry has layers "
                           f"0..{geometry.n_layers - 1}")
    return picked


def chosen_layers(geometry: Any, layers: int | Sequence[int] | str | None) -> list[int]:
    """Layers as a sorted list: None → the geometry's best layer; a spec '12', 'a-b', 'a,b'
    or 'all' as ``emogeom steer`` reads it; ints as they are, each checked."""
    if layers is None:
        return [geometry.best_layer]
    if isinstance(layers, str):
        return parse_layers(layers, geometry.n_layers)
    return sorted(set(checked_layers(geometry, layers)))


def steering_directions(geometry: Any, emotion: str, layers: int | Sequence[int] | str | None
                        = None, scale: float = 1.0,
                        norms: Mapping[int, float] | None = None) -> dict[int, np.ndarray]:
    """{layer: float32 [d]}: ``scale × norms[layer] × unit(vector)`` of ``emotion`` (norms
    None: 1, i.e. ``scale`` in absolute residual units)."""
    if emotion not in geometry.emotions:
        raise EmogeomError(f"unknown emotion '{emotion}' (this geometry has: "
                           f"{', '.join(geometry.emotions)})")
    k = geometry.emotions.index(emotion)
    out = {}
    for layer in chosen_layers(geometry, layers):
        v = np.asarray(geometry.vectors[layer, k], dtype=np.float64)
        length = float(np.linalg.norm(v))
        if length == 0.0:
            raise EmogeomError(f"the '{emotion}' vector at layer {layer} is zero; it has no "
                               "direction to export")
        size = scale * (1.0 if norms is None else float(norms[layer]))
        out[layer] = (size * v / length).astype(np.float32)
    return out


def measure_norms(model: Any, tokenizer: Any, layers: Sequence[int]) -> dict[int, float]:
    """Mean per-token residual norm of each layer on the neutral sentences, measured exactly
    as ``emogeom steer`` measures it (needs the model)."""
    from emogeom.models.loading import wrap
    from emogeom.steering.vectors import residual_norms

    return residual_norms(wrap(model, tokenizer), list(layers))
