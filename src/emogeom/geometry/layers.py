"""Layer profiles and best-layer choice: split-half RDM reliability, or the reference criterion."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

from emogeom.errors import EmogeomError
from emogeom.geometry.anisotropy import mean_pairwise_cosine
from emogeom.geometry.rdm import cosine_rdm, upper
from emogeom.geometry.vectors import emotion_vectors

DEFAULT_LAYER_FRACTION = 0.6


def default_layer(n_layers: int) -> int:
    """A middle-to-late layer: round(0.6 · n_layers), kept inside the model."""
    return min(n_layers - 1, max(0, round(DEFAULT_LAYER_FRACTION * n_layers)))


def parse_layers(spec: str | int | None, n_layers: int) -> list[int]:
    """Layers from '12', '10-14' (inclusive), '3,7,9', 'all' or None (the default layer)."""
    if spec is None:
        return [default_layer(n_layers)]
    text = str(spec).strip().lower()
    hint = f"use a layer in 0..{n_layers - 1}, a range like 10-14, or 'all'"
    if text == "all":
        return list(range(n_layers))
    chosen: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        match = re.fullmatch(r"(-?\d+)(?:\s*-\s*(-?\d+))?", part)
        if match is None:
            raise EmogeomError(f"cannot read layers '{spec}': {hint}")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if lo > hi:
            raise EmogeomError(f"layer range '{part}' is reversed: {hint}")
        chosen.extend(range(lo, hi + 1))
    bad = [x for x in chosen if not 0 <= x < n_layers]
    if bad:
        raise EmogeomError(f"layer(s) {bad} out of range for a model with {n_layers} layers: "
                           f"{hint}")
    return sorted(set(chosen))


def rowwise_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation between matching rows of a and b [..., M] → [...]; NaN where a row
    is constant."""
    ra = rankdata(a, axis=-1)
    rb = rankdata(b, axis=-1)
    ra = ra - ra.mean(axis=-1, keepdims=True)
    rb = rb - rb.mean(axis=-1, keepdims=True)
    den = np.sqrt((ra**2).sum(axis=-1) * (rb**2).sum(axis=-1))
    num = (ra * rb).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def split_halves(
    labels: Sequence[str], emotions: Sequence[str], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A random split of stimulus indices into two halves, balanced within each emotion."""
    labels = np.asarray(labels)
    first, second = [], []
    for e in emotions:
        idx = rng.permutation(np.flatnonzero(labels == e))
        half = len(idx) // 2
        first.extend(idx[:half])
        second.extend(idx[half : 2 * half])
    return np.sort(first), np.sort(second)


def layer_reliability(
    acts: np.ndarray,
    labels: Sequence[str],
    emotions: Sequence[str],
    n_splits: int = 10,
    seed: int = 0,
    fixed: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Split-half reliability of the cosine RDM at every layer of acts [L, N, d].

    Uses ``n_splits`` within-emotion halvings: the ``fixed`` one (the corpus's own, if given)
    and seeded random ones for the rest. For each, builds emotion vectors and RDMs from each
    half and correlates their upper triangles (Spearman). Returns the mean half-vs-half ρ per
    layer (``split_half``), its Spearman-Brown full-length estimate (``reliability`` =
    2ρ / (1 + ρ)) and the fixed split's own ρ (``split_half_fixed``, NaN without one).
    """
    labels = list(labels)
    rng = np.random.default_rng(seed)
    splits = [fixed] if fixed is not None else []
    while len(splits) < n_splits:
        splits.append(split_halves(labels, emotions, rng))
    rhos = []
    for h1, h2 in splits:
        l1 = [labels[i] for i in h1]
        l2 = [labels[i] for i in h2]
        u1 = upper(cosine_rdm(emotion_vectors(acts[:, h1], l1, emotions)))
        u2 = upper(cosine_rdm(emotion_vectors(acts[:, h2], l2, emotions)))
        rhos.append(rowwise_spearman(u1, u2))
    split_half = np.nanmean(np.stack(rhos), axis=0) if n_splits else np.full(len(acts), np.nan)
    sb = spearman_brown(split_half)
    fixed_rho = rhos[0] if fixed is not None else np.full(len(acts), np.nan)
    return {"split_half": split_half, "reliability": sb, "split_half_fixed": fixed_rho}


def spearman_brown(split_half: np.ndarray) -> np.ndarray:
    """Full-length reliability 2ρ / (1 + ρ) from a half-vs-half ρ; NaN where ρ ≤ −1 or NaN."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(split_half > -1, 2 * split_half / (1 + split_half), np.nan)


def best_layer(reliability: np.ndarray) -> int:
    """The layer whose RDM is most reliable (argmax, NaN-safe; ties → shallowest)."""
    rel = np.asarray(reliability, dtype=np.float64)
    if np.all(np.isnan(rel)):
        return len(rel) // 2
    return int(np.nanargmax(rel))


def reference_best_layer(vectors: np.ndarray) -> int:
    """Reference study's criterion: argmin over layers of the mean pairwise cosine of the
    centred emotion vectors [L, E, d]."""
    return int(np.argmin(mean_pairwise_cosine(vectors)))
