"""Reliability ceilings for a between-model RDM correlation."""

from __future__ import annotations

import math


def noise_ceiling(rel_a: float, rel_b: float) -> float:
    """The highest ρ two RDMs of these reliabilities can reach: sqrt(rel_a · rel_b); NaN when
    either reliability is not positive (no ceiling can be stated)."""
    if rel_a is None or rel_b is None or not (rel_a > 0 and rel_b > 0):
        return float("nan")
    return math.sqrt(rel_a * rel_b)


def ceiled(rho: float, rel_a: float, rel_b: float) -> float:
    """ρ divided by its noise ceiling (disattenuated); NaN without a ceiling."""
    c = noise_ceiling(rel_a, rel_b)
    return rho / c if c == c else float("nan")
