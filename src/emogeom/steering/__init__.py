"""Residual-stream steering with emotion vectors: hooks, dose-response, metrics, regimes."""

from emogeom.geometry.layers import parse_layers
from emogeom.steering.dose import DEFAULT_SCENARIOS, Scenario, dose_response, parse_strengths
from emogeom.steering.hooks import steer
from emogeom.steering.regime import perplexity_regime, reference_regime, regimes, summarise
from emogeom.steering.run import run_steer, steering_regime
from emogeom.steering.vectors import (
    SteeringVectors,
    compute_vectors,
    load_vectors,
    residual_norms,
)

__all__ = [
    "DEFAULT_SCENARIOS",
    "Scenario",
    "SteeringVectors",
    "compute_vectors",
    "dose_response",
    "load_vectors",
    "parse_layers",
    "parse_strengths",
    "perplexity_regime",
    "reference_regime",
    "regimes",
    "residual_norms",
    "run_steer",
    "steer",
    "steering_regime",
    "summarise",
]
