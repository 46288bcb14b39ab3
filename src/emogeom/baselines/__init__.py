"""Text-only representations of the stimuli, in the same [layers, stimuli, d] shape as model
activations, so every comparison can ask: the model, or the texts?"""

from emogeom.baselines.text import (
    BASELINES,
    BaselineUnavailable,
    baseline_states,
    minilm_states,
    surface_states,
    tfidf_states,
)

__all__ = [
    "BASELINES",
    "BaselineUnavailable",
    "baseline_states",
    "minilm_states",
    "surface_states",
    "tfidf_states",
]
