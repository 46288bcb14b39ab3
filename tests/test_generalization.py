"""Model or texts? Planted simulations for cross-text ρ and partial ρ; partial Spearman
against the textbook formula."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from emogeom.geometry import cosine_rdm, emotion_vectors, upper
from emogeom.stats import cross_text, partial_correlation, partial_mantel, rdm_correlation

EMOTIONS = [f"e{i}" for i in range(12)]
PER = 20
LABELS = np.array([e for e in EMOTIONS for _ in range(PER)])
HALVES = (np.array([k for k in range(len(LABELS)) if k % 2 == 0]),
          np.array([k for k in range(len(LABELS)) if k % 2 == 1]))


def _rdm(acts):
    return cosine_rdm(emotion_vectors(acts, LABELS, EMOTIONS))


def _world(rng, shared_geometry: bool):
    n = len(LABELS)
    text = rng.normal(size=(n, 16)) * 3  # story-specific text features, same for both models
    if shared_geometry:
        mu = rng.normal(size=(len(EMOTIONS), 16))
        means = np.repeat(mu, PER, axis=0)
    else:
        means = np.zeros((n, 16))
    # Each model embeds the same content by its own isometry (orthonormal columns) plus noise.
    qa = np.linalg.qr(rng.normal(size=(40, 16)))[0].T
    qb = np.linalg.qr(rng.normal(size=(48, 16)))[0].T
    acts_a = (means + 0.3 * text) @ qa + 0.2 * rng.normal(size=(n, 40))
    acts_b = (means + 0.3 * text) @ qb + 0.2 * rng.normal(size=(n, 48))
    return acts_a, acts_b, text


def test_shared_geometry_survives_a_change_of_texts():
    rng = np.random.default_rng(0)
    acts_a, acts_b, _ = _world(rng, shared_geometry=True)
    res = cross_text(acts_a, acts_b, LABELS, EMOTIONS, HALVES, n_perm=500, n_boot=100)
    same = rdm_correlation(_rdm(acts_a), _rdm(acts_b))
    assert same > 0.8
    assert res["rho_cross_text"] > 0.6 and res["p_cross_text"] < 0.01
    assert 0.3 < res["ci_cross_text_low"] < res["ci_cross_text_high"] < 1
    assert res["rho_within_a"] > 0.6


def test_text_only_agreement_vanishes_across_texts_and_after_partialling():
    rng = np.random.default_rng(1)
    acts_a, acts_b, text = _world(rng, shared_geometry=False)
    ra, rb = _rdm(acts_a), _rdm(acts_b)
    same = rdm_correlation(ra, rb)
    res = cross_text(acts_a, acts_b, LABELS, EMOTIONS, HALVES, n_perm=500, n_boot=100)
    baseline = _rdm(text[None])[0]
    partial, p_partial = partial_mantel(ra, rb, [baseline], n_perm=500)
    assert same > 0.7
    assert abs(res["rho_cross_text"]) < 0.25
    assert abs(partial) < 0.3 and p_partial > 0.01


def test_partial_spearman_matches_formula():
    rng = np.random.default_rng(2)
    x, y, z = rng.normal(size=(3, 66))
    y = y + x
    z = z + 0.5 * x
    rxy = spearmanr(x, y).statistic
    rxz = spearmanr(x, z).statistic
    ryz = spearmanr(y, z).statistic
    expected = (rxy - rxz * ryz) / np.sqrt((1 - rxz**2) * (1 - ryz**2))
    assert partial_correlation(x, y, [z]) == pytest.approx(expected, abs=1e-12)
    # As RDMs, through the permutation path.
    a = cosine_rdm(rng.normal(size=(12, 5)))
    b = cosine_rdm(rng.normal(size=(12, 5)))
    c = cosine_rdm(rng.normal(size=(12, 5)))
    obs, _ = partial_mantel(a, b, [c], n_perm=10)
    assert obs == pytest.approx(partial_correlation(upper(a), upper(b), [upper(c)]), abs=1e-12)
