"""Named settings: ``paper`` reproduces the reference study's pipeline, ``default`` is ours."""

from __future__ import annotations

from typing import Any

from emogeom.errors import EmogeomError

PRESETS: dict[str, dict[str, Any]] = {
    # arXiv 2604.11050: 3 passages per emotion, raw text, last token, no denoising,
    # best layer = argmin mean pairwise cosine, anisotropy over 20 neutral sentences.
    "paper": {"per_emotion": 3, "pooling": "last", "mean_start": 1, "denoise": 0.0,
              "layer_criterion": "reference", "n_neutral": 20},
    # Recommended: the full corpus, mean pooling from token 1, neutral-PC projection,
    # layer chosen by split-half reliability.
    "default": {"per_emotion": None, "pooling": "mean", "mean_start": 1, "denoise": 0.5,
                "layer_criterion": "reliability", "n_neutral": None},
}


def preset_values(name: str) -> dict[str, Any]:
    """A copy of a preset's settings; one-line error for an unknown name."""
    if name not in PRESETS:
        raise EmogeomError(f"unknown preset '{name}' (use one of: {', '.join(PRESETS)})")
    return dict(PRESETS[name])
