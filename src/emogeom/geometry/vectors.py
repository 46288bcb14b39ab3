"""Emotion vectors from pooled activations: class mean minus the mean over emotions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emogeom.emotions import NEUTRAL
from emogeom.errors import EmogeomError


def class_means(acts: np.ndarray, labels: Sequence[str], emotions: Sequence[str]) -> np.ndarray:
    """Per-emotion mean of ``acts`` [..., N, d] over stimuli → [..., E, d] (float64)."""
    labels = np.asarray(labels)
    onehot = np.stack([labels == e for e in emotions]).astype(np.float64)  # [E, N]
    counts = onehot.sum(axis=1)
    if np.any(counts == 0):
        missing = [e for e, c in zip(emotions, counts) if c == 0]
        raise ValueError(f"no stimuli for emotions: {missing}")
    weights = onehot / counts[:, None]
    return np.einsum("en,...nd->...ed", weights, np.asarray(acts, dtype=np.float64))


BASELINES = ("emotion-mean", "neutral")


def vectors_from_means(
    means: np.ndarray, conditions: Sequence[str], baseline: str = "emotion-mean",
    unit_norm: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """The one emotion-vector formula. Vectors [..., E', d] and their names from condition
    means [..., C, d]: ``emotion-mean`` subtracts the mean over all C conditions (E' = C);
    ``neutral`` subtracts the neutral condition's mean (E' = C without neutral); ``unit_norm``
    scales each vector to length 1."""
    conditions = list(conditions)
    if baseline == "emotion-mean":
        vec, names = means - means.mean(axis=-2, keepdims=True), conditions
    elif baseline == "neutral":
        if NEUTRAL not in conditions:
            raise EmogeomError("baseline 'neutral' needs the neutral condition among the "
                               "emotions; add it or use baseline emotion-mean")
        k = conditions.index(NEUTRAL)
        keep = [i for i in range(len(conditions)) if i != k]
        vec = means[..., keep, :] - means[..., k:k + 1, :]
        names = [conditions[i] for i in keep]
    else:
        raise EmogeomError(f"unknown baseline '{baseline}' (use one of: {', '.join(BASELINES)})")
    if unit_norm:
        norm = np.linalg.norm(vec, axis=-1, keepdims=True)
        vec = np.divide(vec, norm, out=np.zeros_like(vec), where=norm > 0)
    return vec, names


def emotion_vectors(
    acts: np.ndarray, labels: Sequence[str], emotions: Sequence[str]
) -> np.ndarray:
    """Emotion vectors [..., E, d]: each emotion's mean minus the mean of the E emotion means."""
    return vectors_from_means(class_means(acts, labels, emotions), emotions)[0]


def neutral_pcs(neutral: np.ndarray, var_fraction: float) -> np.ndarray:
    """Orthonormal top principal directions [k, d] of neutral states [M, d] that explain
    at least ``var_fraction`` of their variance."""
    centred = neutral - neutral.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    var = s**2
    if var.sum() == 0:
        return np.zeros((0, neutral.shape[1]))
    k = int(np.searchsorted(np.cumsum(var) / var.sum(), var_fraction) + 1)
    return vt[: min(k, vt.shape[0])]


def project_out_neutral_pcs(
    vectors: np.ndarray, neutral: np.ndarray, var_fraction: float = 0.5
) -> np.ndarray:
    """Remove from each layer's vectors [L, E, d] the top neutral-text PCs (per layer, from
    neutral states [L, M, d]) that explain ``var_fraction`` of the neutral variance."""
    out = np.empty_like(vectors, dtype=np.float64)
    for layer in range(vectors.shape[0]):
        pcs = neutral_pcs(np.asarray(neutral[layer], dtype=np.float64), var_fraction)
        v = np.asarray(vectors[layer], dtype=np.float64)
        out[layer] = v - (v @ pcs.T) @ pcs
    return out
