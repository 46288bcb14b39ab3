"""Secondary similarity measures on the vectors themselves (different widths allowed)."""

from __future__ import annotations

import numpy as np


def _centred(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x - x.mean(axis=0, keepdims=True)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear centred kernel alignment of x [E, d_a] and y [E, d_b] (rows = same conditions)."""
    x, y = _centred(x), _centred(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"vector sets differ in conditions: {x.shape[0]} vs {y.shape[0]}")
    num = np.linalg.norm(y.T @ x) ** 2
    den = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(num / den) if den > 0 else 0.0


def procrustes_similarity(x: np.ndarray, y: np.ndarray) -> float:
    """Orthogonal Procrustes similarity in [0, 1]: the best rotation's alignment of centred,
    unit-norm x and y, i.e. the nuclear norm of xᵀy / (‖x‖ ‖y‖). Equals sqrt(1 − disparity) of
    scipy.spatial.procrustes when the widths agree."""
    x, y = _centred(x), _centred(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"vector sets differ in conditions: {x.shape[0]} vs {y.shape[0]}")
    den = np.linalg.norm(x) * np.linalg.norm(y)
    if den == 0:
        return 0.0
    return float(np.linalg.svd(x.T @ y, compute_uv=False).sum() / den)
