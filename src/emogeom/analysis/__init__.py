"""NumPy-only analysis: one model's states → ``Geometry``; two geometries → ``Comparison``."""

from emogeom.analysis.compare import COLUMNS, Comparison, compare, compare_all, correct
from emogeom.analysis.geometry import Geometry, analyse

__all__ = ["COLUMNS", "Comparison", "Geometry", "analyse", "compare", "compare_all", "correct"]
