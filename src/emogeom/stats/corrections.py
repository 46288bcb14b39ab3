"""Multiple-comparison corrections over many model pairs."""

from __future__ import annotations

import numpy as np
from scipy.stats import false_discovery_control


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (family-wise error), in the input order."""
    p = np.asarray(pvalues, dtype=np.float64)
    if p.size == 0:
        return p
    order = np.argsort(p)
    m = p.size
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def benjamini_hochberg(pvalues: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (false discovery rate), via scipy."""
    p = np.asarray(pvalues, dtype=np.float64)
    return p if p.size == 0 else false_discovery_control(p, method="bh")
