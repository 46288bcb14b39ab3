"""A geometry's RDMs as an rsatoolbox ``RDMs`` object, and on disk in rsatoolbox's own HDF5.

emogeom's RDM is 1 − cosine of the emotion vectors; rsatoolbox names that measure 'cosine'
(scipy's name for the same distance). One RDM per layer, the emotions as pattern descriptor
'emotion', the layer (0-based decoder block) and model as RDM descriptors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emogeom import geometry as geo
from emogeom.errors import EmogeomError
from emogeom.export.directions import checked_layers

MEASURE = "cosine"


def _rsatoolbox() -> Any:
    """The rsatoolbox module, or a one-line error saying how to get it."""
    try:
        import rsatoolbox
        import rsatoolbox.rdm  # noqa: F401
    except ImportError:
        raise EmogeomError("rsatoolbox export needs rsatoolbox: pip install rsatoolbox") from None
    return rsatoolbox


def _layers(geometry: Any, layers: int | Sequence[int] | None) -> list[int]:
    """Layers to export: all by default; each checked against the geometry."""
    if layers is None:
        return list(range(geometry.n_layers))
    return checked_layers(geometry, layers)


def to_rsatoolbox(geometry: Any, layers: int | Sequence[int] | None = None) -> Any:
    """``rsatoolbox.rdm.RDMs`` with one RDM per layer (default all), measure 'cosine'."""
    rsa = _rsatoolbox()
    chosen = _layers(geometry, layers)
    info = geometry.model_info or {}
    descriptors = {
        "model": geometry.name,
        "model_id": str(info.get("model") or geometry.name),
        "preset": str(geometry.settings.get("preset") or ""),
        "layer_definition": str(geometry.metrics.get("layer_definition") or ""),
        "best_layer": int(geometry.best_layer),
        "source": "emogeom",
    }
    return rsa.rdm.RDMs(
        geo.upper(np.asarray(geometry.rdms, dtype=np.float64)[chosen]),
        dissimilarity_measure=MEASURE,
        descriptors=descriptors,
        rdm_descriptors={"layer": chosen, "model": [geometry.name] * len(chosen)},
        pattern_descriptors={"emotion": list(geometry.emotions)},
    )


def save_rsatoolbox(geometry: Any, path: str | Path, layers: int | Sequence[int] | None = None,
                    overwrite: bool = False) -> Path:
    """Write ``to_rsatoolbox(geometry, layers)`` with rsatoolbox's HDF5 writer (name it
    ``.h5`` so ``rsatoolbox.rdm.load_rdm`` recognises it); returns the path."""
    rdms = to_rsatoolbox(geometry, layers)
    path = Path(path)
    if path.exists() and not overwrite:
        raise EmogeomError(f"{path} exists; pass overwrite=True or choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    rdms.save(str(path), file_type="hdf5", overwrite=overwrite)
    return path
