"""Stimulus corpora: schema, loading, validation, shipped data."""

from emogeom.stimuli.corpus import (
    Corpus,
    Stimulus,
    default_corpus_path,
    default_neutral_path,
    load_corpus,
    load_neutral_sentences,
)
from emogeom.stimuli.splits import fixed_halves

__all__ = [
    "Corpus",
    "Stimulus",
    "default_corpus_path",
    "default_neutral_path",
    "fixed_halves",
    "load_corpus",
    "load_neutral_sentences",
]
