"""Stimulus generalisation: does two models' agreement survive a change of texts?

Each emotion's stories are split into two halves; model A's RDM from one half is compared with
model B's from the other half (both ways). Within one model the two halves' RDMs give its
cross-half ρ.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emogeom.geometry.rdm import cosine_rdm
from emogeom.geometry.vectors import emotion_vectors
from emogeom.stats.bootstrap import bootstrap_rdms, percentile_ci, resample_weights
from emogeom.stats.compare import compare_vectors, mantel, upper_indices
from emogeom.stats.cross_style import mean_pairs_mantel


def half_rdm(acts: np.ndarray, labels: Sequence[str], emotions: Sequence[str],
             idx: np.ndarray) -> np.ndarray:
    """RDM from the stimuli ``idx`` of acts [..., N, d] (any leading layer axes kept)."""
    labels = np.asarray(labels)
    return cosine_rdm(emotion_vectors(acts[..., idx, :], labels[idx], emotions))


def cross_text(
    acts_a: np.ndarray, acts_b: np.ndarray, labels: Sequence[str], emotions: Sequence[str],
    halves: tuple[np.ndarray, np.ndarray], method: str = "spearman", n_perm: int = 10_000,
    n_boot: int = 1000, seed: int = 0, level: float = 0.95,
) -> dict[str, float]:
    """Cross-text ρ (mean of the two disjoint pairings) and each model's cross-half ρ, each
    with a permutation p and a bootstrap percentile CI (stories resampled within emotion and
    half, the same draws for both models). Resampling adds noise, so an interval can sit a
    little below the observed value: it errs toward lower agreement."""
    labels = np.asarray(labels)
    h1, h2 = halves
    a1, a2 = (half_rdm(acts_a, labels, emotions, h) for h in (h1, h2))
    b1, b2 = (half_rdm(acts_b, labels, emotions, h) for h in (h1, h2))
    out: dict[str, float] = {}
    out["rho_cross_text"], out["p_cross_text"] = mean_pairs_mantel([(a1, b2), (a2, b1)],
                                                                    method, n_perm, seed)
    out["rho_within_a"], out["p_within_a"] = mantel(a1, a2, method, n_perm, seed)
    out["rho_within_b"], out["p_within_b"] = mantel(b1, b2, method, n_perm, seed)
    w1 = resample_weights(labels[h1], emotions, n_boot, seed)
    w2 = resample_weights(labels[h2], emotions, n_boot, seed + 1)
    ra1, ra2 = bootstrap_rdms(acts_a[h1], w1), bootstrap_rdms(acts_a[h2], w2)
    rb1, rb2 = bootstrap_rdms(acts_b[h1], w1), bootstrap_rdms(acts_b[h2], w2)
    i, j = upper_indices(len(emotions))

    def sims(x, y):
        return np.array([compare_vectors(x[k, i, j], y[k, i, j][None], method)[0]
                         for k in range(n_boot)])

    samples = {"cross_text": (sims(ra1, rb2) + sims(ra2, rb1)) / 2,
               "within_a": sims(ra1, ra2), "within_b": sims(rb1, rb2)}
    for name, s in samples.items():
        low, high = percentile_ci(s, level)
        out[f"ci_{name}_low"], out[f"ci_{name}_high"] = float(low), float(high)
    return out
