"""Pure NumPy geometry of emotion vectors (no torch): vectors, RDMs, anisotropy, layers, maps."""

from emogeom.geometry.anisotropy import anisotropy, mean_pairwise_cosine
from emogeom.geometry.descriptors import group_distances, pc_correlations, rating_rdm
from emogeom.geometry.layers import (
    best_layer,
    layer_reliability,
    reference_best_layer,
    rowwise_spearman,
)
from emogeom.geometry.maps import mds_coords, pca_coords
from emogeom.geometry.rdm import cosine_rdm, rdm_std, upper
from emogeom.geometry.vectors import class_means, emotion_vectors, project_out_neutral_pcs

__all__ = [
    "anisotropy",
    "best_layer",
    "class_means",
    "cosine_rdm",
    "emotion_vectors",
    "group_distances",
    "layer_reliability",
    "mean_pairwise_cosine",
    "pc_correlations",
    "mds_coords",
    "pca_coords",
    "project_out_neutral_pcs",
    "rating_rdm",
    "rdm_std",
    "reference_best_layer",
    "rowwise_spearman",
    "upper",
]
