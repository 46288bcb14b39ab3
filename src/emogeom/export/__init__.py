"""Vectors and RDMs in the formats other tools read: llama.cpp control vectors, rsatoolbox RDMs,
steering-vectors objects. Everything starts from a saved or in-memory ``Geometry``."""
