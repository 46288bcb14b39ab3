"""RDM comparison and the Mantel permutation test."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from emogeom.geometry import cosine_rdm, upper
from emogeom.stats import mantel, rdm_correlation


def _random_rdm(rng, n=21, d=12):
    return cosine_rdm(rng.normal(size=(n, d)))


def test_correlations_match_scipy():
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = _random_rdm(rng), _random_rdm(rng)
        assert rdm_correlation(a, b) == pytest.approx(
            spearmanr(upper(a), upper(b)).statistic, abs=1e-12)
        assert rdm_correlation(a, b, "pearson") == pytest.approx(
            pearsonr(upper(a), upper(b)).statistic, abs=1e-12)
        rho, _ = mantel(a, b, n_perm=10)
        assert rho == pytest.approx(spearmanr(upper(a), upper(b)).statistic, abs=1e-12)
    with pytest.raises(ValueError):
        rdm_correlation(a, b, "kendall-x")


def test_mantel_rejects_planted_structure():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(21, 12))
    a = cosine_rdm(x)
    b = cosine_rdm(x + 0.3 * rng.normal(size=x.shape))
    rho, p = mantel(a, b, n_perm=2000, seed=0)
    assert rho > 0.5
    assert p == pytest.approx(1 / 2001)


def test_mantel_holds_level_under_null():
    rng = np.random.default_rng(2)
    pvals = []
    for k in range(200):
        a, b = _random_rdm(rng), _random_rdm(rng)
        pvals.append(mantel(a, b, n_perm=199, seed=k)[1])
    rate = np.mean(np.array(pvals) <= 0.05)
    assert 0.01 <= rate <= 0.10  # nominal 0.05; binomial sd over 200 tests ≈ 0.015


def test_mantel_is_seeded():
    rng = np.random.default_rng(3)
    a, b = _random_rdm(rng), _random_rdm(rng)
    assert mantel(a, b, n_perm=500, seed=7) == mantel(a, b, n_perm=500, seed=7)
