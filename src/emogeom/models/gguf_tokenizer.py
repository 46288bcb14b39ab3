"""Repairs to the tokenizer that transformers builds from GGUF metadata, made only where the
installed transformers gets it wrong (each check looks at what the saved tokenizer does).

Faults measured with transformers 4.57 on the embedded models (5.x gets both right):
- SentencePiece-BPE vocabularies (GGUF ``tokenizer.ggml.model = llama``, e.g. Gemma-3) became a
  Unigram model whose scores are BPE ranks, so words split into many short pieces
  ("there" → "t", "he", "re"). We rebuild a BPE model whose merges are ordered by the score of
  the merged piece, which is how llama.cpp's SPM tokenizer merges.
- BOS/EOS/pad ignored the GGUF's own ``add_bos_token`` and token ids (SmolLM2 got a BOS it
  does not use and ``<|im_start|>`` as EOS). We set them from the GGUF metadata.
What was repaired is returned (and recorded as ``tokenizer_repairs``; empty when nothing was).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def _field(reader, key: str) -> Any:
    """A scalar, string or array value of a GGUF metadata field (None if absent)."""
    f = reader.fields.get(key)
    if f is None or not f.data:
        return None
    if len(f.data) > 1:  # arrays
        return [f.parts[i] for i in f.data]
    value = f.parts[f.data[0]]
    if value.dtype == np.uint8 and key.endswith(("model", "pre")):
        return bytes(value).decode("utf-8")
    return value.tolist()[0]


def gguf_tokenizer_meta(gguf: Path) -> dict[str, Any]:
    """Tokenizer facts from a GGUF header: model type, special ids, add_bos, token strings."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf))
    tokens_field = reader.fields.get("tokenizer.ggml.tokens")
    tokens = ([bytes(tokens_field.parts[i]).decode("utf-8", "replace") for i in tokens_field.data]
              if tokens_field is not None else [])
    types_field = reader.fields.get("tokenizer.ggml.token_type")
    types = ([int(types_field.parts[i][0]) for i in types_field.data]
             if types_field is not None else [])
    return {
        "model": _field(reader, "tokenizer.ggml.model"),
        "add_bos": _field(reader, "tokenizer.ggml.add_bos_token"),
        "bos_id": _field(reader, "tokenizer.ggml.bos_token_id"),
        "eos_id": _field(reader, "tokenizer.ggml.eos_token_id"),
        "pad_id": _field(reader, "tokenizer.ggml.padding_token_id"),
        "tokens": tokens,
        "types": types,
    }


def spm_bpe_model(unigram: dict[str, Any], normal: set[str]) -> dict[str, Any]:
    """A tokenizers BPE model from a Unigram one whose scores rank merges (higher first).

    Merges are every split of a normal piece into two vocabulary pieces, ordered by the merged
    piece's score, then its id.
    """
    pieces = [p for p, _ in unigram["vocab"]]
    vocab = {p: i for i, p in enumerate(pieces)}
    merges = []
    for piece, score in unigram["vocab"]:
        if piece not in normal or len(piece) < 2:
            continue
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in vocab and right in vocab:
                merges.append((-score, vocab[piece], vocab[left], left, right))
    merges.sort()
    unk_id = unigram.get("unk_id")
    return {
        "type": "BPE", "dropout": None,
        "unk_token": pieces[unk_id] if unk_id is not None else None,
        "continuing_subword_prefix": None, "end_of_word_suffix": None,
        "fuse_unk": True, "byte_fallback": bool(unigram.get("byte_fallback", True)),
        "ignore_merges": False, "vocab": vocab,
        "merges": [[left, right] for *_, left, right in merges],
    }


def _bos_template(bos: str, bos_id: int) -> dict[str, Any]:
    """A tokenizers post-processor that puts ``bos`` before every sequence."""
    special = {"SpecialToken": {"id": bos, "type_id": 0}}
    return {"type": "TemplateProcessing",
            "single": [special, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [special, {"Sequence": {"id": "A", "type_id": 0}},
                     special, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}}}


def _behaviour(folder: Path) -> dict[str, Any]:
    """What the tokenizer saved in ``folder`` does: its special tokens and whether it puts
    its BOS id first."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    ids = tok("a").input_ids
    return {"bos_token": tok.bos_token, "eos_token": tok.eos_token, "pad_token": tok.pad_token,
            "first_id": ids[0] if ids else None}


def repair_tokenizer_folder(folder: Path, meta: dict[str, Any]) -> list[str]:
    """Fix what is wrong in the tokenizer saved in ``folder`` against the GGUF tokenizer facts
    ``meta`` (see ``gguf_tokenizer_meta``); returns what was changed, [] if nothing was."""
    tj_path, tc_path = folder / "tokenizer.json", folder / "tokenizer_config.json"
    tj = json.loads(tj_path.read_text())
    tc = json.loads(tc_path.read_text())
    changes = []
    if meta["model"] == "llama" and tj["model"]["type"] == "Unigram":
        normal = {t for t, ty in zip(meta["tokens"], meta["types"]) if ty == 1}
        tj["model"] = spm_bpe_model(tj["model"], normal)
        changes.append("SentencePiece-BPE vocabulary rebuilt as BPE (merges by score)")
    tokens = meta["tokens"]
    does = _behaviour(folder)
    for key, id_key in (("bos_token", "bos_id"), ("eos_token", "eos_id"),
                        ("pad_token", "pad_id")):
        ident = meta[id_key]
        if ident is not None and 0 <= ident < len(tokens) and does[key] != tokens[ident]:
            tc[key] = tokens[ident]
            changes.append(f"{key} = {tokens[ident]!r} (from GGUF)")
    bos_id = meta["bos_id"]
    if meta["add_bos"] is not None and bos_id is not None and 0 <= bos_id < len(tokens):
        adds = does["first_id"] == bos_id
        if adds != bool(meta["add_bos"]):
            tc["add_bos_token"] = bool(meta["add_bos"])
            if meta["add_bos"]:
                tj["post_processor"] = _bos_template(tokens[bos_id], bos_id)
            elif (tj.get("post_processor") or {}).get("type") == "TemplateProcessing":
                tj["post_processor"] = None
            changes.append(f"add_bos_token = {bool(meta['add_bos'])} (from GGUF)")
    if changes:
        tj_path.write_text(json.dumps(tj, ensure_ascii=False))
        tc_path.write_text(json.dumps(tc, ensure_ascii=False, indent=2))
    return changes


def repair_tokenizer(folder: Path, gguf: Path) -> list[str]:
    """Fix a GGUF-derived tokenizer saved in ``folder``; returns what was changed."""
    return repair_tokenizer_folder(folder, gguf_tokenizer_meta(gguf))
