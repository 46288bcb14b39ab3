"""Reliability ceilings for a between-model RDM correlation."""

from __future__ import annotations

import numpy as np


def noise_ceiling(rel_a, rel_b):
    """The highest ρ two RDMs of these reliabilities can reach: sqrt(rel_a · rel_b); NaN when
    either reliability is not positive (no ceiling can be stated). Scalars give a float,
    arrays an array (element by element)."""
    if rel_a is None or rel_b is None:
        return float("nan")
    a, b = np.asarray(rel_a, dtype=np.float64), np.asarray(rel_b, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        out = np.where((a > 0) & (b > 0), np.sqrt(np.clip(a * b, 0, None)), np.nan)
    return float(out) if out.ndim == 0 else out


def ceiled(rho: float, rel_a: float, rel_b: float) -> float:
    """ρ divided by its noise ceiling (disattenuated); NaN without a ceiling."""
    c = noise_ceiling(rel_a, rel_b)
    return rho / c if c == c else float("nan")
