"""Geometry maths against small hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from emogeom import geometry
from emogeom.geometry.layers import rowwise_spearman


def test_emotion_vectors_hand_case():
    acts = np.array([[[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0]]])  # 1 layer, 4 stimuli
    labels = ["a", "a", "b", "b"]
    vec = geometry.emotion_vectors(acts, labels, ["a", "b"])
    # means: a = (2, 0), b = (0, 3); grand mean (1, 1.5)
    np.testing.assert_allclose(vec[0], [[1.0, -1.5], [-1.0, 1.5]])


def test_cosine_rdm_hand_case():
    v = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [0.0, 0.0]])
    rdm = geometry.cosine_rdm(v)
    expected = np.array([[0, 1, 2, 1], [1, 0, 1, 1], [2, 1, 0, 1], [1, 1, 1, 0]], float)
    np.testing.assert_allclose(rdm, expected, atol=1e-12)
    assert geometry.upper(rdm).tolist() == [1, 2, 1, 1, 1, 1]
    assert geometry.rdm_std(rdm) == pytest.approx(np.std([1, 2, 1, 1, 1, 1]))


def test_anisotropy_hand_case():
    x = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    c = 1 / np.sqrt(2)
    assert geometry.anisotropy(x) == pytest.approx((c + 0 + c) / 3)
    # Layer axis is kept.
    assert geometry.anisotropy(np.stack([x, x])).shape == (2,)


def test_reference_best_layer_is_argmin_mean_cosine():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 8))
    base -= base.mean(axis=0)
    # A shared offset makes vectors more parallel: layer 1 (no offset) has the lowest mean cosine.
    layers = np.stack([base + 3.0, base, base + 1.0])
    assert geometry.reference_best_layer(layers) == 1


def test_rowwise_spearman_matches_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 30)), rng.normal(size=(4, 30))
    b[2] = a[2] * 2 + 0.1 * b[2]
    for i in range(4):
        assert rowwise_spearman(a, b)[i] == pytest.approx(spearmanr(a[i], b[i]).statistic)
    assert np.isnan(rowwise_spearman(np.ones(5), np.arange(5.0)))


def test_reliability_finds_the_informative_layer():
    rng = np.random.default_rng(2)
    emotions = [f"e{i}" for i in range(8)]
    labels = [e for e in emotions for _ in range(10)]
    centres = rng.normal(size=(8, 16)) * 3
    signal = np.array([centres[emotions.index(e)] for e in labels])
    noise = rng.normal(size=(3, len(labels), 16))
    acts = np.stack([noise[0], signal + noise[1], 0.2 * signal + noise[2]])
    rel = geometry.layer_reliability(acts, labels, emotions, n_splits=5, seed=0)
    assert geometry.best_layer(rel["reliability"]) == 1
    assert rel["reliability"][1] > 0.9
    assert abs(rel["reliability"][0]) < 0.5
    # Spearman-Brown is consistent with the split-half value.
    r = rel["split_half"][1]
    assert rel["reliability"][1] == pytest.approx(2 * r / (1 + r))


def test_neutral_pc_projection_removes_shared_direction():
    rng = np.random.default_rng(3)
    d = 10
    direction = np.zeros(d)
    direction[0] = 1
    neutral = rng.normal(size=(1, 40, d)) * 0.1 + rng.normal(size=(1, 40, 1)) * 10 * direction
    vectors = rng.normal(size=(1, 5, d)) + 7 * direction
    out = geometry.project_out_neutral_pcs(vectors, neutral, var_fraction=0.5)
    assert np.abs(out[0, :, 0]).max() < 0.1
    np.testing.assert_allclose(out[0, :, 1:], vectors[0, :, 1:], atol=0.2)


def test_group_distances():
    rdm = geometry.cosine_rdm(np.array([[1.0, 0.1], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.1]]))
    within, between = geometry.group_distances(rdm, ["a", "b", "c", "d"], ["a", "b"], ["c", "d"])
    assert within < 0.01 and between > 1.9
