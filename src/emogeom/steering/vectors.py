"""What to steer with: layer choice, residual scale per layer, emotion vectors for the model
at hand (from the shipped corpus or a ``vectors.safetensors`` of ``emogeom run``)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emogeom import artefacts as io
from emogeom import geometry
from emogeom.emotions import EMOTIONS
from emogeom.errors import EmogeomError
from emogeom.extraction import extract_pooled
from emogeom.extraction.batching import pad_batch, token_budget_batches
from emogeom.extraction.pooled import backbone, decoder_layers
from emogeom.models import LoadedModel
from emogeom.models.loading import input_device, pad_token_id
from emogeom.progress import Progress, counter
from emogeom.stimuli import load_corpus, load_neutral_sentences

SKIP_FIRST = 1  # positions skipped when measuring residual norms (BOS / attention sink)


def residual_norms(
    lm: LoadedModel, layers: Sequence[int], texts: Sequence[str] | None = None,
    skip_first: int = SKIP_FIRST, max_batch_tokens: int = 4096,
) -> dict[int, float]:
    """Mean per-token L2 norm of each layer's block output over neutral sentences, positions
    ≥ ``skip_first`` only: the first token is an attention sink whose norm (≈1e4 in SmolLM2)
    would dominate the mean while steering acts on ordinary tokens."""
    texts = list(texts) if texts is not None else load_neutral_sentences().texts
    blocks = decoder_layers(lm.model)
    wanted = sorted(set(layers))
    sums = {layer: 0.0 for layer in wanted}
    count = 0
    state: dict[str, torch.Tensor] = {}

    def make_hook(layer: int):
        def hook(_module, _inputs, output):
            hidden = output[0] if isinstance(output, tuple) else output
            norms = torch.linalg.vector_norm(hidden.float(), dim=-1)
            sums[layer] += float((norms * state["keep"].to(norms.device)).sum())
        return hook

    ids = [lm.tokenizer(t, add_special_tokens=True)["input_ids"] for t in texts]
    device = input_device(lm.model)
    pad = pad_token_id(lm.tokenizer, lm.model)
    handles = [blocks[x].register_forward_hook(make_hook(x)) for x in wanted]
    try:
        with torch.inference_mode():
            for batch in token_budget_batches([len(x) for x in ids], max_batch_tokens):
                input_ids, mask, positions = pad_batch([ids[i] for i in batch], pad, "right")
                keep = mask.bool() & (positions >= skip_first)
                state["keep"] = keep.float().to(device)
                count += int(keep.sum())
                backbone(lm.model)(input_ids=input_ids.to(device),
                                   attention_mask=mask.to(device),
                                   position_ids=positions.to(device), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    if count == 0:
        raise EmogeomError("neutral sentences too short to measure residual norms "
                           f"(every one has ≤ {skip_first} tokens); use longer sentences")
    return {layer: sums[layer] / count for layer in wanted}


@dataclass
class SteeringVectors:
    """Emotion vectors [len(layers), E, d] at the steered layers, with their residual scale."""

    layers: list[int]
    emotions: list[str]
    vectors: np.ndarray
    norms: dict[int, float]
    source: dict[str, Any] = field(default_factory=dict)

    def emotion(self, name: str) -> np.ndarray:
        """Vectors [len(layers), d] of one emotion; clear error for an unknown name."""
        if name not in self.emotions:
            raise EmogeomError(f"unknown emotion '{name}' (use one of: "
                               f"{', '.join(self.emotions)})")
        return self.vectors[:, self.emotions.index(name)]

    def unit(self, name: str, layer: int) -> np.ndarray:
        """Unit vector [d] of one emotion at one steered layer."""
        v = self.emotion(name)[self.layers.index(layer)].astype(np.float64)
        return v / np.linalg.norm(v)


def check_emotions(names: Sequence[str], known: Sequence[str] = EMOTIONS) -> None:
    """Raise a one-line error for an emotion name not in ``known``."""
    bad = list(dict.fromkeys(n for n in names if n not in known))
    if bad:
        raise EmogeomError(f"unknown emotion(s) {bad} (use one of: {', '.join(known)})")


def compute_vectors(
    lm: LoadedModel, layers: Sequence[int], per_emotion: int | None = 6,
    corpus: str | Path | None = None, pooling: str = "mean", mean_start: int = 1,
    progress: Progress | None = None,
) -> SteeringVectors:
    """Emotion vectors at ``layers`` from the (shipped) story corpus: extract_pooled with the
    default preset's pooling, then each emotion's mean minus the mean over emotions. ``lm``
    is a ``LoadedModel`` (``models.wrap`` makes one of a plain model and tokenizer)."""
    stories = load_corpus(corpus, per_emotion=per_emotion)
    acts = extract_pooled(lm.model, lm.tokenizer, stories.texts, pooling, mean_start,
                          layers=list(layers),
                          on_batch=counter(progress, "emotion vectors", len(stories.texts)))
    order = sorted(set(layers))
    acts = acts[[order.index(x) for x in layers]]
    vecs = geometry.emotion_vectors(acts, stories.labels, stories.emotions).astype(np.float32)
    return SteeringVectors(list(layers), list(stories.emotions), vecs, {}, {
        "kind": "corpus", "corpus": stories.source, "corpus_sha256": stories.sha256,
        "per_emotion": per_emotion, "pooling": pooling, "mean_start": mean_start,
        "n_stimuli": len(stories.stimuli)})


def load_vectors(path: str | Path, lm: LoadedModel, layers: Sequence[int]) -> SteeringVectors:
    """Vectors from a ``vectors.safetensors`` written by ``emogeom run`` ([L, E, d] under
    "vectors", emotion names in the metadata), checked against this model's shape."""
    path = Path(path)
    if path.is_dir():
        path = path / "vectors.safetensors"
    if path.suffix != ".safetensors":
        raise EmogeomError(f"{path}: steering vectors must be a .safetensors file from "
                           "`emogeom run` (OUT/<model>/vectors.safetensors)")
    tensors, meta = io.read_tensors(path)
    if "vectors" not in tensors or "emotions" not in meta:
        raise EmogeomError(f"{path} holds no 'vectors' tensor with 'emotions' metadata; use "
                           "OUT/<model>/vectors.safetensors from `emogeom run`")
    arr = tensors["vectors"]
    n_layers = lm.info.get("n_layers") or len(decoder_layers(lm.model))
    d_model = lm.model.config.get_text_config().hidden_size
    if arr.ndim != 3 or arr.shape[0] != n_layers or arr.shape[2] != d_model or \
            arr.shape[1] != len(meta["emotions"]):
        raise EmogeomError(
            f"{path} holds vectors of shape {list(arr.shape)} but {lm.source.spec} needs "
            f"[{n_layers} layers, {len(meta['emotions'])} emotions, d={d_model}]: vectors from "
            "another model? Use the file written for this model or omit --vectors")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return SteeringVectors(list(layers), list(meta["emotions"]),
                           arr[list(layers)].astype(np.float32), {},
                           {"kind": "file", "path": str(path), "sha256": digest,
                            "denoise": meta.get("denoise")})
