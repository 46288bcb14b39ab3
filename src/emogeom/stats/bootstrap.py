"""Stimulus bootstrap: resample stories within each emotion, rebuild vectors and RDMs.

Two models that read the same corpus get the same resampled stories in every replicate, so
the interval for their ρ reflects only which texts were drawn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emogeom.geometry.rdm import cosine_rdm
from emogeom.geometry.vectors import vectors_from_means
from emogeom.stats.compare import compare_vectors, upper_indices


def resample_weights(
    labels: Sequence[str], emotions: Sequence[str], n_boot: int, seed: int
) -> np.ndarray:
    """[n_boot, E, N] averaging weights: row (b, e) averages a with-replacement resample of
    emotion e's stimuli."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    w = np.zeros((n_boot, len(emotions), len(labels)))
    for e_idx, e in enumerate(emotions):
        members = np.flatnonzero(labels == e)
        if len(members) == 0:
            raise ValueError(f"no stimuli for emotion '{e}'")
        draws = rng.integers(0, len(members), size=(n_boot, len(members)))
        for b in range(n_boot):
            np.add.at(w[b, e_idx], members[draws[b]], 1.0 / len(members))
    return w


def bootstrap_rdms(acts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Bootstrap RDMs [B, E, E] of pooled states acts [N, d] (one layer) under ``weights``."""
    means = weights @ np.asarray(acts, dtype=np.float64)  # [B, E, d]
    return cosine_rdm(vectors_from_means(means, range(means.shape[1]))[0])


def percentile_ci(samples: np.ndarray, level: float = 0.95, axis: int = 0) -> np.ndarray:
    """Percentile interval [low, high] along ``axis``."""
    tail = (1 - level) / 2 * 100
    return np.percentile(samples, [tail, 100 - tail], axis=axis)


def bootstrap_rho(
    acts_a: np.ndarray, acts_b: np.ndarray, labels: Sequence[str], emotions: Sequence[str],
    method: str = "spearman", n_boot: int = 1000, seed: int = 0, level: float = 0.95,
) -> dict[str, np.ndarray | float]:
    """Percentile CI of the RDM similarity of two models that read the same stimuli, and
    per-cell CIs of each model's RDM. A replicate with a constant RDM scores 0 (not NaN)."""
    w = resample_weights(labels, emotions, n_boot, seed)
    ra, rb = bootstrap_rdms(acts_a, w), bootstrap_rdms(acts_b, w)
    i, j = upper_indices(len(emotions))
    rhos = np.array([compare_vectors(ra[k, i, j], rb[k, i, j][None], method)[0]
                     for k in range(n_boot)])
    low, high = percentile_ci(rhos, level)
    return {"rho_samples": rhos, "ci_low": float(low), "ci_high": float(high),
            "cells_a": percentile_ci(ra, level), "cells_b": percentile_ci(rb, level)}
