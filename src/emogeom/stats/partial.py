"""Partial RDM correlation: the agreement of two RDMs after regressing out control RDMs
(e.g. text-only baselines) from both, with a label-permutation p-value."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

from emogeom.stats.compare import (
    _rank_cells,
    check_rdm_pair,
    compare_vectors,
    permutations,
    upper_indices,
)


def _residualiser(controls: np.ndarray) -> np.ndarray:
    """I − H for the design [1, controls] over M cells (controls [K, M])."""
    m = controls.shape[1]
    design = np.column_stack([np.ones(m), *controls])
    return np.eye(m) - design @ np.linalg.pinv(design)


def partial_correlation(
    x: np.ndarray, y: np.ndarray, controls: Sequence[np.ndarray], method: str = "spearman"
) -> float:
    """Partial correlation of cell vectors x and y [M] given control vectors [K][M]
    (Spearman: on ranks; Pearson: on values)."""
    ctrl = np.atleast_2d(np.asarray(controls, dtype=np.float64))
    if method == "spearman":
        x, y, ctrl = rankdata(x), rankdata(y), rankdata(ctrl, axis=1)
    elif method != "pearson":
        raise ValueError(f"partial correlation supports spearman or pearson, not '{method}'")
    r = _residualiser(ctrl)
    # Residuals of a design with an intercept are centred: their cosine is their correlation.
    return float(compare_vectors(r @ x, (r @ y)[None], "cosine")[0])


def partial_mantel(
    a: np.ndarray, b: np.ndarray, controls: Sequence[np.ndarray], method: str = "spearman",
    n_perm: int = 10_000, seed: int = 0,
) -> tuple[float, float]:
    """Partial RDM correlation of a and b given control RDMs, and a one-sided p-value from
    permuting b's condition labels (rows and columns jointly; the controls stay with a)."""
    a, b = check_rdm_pair(a, b)
    for c in controls:
        check_rdm_pair(a, c)
    i, j = upper_indices(a.shape[0])
    if method == "spearman":
        a, b = _rank_cells(a), _rank_cells(b)
        ctrl = np.array([rankdata(np.asarray(c)[i, j]) for c in controls])
    elif method == "pearson":
        ctrl = np.array([np.asarray(c, dtype=np.float64)[i, j] for c in controls])
    else:
        raise ValueError(f"partial correlation supports spearman or pearson, not '{method}'")
    r = _residualiser(ctrl)
    rx = r @ a[i, j]
    observed = float(compare_vectors(rx, (r @ b[i, j])[None], "cosine")[0])
    perms = permutations(a.shape[0], n_perm, seed)
    null = compare_vectors(rx, b[perms[:, i], perms[:, j]] @ r.T, "cosine")
    k = int(np.sum(null >= observed - 1e-12))
    return observed, (k + 1) / (n_perm + 1)
