"""Model loading (hub id, local folder, GGUF file, embedded packages) and dtypes."""

from emogeom.models.loading import (
    DTYPES,
    EMBEDDED,
    LoadedModel,
    ModelSource,
    load_model,
    resolve_model,
)

__all__ = ["DTYPES", "EMBEDDED", "LoadedModel", "ModelSource", "load_model", "resolve_model"]
