"""Pure NumPy/SciPy statistics on RDMs (no torch)."""

from emogeom.stats.compare import mantel, rdm_correlation

__all__ = ["mantel", "rdm_correlation"]
