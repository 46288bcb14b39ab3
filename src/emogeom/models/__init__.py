"""Model loading (hub id, local folder, GGUF file, embedded packages, or a model already in
memory: ``wrap``) and dtypes."""

from emogeom.models.loading import (
    DTYPES,
    EMBEDDED,
    LoadedModel,
    ModelSource,
    load_model,
    resolve_model,
    wrap,
)

__all__ = ["DTYPES", "EMBEDDED", "LoadedModel", "ModelSource", "load_model", "resolve_model",
           "wrap"]
