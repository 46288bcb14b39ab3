"""Residual-stream extraction: batched forward passes with pooling inside layer hooks."""

from emogeom.extraction.pooled import (
    POOLINGS,
    NonFiniteActivations,
    backbone,
    decoder_layers,
    extract_pooled,
)

__all__ = ["POOLINGS", "NonFiniteActivations", "backbone", "decoder_layers", "extract_pooled"]
