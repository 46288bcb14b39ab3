"""Statistics: comparison methods against scipy and rsatoolbox, Mantel level and power,
bootstrap coverage, layer-search null, corrections, CKA/Procrustes, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import procrustes
from scipy.stats import kendalltau, pearsonr, spearmanr

from emogeom.geometry import cosine_rdm, emotion_vectors, upper
from emogeom.stats import (
    RDMError,
    benjamini_hochberg,
    bootstrap_rho,
    ceiled,
    holm,
    layer_max_test,
    linear_cka,
    mantel,
    noise_ceiling,
    procrustes_similarity,
    rdm_correlation,
)


def _random_rdm(rng, n=21, d=12):
    return cosine_rdm(rng.normal(size=(n, d)))


def _tau_a(x, y):
    i, j = np.triu_indices(len(x), k=1)
    return np.sum(np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])) / len(i)


def test_methods_match_scipy():
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = _random_rdm(rng), _random_rdm(rng)
        ua, ub = upper(a), upper(b)
        assert rdm_correlation(a, b) == pytest.approx(spearmanr(ua, ub).statistic, abs=1e-12)
        assert rdm_correlation(a, b, "pearson") == pytest.approx(
            pearsonr(ua, ub).statistic, abs=1e-12)
        # No ties in continuous cells: τ-a equals scipy's τ-b.
        assert rdm_correlation(a, b, "kendall") == pytest.approx(
            kendalltau(ua, ub).statistic, abs=1e-12)
        cos = ua @ ub / np.linalg.norm(ua) / np.linalg.norm(ub)
        assert rdm_correlation(a, b, "cosine") == pytest.approx(cos, abs=1e-12)


def test_kendall_is_tau_a_with_ties():
    a = np.array([[0, 1, 1, 2], [1, 0, 2, 2], [1, 2, 0, 3], [2, 2, 3, 0]], float)
    b = np.array([[0, 2, 1, 1], [2, 0, 1, 3], [1, 1, 0, 2], [1, 3, 2, 0]], float)
    assert rdm_correlation(a, b, "kendall") == pytest.approx(_tau_a(upper(a), upper(b)))


def test_methods_match_rsatoolbox():
    rsa = pytest.importorskip("rsatoolbox")
    from rsatoolbox.rdm import RDMs, compare

    rng = np.random.default_rng(1)
    names = {"spearman": "spearman", "pearson": "corr", "kendall": "tau-a", "cosine": "cosine"}
    for _ in range(3):
        a, b = _random_rdm(rng), _random_rdm(rng)
        for ours, theirs in names.items():
            ref = compare(RDMs(upper(a)[None]), RDMs(upper(b)[None]), method=theirs)[0, 0]
            assert rdm_correlation(a, b, ours) == pytest.approx(ref, abs=1e-9), ours
    assert rsa


def test_mantel_rejects_planted_structure():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(21, 12))
    a = cosine_rdm(x)
    b = cosine_rdm(x + 0.5 * rng.normal(size=x.shape))
    for method in ("spearman", "pearson", "kendall", "cosine"):
        rho, p = mantel(a, b, method, n_perm=2000, seed=0)
        assert p < 0.01, method
    assert mantel(a, b, n_perm=500, seed=7) == mantel(a, b, n_perm=500, seed=7)


def test_mantel_holds_level_on_1000_null_datasets():
    rng = np.random.default_rng(2)
    pvals = np.array([mantel(_random_rdm(rng), _random_rdm(rng), n_perm=199, seed=k)[1]
                      for k in range(1000)])
    rate = np.mean(pvals <= 0.05)
    assert 0.03 <= rate <= 0.07, rate


def test_bootstrap_ci_coverage():
    """Two 'models' share a true geometry; stimuli are noisy draws around emotion means.
    The 90 % percentile interval should cover the true ρ at roughly that rate."""
    rng = np.random.default_rng(3)
    emotions = [f"e{i}" for i in range(10)]
    labels = [e for e in emotions for _ in range(20)]
    base = rng.normal(size=(10, 8))
    mu_a = base @ rng.normal(size=(8, 24))
    mu_b = (base + 0.6 * rng.normal(size=base.shape)) @ rng.normal(size=(8, 30))
    def centred(m):
        return m - m.mean(0)
    true = rdm_correlation(cosine_rdm(centred(mu_a)), cosine_rdm(centred(mu_b)))
    hits = []
    for _ in range(100):
        acts_a = np.repeat(mu_a, 20, axis=0) + 0.8 * rng.normal(size=(200, 24))
        acts_b = np.repeat(mu_b, 20, axis=0) + 0.8 * rng.normal(size=(200, 30))
        res = bootstrap_rho(acts_a, acts_b, labels, emotions, n_boot=300,
                            seed=int(rng.integers(1 << 30)), level=0.90)
        hits.append(res["ci_low"] <= true <= res["ci_high"])
    coverage = float(np.mean(hits))
    assert 0.75 <= coverage <= 0.99, coverage


def test_bootstrap_small_n_and_ties_never_nan():
    emotions = ["a", "b", "c", "d"]
    labels = [e for e in emotions for _ in range(2)]
    acts = np.zeros((8, 5))  # constant vectors: every RDM entry ties
    res = bootstrap_rho(acts, acts, labels, emotions, n_boot=50)
    assert np.isfinite(res["rho_samples"]).all() and np.isfinite(res["cells_a"]).all()
    vec = emotion_vectors(np.random.default_rng(0).normal(size=(1, 8, 5)), labels, emotions)
    assert np.isfinite(cosine_rdm(vec)).all()


def test_layer_max_test_corrects_for_search():
    rng = np.random.default_rng(4)
    la = np.stack([_random_rdm(rng) for _ in range(6)])
    lb = np.stack([_random_rdm(rng) for _ in range(6)])
    res = layer_max_test(la, lb, n_perm=500, seed=0)
    naive = mantel(la[res["layer_a"]], lb[res["layer_b"]], n_perm=500, seed=0)[1]
    assert res["p_max"] >= naive  # searching 36 pairs costs significance
    assert res["rho_max"] == pytest.approx(rdm_correlation(la[res["layer_a"]],
                                                           lb[res["layer_b"]]))
    x = rng.normal(size=(21, 10))
    lb[3] = cosine_rdm(x)
    la[2] = cosine_rdm(x + 0.3 * rng.normal(size=x.shape))
    planted = layer_max_test(la, lb, n_perm=500, seed=0)
    assert (planted["layer_a"], planted["layer_b"]) == (2, 3) and planted["p_max"] < 0.01


def test_corrections():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # Holm: sorted 0.005*4, 0.01*3, 0.03*2, 0.04*1 -> 0.02, 0.03, 0.06, 0.06 (monotone).
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02])


def test_ceiling():
    assert noise_ceiling(0.81, 0.64) == pytest.approx(0.72)
    assert ceiled(0.36, 0.81, 0.64) == pytest.approx(0.5)
    assert np.isnan(noise_ceiling(-0.1, 0.5)) and np.isnan(ceiled(0.3, 0.0, 0.9))


def test_cka_and_procrustes():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(21, 6))
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert linear_cka(x, 3 * x @ q) == pytest.approx(1.0)
    assert procrustes_similarity(x, 2 * x @ q) == pytest.approx(1.0)
    y = rng.normal(size=(21, 6))
    _, _, disparity = procrustes(x, y)
    assert procrustes_similarity(x, y) == pytest.approx(np.sqrt(1 - disparity))
    # Different widths are fine.
    assert 0 <= linear_cka(x, rng.normal(size=(21, 11))) <= 1


@pytest.mark.parametrize(
    "a, b, message",
    [
        (np.zeros((4, 4)), np.zeros((5, 5)), "differ in size"),
        (np.zeros((4, 3)), np.zeros((4, 3)), "not square"),
        (np.full((4, 4), np.nan), np.zeros((4, 4)), "NaN"),
    ],
)
def test_bad_rdms(a, b, message):
    with pytest.raises(RDMError, match=message):
        rdm_correlation(a, b)
    with pytest.raises(RDMError, match=message):
        mantel(a, b, n_perm=10)


def test_label_mismatch():
    a = np.ones((3, 3)) - np.eye(3)
    with pytest.raises(RDMError, match="labels differ"):
        rdm_correlation(a, a, labels_a=["x", "y", "z"], labels_b=["x", "z", "y"])
    with pytest.raises(RDMError, match="unknown RDM comparison method"):
        rdm_correlation(a, a, "kendall-x")
