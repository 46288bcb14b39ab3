"""MTI Compliance probes (formal format constraints, stance under pressure), their scoring, and
the link between behaviour profiles and emotion geometry.

``formal``, ``stance`` and ``link`` are torch-free; ``behaviour_profile`` (which runs a model)
is imported lazily so that importing this package does not load torch.
"""

from __future__ import annotations

from typing import Any

from emogeom.behavior.link import link_behaviour_geometry

__all__ = ["behaviour_profile", "link_behaviour_geometry", "save_profile"]


def __getattr__(name: str) -> Any:
    if name in ("behaviour_profile", "save_profile"):
        from emogeom.behavior import profile

        return getattr(profile, name)
    raise AttributeError(name)
