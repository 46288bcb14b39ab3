"""Pure NumPy/SciPy statistics on RDMs and vectors (no torch)."""

from emogeom.stats.bootstrap import bootstrap_rdms, bootstrap_rho, percentile_ci, resample_weights
from emogeom.stats.compare import (
    METHODS,
    RDMError,
    compare_vectors,
    layer_max_test,
    mantel,
    rdm_correlation,
)
from emogeom.stats.corrections import benjamini_hochberg, holm
from emogeom.stats.cross_style import (
    Groups,
    cross_style,
    cross_style_layers,
    cross_style_profile,
    cross_style_within,
    style_groups,
)
from emogeom.stats.generalization import cross_text, half_rdm
from emogeom.stats.partial import partial_correlation, partial_mantel
from emogeom.stats.reliability import ceiled, noise_ceiling
from emogeom.stats.similarity import linear_cka, procrustes_similarity

__all__ = [
    "Groups",
    "METHODS",
    "RDMError",
    "benjamini_hochberg",
    "bootstrap_rdms",
    "bootstrap_rho",
    "ceiled",
    "compare_vectors",
    "cross_style",
    "cross_style_layers",
    "cross_style_profile",
    "cross_style_within",
    "cross_text",
    "half_rdm",
    "holm",
    "layer_max_test",
    "linear_cka",
    "mantel",
    "noise_ceiling",
    "partial_correlation",
    "partial_mantel",
    "percentile_ci",
    "procrustes_similarity",
    "rdm_correlation",
    "resample_weights",
    "style_groups",
]
