"""Scalar descriptors of one RDM / vector set against human reference ratings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emogeom.geometry.maps import pca_coords


def group_distances(
    rdm: np.ndarray, emotions: Sequence[str], group_a: Sequence[str], group_b: Sequence[str]
) -> tuple[float, float]:
    """(mean distance within groups, mean distance between groups) over distinct pairs.

    Within = pairs inside a or inside b; between = one emotion from each. NaN where a side
    has no pairs (a corpus with a subset of emotions may lack one group).
    """
    index = {e: i for i, e in enumerate(emotions)}
    a = [index[e] for e in group_a]
    b = [index[e] for e in group_b]
    within = [rdm[i, j] for g in (a, b) for k, i in enumerate(g) for j in g[k + 1 :]]
    between = [rdm[i, j] for i in a for j in b]
    return (float(np.mean(within)) if within else float("nan"),
            float(np.mean(between)) if between else float("nan"))


def pc_correlations(vectors: np.ndarray, ratings: np.ndarray, n_pcs: int = 2) -> np.ndarray:
    """|Pearson r| between each of the first ``n_pcs`` PCA coordinates of vectors [E, d] and
    each rating column [E, k] → [n_pcs, k]; fewer rows when E - 1 < n_pcs, NaN where a
    coordinate or rating is constant."""
    n_pcs = min(n_pcs, vectors.shape[0] - 1)
    if n_pcs < 1:
        return np.full((1, ratings.shape[1]), np.nan)
    coords, _ = pca_coords(vectors, n=n_pcs)
    out = np.zeros((n_pcs, ratings.shape[1]))
    for p in range(n_pcs):
        for k in range(ratings.shape[1]):
            x, y = coords[:, p], ratings[:, k]
            ok = x.std() > 0 and y.std() > 0
            out[p, k] = abs(np.corrcoef(x, y)[0, 1]) if ok else np.nan
    return out


def rating_rdm(ratings: np.ndarray) -> np.ndarray:
    """Euclidean distances [E, E] between emotions' human ratings [E, k] (e.g. valence and
    arousal): a human reference RDM."""
    r = np.asarray(ratings, dtype=np.float64)
    return np.linalg.norm(r[:, None, :] - r[None, :, :], axis=-1)
