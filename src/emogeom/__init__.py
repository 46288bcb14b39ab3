"""emogeom: emotion geometry of language models.

    import emogeom
    lm = emogeom.load_model("smollm2-135m-instruct")
    g = emogeom.extract(lm.model, lm.tokenizer)          # Geometry
    h = emogeom.extract(*emogeom.load_model("gemma3-270m"))
    emogeom.compare(g, h)                                # Comparison: rho, ci, p, ...

Names load on first use, so ``import emogeom`` stays light (no torch until a model is used).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

_API = {
    "load_model": "emogeom.api", "load_corpus": "emogeom.api", "extract": "emogeom.api",
    "compare": "emogeom.api", "steer": "emogeom.api", "settings": "emogeom.api",
    "Study": "emogeom.api", "Geometry": "emogeom.analysis", "Comparison": "emogeom.analysis",
    "Settings": "emogeom.config", "StudySpec": "emogeom.config",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'emogeom' has no attribute {name!r}")
