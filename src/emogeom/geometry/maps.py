"""Low-dimensional coordinates of emotion vectors for maps."""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA


def pca_coords(vectors: np.ndarray, n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """PCA coordinates [E, n] of vectors [E, d] and the explained variance ratios [n].

    Each column is flipped so that its first entry is non-negative: the map's orientation is
    then a function of the data alone, not of the SVD routine.
    """
    pca = PCA(n_components=n, svd_solver="full")
    coords = pca.fit_transform(np.asarray(vectors, dtype=np.float64))
    signs = np.where(coords[0] < 0, -1.0, 1.0)
    return coords * signs, pca.explained_variance_ratio_


def pca_fit_coords(vectors: np.ndarray, fit_rows: np.ndarray, n: int = 3
                   ) -> tuple[np.ndarray, np.ndarray]:
    """PCA fitted on ``vectors[fit_rows]`` (e.g. the emotions without neutral), every row
    projected: coordinates [E, n] and explained variance ratios [n]; signs as in
    ``pca_coords`` (the first fitted row non-negative)."""
    from sklearn.decomposition import PCA as _PCA

    x = np.asarray(vectors, dtype=np.float64)
    n = min(n, len(fit_rows) - 1)
    pca = _PCA(n_components=n, svd_solver="full").fit(x[fit_rows])
    coords = pca.transform(x)
    signs = np.where(coords[fit_rows[0]] < 0, -1.0, 1.0)
    return coords * signs, pca.explained_variance_ratio_


def mds_coords(dissimilarity: np.ndarray, seed: int = 0, n: int = 2) -> np.ndarray:
    """Metric MDS coordinates [k, n] of a symmetric dissimilarity matrix [k, k] (e.g. 1 − ρ
    between models), seeded; columns flipped so the first point's entries are non-negative."""
    import inspect

    from sklearn.manifold import MDS

    d = np.asarray(dissimilarity, dtype=np.float64)
    d = np.clip((d + d.T) / 2, 0, None)
    np.fill_diagonal(d, 0.0)
    if len(d) < 3:  # two points: the distance on one axis is the whole map
        coords = np.zeros((len(d), n))
        if len(d) == 2:
            coords[1, 0] = d[0, 1]
        return coords
    params = inspect.signature(MDS).parameters
    kwargs = ({"metric": "precomputed", "init": "random"} if "metric_mds" in params
              else {"dissimilarity": "precomputed"})
    coords = MDS(n_components=n, n_init=4, random_state=seed, normalized_stress="auto",
                 **kwargs).fit_transform(d)
    return coords * np.where(coords[0] < 0, -1.0, 1.0)
