"""Cross-style generalisation on planted data: a style-only signal does not cross styles, a
shared geometry does; the fixed-halves fallback; the per-cell RDMs against the direct formula."""

from __future__ import annotations

import numpy as np
import pytest

from emogeom.geometry import cosine_rdm, emotion_vectors
from emogeom.stats import (
    cross_style,
    cross_style_profile,
    cross_style_within,
    rdm_correlation,
    style_groups,
)
from emogeom.stats.cross_style import group_rdms

EMOTIONS = [f"e{i}" for i in range(12)]
STYLES = [f"s{k}" for k in range(5)]
PER = 8  # texts per emotion and style
LABELS = np.array([e for e in EMOTIONS for _ in STYLES for _ in range(PER)])
STYLE_OF = np.array([s for _ in EMOTIONS for s in STYLES for _ in range(PER)])
HALVES = (np.arange(0, len(LABELS), 2), np.arange(1, len(LABELS), 2))


def _acts(rng, shared: float, per_style: float, d: int = 24, noise: float = 0.6):
    """Texts = shared emotion geometry × ``shared`` + a geometry of each style's own ×
    ``per_style`` + noise."""
    e_idx = np.array([EMOTIONS.index(e) for e in LABELS])
    s_idx = np.array([STYLES.index(s) for s in STYLE_OF])
    common = rng.normal(size=(len(EMOTIONS), d))
    own = rng.normal(size=(len(STYLES), len(EMOTIONS), d))
    return (shared * common[e_idx] + per_style * own[s_idx, e_idx]
            + noise * rng.normal(size=(len(LABELS), d)))


GROUPS = style_groups(list(STYLE_OF), LABELS, EMOTIONS, HALVES)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_style_only_signal_does_not_cross_styles(seed):
    acts = _acts(np.random.default_rng(seed), shared=0.0, per_style=1.0)
    out = cross_style_within(acts, LABELS, EMOTIONS, GROUPS, n_perm=999, seed=seed)
    assert abs(out["rho"]) < 0.2 and out["p"] > 0.01
    # ...although every style on its own is reliable: the same-style split halves agree.
    r = group_rdms(acts, LABELS, EMOTIONS, GROUPS)
    same_style = np.mean([rdm_correlation(*r["own_halves"][g]) for g in range(len(STYLES))])
    assert same_style > 0.7
    assert abs(out["normalised"]) < 0.25


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shared_geometry_survives_a_change_of_style(seed):
    rng = np.random.default_rng(seed)
    acts = _acts(rng, shared=1.0, per_style=0.3)
    out = cross_style_within(acts, LABELS, EMOTIONS, GROUPS, n_perm=999, seed=seed)
    assert out["rho"] > 0.7 and out["p"] < 0.01
    assert 0.8 < out["normalised"] < 1.2
    # Two models (each its own rotation of the same content, own noise) agree across styles.
    q = np.linalg.qr(rng.normal(size=(24, 24)))[0]
    other = acts @ q + 0.6 * rng.normal(size=acts.shape)
    both = cross_style(acts, other, LABELS, EMOTIONS, GROUPS, n_perm=999, seed=seed)
    assert both["rho_cross_style"] > 0.6 and both["p_cross_style"] < 0.01
    assert both["cross_split"] == "style"


def test_halves_stand_in_without_styles_and_cannot_see_style():
    acts = _acts(np.random.default_rng(3), shared=0.0, per_style=1.0)
    groups = style_groups(None, LABELS, EMOTIONS, HALVES)
    assert groups.split == "halves" and "no styles" in groups.note
    out = cross_style_within(acts, LABELS, EMOTIONS, groups, n_perm=999)
    assert out["rho"] > 0.6  # halves mix the styles: a style-bound geometry looks general


def test_group_rdms_equal_the_direct_formula():
    acts = _acts(np.random.default_rng(4), shared=1.0, per_style=0.5)
    r = group_rdms(acts, LABELS, EMOTIONS, GROUPS)
    for g, style in enumerate(STYLES):
        own, rest = style == STYLE_OF, style != STYLE_OF
        for mask, key in ((own, "own"), (rest, "rest")):
            direct = cosine_rdm(emotion_vectors(acts[mask], LABELS[mask], EMOTIONS))
            np.testing.assert_allclose(r[key][g], direct, atol=1e-10)


def test_profile_over_layers_matches_each_layer():
    rng = np.random.default_rng(5)
    layers = np.stack([_acts(rng, shared=s, per_style=1.0) for s in (0.0, 0.5, 2.0)])
    prof = cross_style_profile(layers, LABELS, EMOTIONS, GROUPS, n_perm=200, seed=1)
    for k in range(3):
        one = cross_style_within(layers[k], LABELS, EMOTIONS, GROUPS, n_perm=200, seed=1)
        assert prof["rho"][k] == pytest.approx(one["rho"], abs=1e-9)
        assert prof["p"][k] == one["p"]
        assert prof["normalised"][k] == pytest.approx(one["normalised"], abs=1e-9)
    assert int(np.nanargmax(prof["rho"])) == 2  # the layer with the most shared geometry


def test_styles_missing_an_emotion_are_left_out():
    styles = STYLE_OF.copy()
    styles[(LABELS == "e0") & (STYLE_OF == "s4")] = "s3"  # s4 now lacks e0
    groups = style_groups(list(styles), LABELS, EMOTIONS, HALVES)
    assert groups.names == ["s0", "s1", "s2", "s3"] and groups.split == "style"
    assert np.all(groups.index[styles == "s4"] == -1)


def test_cross_model_layer_profile_matches_each_layer():
    from emogeom.stats import cross_style_layers

    rng = np.random.default_rng(6)
    a = np.stack([_acts(rng, shared=s, per_style=1.0) for s in (0.0, 1.0, 3.0)])
    b = np.stack([_acts(rng, shared=1.0, per_style=0.5) for _ in range(2)])
    stored = [np.stack([(p := cross_style_profile(x, LABELS, EMOTIONS, GROUPS))["own"],
                        p["rest"]]) for x in (a, b)]
    profile = cross_style_layers(stored[0], stored[1], layer_b=1)
    for k in range(3):
        one = cross_style(a[k], b[1], LABELS, EMOTIONS, GROUPS, n_perm=10)
        assert profile[k] == pytest.approx(one["rho_cross_style"], abs=1e-9)


def test_texts_without_a_style_are_left_out_not_the_styles():
    styles = list(STYLE_OF)
    styles[0] = None  # one unstyled text must not send the analysis to the halves
    groups = style_groups(styles, LABELS, EMOTIONS, HALVES)
    assert groups.split == "style" and groups.index[0] == -1 and len(groups.names) == 5


def test_normalised_uses_the_same_styles_for_rho_and_ceiling():
    from emogeom.stats.cross_style import _aligned

    rhos = np.array([0.49, 0.47, 0.43])
    ceilings = np.array([0.42, np.nan, np.nan])  # two styles without a ceiling
    assert _aligned(rhos, ceilings) == pytest.approx(0.49 / 0.42)
    assert np.isnan(_aligned(rhos, np.full(3, np.nan)))
