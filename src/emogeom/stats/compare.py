"""RDM-to-RDM comparison on upper triangles, with a label-permutation (Mantel) p-value."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, rankdata, spearmanr


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"need two square RDMs of equal shape, got {a.shape} and {b.shape}")


def _upper(rdm: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(rdm.shape[0], k=1)
    return rdm[i, j]


def rdm_correlation(a: np.ndarray, b: np.ndarray, method: str = "spearman") -> float:
    """Correlation of the upper triangles of two RDMs: ``spearman`` (default) or ``pearson``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    _check_pair(a, b)
    if method == "spearman":
        return float(spearmanr(_upper(a), _upper(b)).statistic)
    if method == "pearson":
        return float(pearsonr(_upper(a), _upper(b)).statistic)
    raise ValueError(f"unknown RDM comparison method '{method}' (use spearman or pearson)")


def mantel(
    a: np.ndarray,
    b: np.ndarray,
    method: str = "spearman",
    n_perm: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Observed correlation and one-sided permutation p-value, permuting b's condition labels
    jointly on rows and columns; p = (k + 1) / (n_perm + 1), k = #null ≥ observed."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    _check_pair(a, b)
    n = a.shape[0]
    i, j = np.triu_indices(n, k=1)
    if method == "spearman":
        # Ranks are invariant to relabelling: rank b's cells once, permute the rank matrix.
        ranks = np.zeros_like(b)
        ranks[i, j] = rankdata(b[i, j])
        ranks = ranks + ranks.T
        xa, mb = rankdata(a[i, j]), ranks
    elif method == "pearson":
        xa, mb = a[i, j], b
    else:
        raise ValueError(f"unknown RDM comparison method '{method}' (use spearman or pearson)")
    xa = xa - xa.mean()
    observed = _corr_with(xa, mb[i, j][None, :])[0]
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((n_perm, n)), axis=1)
    null = _corr_with(xa, mb[perms[:, i], perms[:, j]])
    k = int(np.sum(null >= observed - 1e-12))
    return float(observed), (k + 1) / (n_perm + 1)


def _corr_with(xc: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Pearson correlation of a centred vector xc [M] with each row of ys [P, M]."""
    yc = ys - ys.mean(axis=1, keepdims=True)
    den = np.sqrt((xc**2).sum() * (yc**2).sum(axis=1))
    return np.where(den > 0, (yc @ xc) / np.where(den > 0, den, 1.0), 0.0)
