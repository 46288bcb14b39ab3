"""Representational dissimilarity matrices (1 - cosine) and their upper triangles."""

from __future__ import annotations

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm; an all-zero row stays zero (its cosine with anything is 0)."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x, dtype=np.float64), where=norms > 0)


def cosine_rdm(vectors: np.ndarray) -> np.ndarray:
    """Cosine RDM 1 - cos(v_i, v_j) of vectors [..., E, d] → [..., E, E], zero diagonal."""
    u = _unit(np.asarray(vectors, dtype=np.float64))
    rdm = 1.0 - np.einsum("...id,...jd->...ij", u, u)
    idx = np.arange(rdm.shape[-1])
    rdm[..., idx, idx] = 0.0
    return rdm


def upper(rdm: np.ndarray) -> np.ndarray:
    """Upper triangle (above the diagonal) of [..., E, E] → [..., E(E-1)/2]."""
    i, j = np.triu_indices(rdm.shape[-1], k=1)
    return rdm[..., i, j]


def rdm_std(rdm: np.ndarray) -> np.ndarray:
    """Standard deviation of the upper-triangle entries (spread of the geometry)."""
    return upper(rdm).std(axis=-1)
