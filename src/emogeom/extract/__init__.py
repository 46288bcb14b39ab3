"""Residual-stream extraction: batched forward passes with pooling inside layer hooks."""

from emogeom.extract.pooled import POOLINGS, NonFiniteActivations, decoder_layers, extract_pooled

__all__ = ["POOLINGS", "NonFiniteActivations", "decoder_layers", "extract_pooled"]
