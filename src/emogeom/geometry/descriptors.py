"""Scalar descriptors of one RDM / vector set against human reference ratings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emogeom.geometry.maps import pca_coords


def group_distances(
    rdm: np.ndarray, emotions: Sequence[str], group_a: Sequence[str], group_b: Sequence[str]
) -> tuple[float, float]:
    """(mean distance within groups, mean distance between groups) over distinct pairs.

    Within = pairs inside a or inside b; between = one emotion from each.
    """
    index = {e: i for i, e in enumerate(emotions)}
    a = [index[e] for e in group_a]
    b = [index[e] for e in group_b]
    within = [rdm[i, j] for g in (a, b) for k, i in enumerate(g) for j in g[k + 1 :]]
    between = [rdm[i, j] for i in a for j in b]
    return float(np.mean(within)), float(np.mean(between))


def pc_correlations(vectors: np.ndarray, ratings: np.ndarray, n_pcs: int = 2) -> np.ndarray:
    """|Pearson r| between each of the first ``n_pcs`` PCA coordinates of vectors [E, d] and
    each rating column [E, k] → [n_pcs, k]."""
    coords, _ = pca_coords(vectors, n=n_pcs)
    out = np.zeros((n_pcs, ratings.shape[1]))
    for p in range(n_pcs):
        for k in range(ratings.shape[1]):
            out[p, k] = abs(np.corrcoef(coords[:, p], ratings[:, k])[0, 1])
    return out
