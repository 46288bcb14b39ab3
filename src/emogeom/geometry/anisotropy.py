"""Anisotropy: how parallel pooled residual states are, whatever their content."""

from __future__ import annotations

import numpy as np

from emogeom.geometry.rdm import _unit


def mean_pairwise_cosine(x: np.ndarray) -> np.ndarray:
    """Mean cosine over distinct pairs of rows of x [..., N, d] → [...]."""
    u = _unit(np.asarray(x, dtype=np.float64))
    n = u.shape[-2]
    if n < 2:
        raise ValueError("need at least 2 rows for a pairwise cosine")
    s = u.sum(axis=-2)
    total = np.einsum("...d,...d->...", s, s) - np.einsum("...nd,...nd->...", u, u)
    return total / (n * (n - 1))


def anisotropy(neutral_states: np.ndarray) -> np.ndarray:
    """Anisotropy = mean pairwise cosine of neutral sentences' pooled states [..., M, d]."""
    return mean_pairwise_cosine(neutral_states)
