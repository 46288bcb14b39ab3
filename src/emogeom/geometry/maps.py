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
