"""Exports other tools read: rsatoolbox RDMs (ρ as rsatoolbox computes it equals emogeom's ρ;
HDF5 round trip) and steering-vectors objects (same logits as ``emogeom.steer``)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import emogeom
from emogeom import geometry as geo
from emogeom.errors import EmogeomError

PROMPT = "A quiet morning at the station."
METHODS = {"spearman": "spearman", "pearson": "corr", "cosine": "cosine", "kendall": "kendall"}


@pytest.fixture
def steering_pkg():
    """The steering-vectors package (in no extra: it declares transformers<5; install it with
    pip install --no-deps steering-vectors)."""
    return pytest.importorskip("steering_vectors")


@pytest.fixture(scope="module")
def lms(tiny_models) -> dict:
    """Tiny llama, gpt2 and gemma3 (model, tokenizer) in fp32."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return {arch: (AutoModelForCausalLM.from_pretrained(str(tiny_models[arch]), dtype="float32"),
                   AutoTokenizer.from_pretrained(str(tiny_models[arch])))
            for arch in ("llama", "gpt2", "gemma3")}


@pytest.fixture(scope="module")
def geoms(lms) -> dict:
    """A quick geometry of each tiny model (same stories, so compare runs everything)."""
    return {arch: emogeom.extract(m, t, per_emotion=6, permutations=200, splits=3, name=arch,
                                  references=False)
            for arch, (m, t) in lms.items()}


# ---- rsatoolbox ----------------------------------------------------------------------------

def test_rsatoolbox_rdms_hold_every_layer_and_labels(geoms):
    g = geoms["llama"]
    rdms = g.to_rsatoolbox()
    assert rdms.n_rdm == g.n_layers and rdms.n_cond == len(g.emotions)
    assert rdms.dissimilarity_measure == "cosine"
    assert list(rdms.pattern_descriptors["emotion"]) == g.emotions
    assert list(rdms.rdm_descriptors["layer"]) == list(range(g.n_layers))
    assert list(rdms.rdm_descriptors["model"]) == ["llama"] * g.n_layers
    assert rdms.descriptors["model"] == "llama" and rdms.descriptors["preset"] == "default"
    assert rdms.descriptors["layer_definition"].startswith("output of decoder block")
    np.testing.assert_array_equal(rdms.dissimilarities, geo.upper(g.rdms))
    np.testing.assert_array_equal(rdms.get_matrices(), g.rdms)
    one = g.to_rsatoolbox(layers=[2])
    assert one.n_rdm == 1 and list(one.rdm_descriptors["layer"]) == [2]
    with pytest.raises(EmogeomError, match="out of range"):
        g.to_rsatoolbox(layers=[g.n_layers])


@pytest.mark.parametrize("method", list(METHODS))
def test_rsatoolbox_compare_equals_emogeom_rho(geoms, method):
    from rsatoolbox.rdm import compare as rsa_compare

    a, b = geoms["llama"], geoms["gpt2"]
    c = emogeom.compare(a, b, method=method, permutations=200, bootstrap=20)
    rho = rsa_compare(a.to_rsatoolbox([c.layer_a]), b.to_rsatoolbox([c.layer_b]),
                      method=METHODS[method])
    assert rho.shape == (1, 1)
    assert abs(float(rho[0, 0]) - c.rho) < 1e-9
    if method != "kendall":  # the layer search: every layer pair at once
        grid = rsa_compare(a.to_rsatoolbox(), b.to_rsatoolbox(), method=METHODS[method])
        assert abs(grid[c.layer_a_max, c.layer_b_max] - c.rho_max_layers) < 1e-9
        assert abs(grid.max() - c.rho_max_layers) < 1e-9


def test_rsatoolbox_save_load_round_trip(geoms, tmp_path):
    from rsatoolbox.rdm import load_rdm

    from emogeom.export.rsa import save_rsatoolbox

    g = geoms["gpt2"]
    path = save_rsatoolbox(g, tmp_path / "sub" / "gpt2.h5")
    back = load_rdm(str(path))
    rdms = g.to_rsatoolbox()
    np.testing.assert_array_equal(back.dissimilarities, rdms.dissimilarities)
    assert back.dissimilarity_measure == "cosine"
    assert list(back.pattern_descriptors["emotion"]) == g.emotions
    assert list(back.rdm_descriptors["layer"]) == list(range(g.n_layers))
    assert list(back.rdm_descriptors["model"]) == ["gpt2"] * g.n_layers
    assert set(back.descriptors) == set(rdms.descriptors)
    for key, value in rdms.descriptors.items():
        assert back.descriptors[key] == value, key
    with pytest.raises(EmogeomError, match="exists"):
        save_rsatoolbox(g, path)
    save_rsatoolbox(g, path, layers=[1], overwrite=True)
    assert load_rdm(str(path)).n_rdm == 1


def test_rsatoolbox_missing_is_one_line(geoms, monkeypatch):
    monkeypatch.setitem(sys.modules, "rsatoolbox", None)
    with pytest.raises(EmogeomError, match="pip install rsatoolbox") as err:
        geoms["llama"].to_rsatoolbox()
    assert "\n" not in str(err.value)


# ---- steering-vectors ----------------------------------------------------------------------

def _logits(model, tok):
    """Logits of the tiny model on the prompt."""
    import torch

    ids = torch.tensor([tok(PROMPT)["input_ids"]])
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3"])
@pytest.mark.parametrize("layers", [0, [1, 2]])
def test_steering_vector_equals_emogeom_steer(steering_pkg, lms, geoms, arch, layers):
    import torch

    model, tok = lms[arch]
    g = geoms[arch]
    sv = g.to_steering_vector("calm", layers, alpha=0.5, model=model, tokenizer=tok)
    assert isinstance(sv, steering_pkg.SteeringVector) and sv.layer_type == "decoder_block"
    assert sorted(sv.layer_activations) == ([layers] if isinstance(layers, int) else layers)
    assert all(v.dtype == torch.float32 for v in sv.layer_activations.values())
    plain = _logits(model, tok)
    with sv.apply(model):
        theirs = _logits(model, tok)
    with emogeom.steer(model, tok, g, "calm", 0.5, layers):
        ours = _logits(model, tok)
    assert not torch.allclose(plain, theirs, atol=1e-3)
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(_logits(model, tok), plain)  # both unhooked on exit


def test_steering_vector_generation_matches(steering_pkg, lms, geoms):
    import torch

    model, tok = lms["llama"]
    g = geoms["llama"]
    sv = g.to_steering_vector("angry", [1], alpha=2.0, model=model, tokenizer=tok)
    ids = torch.tensor([tok(PROMPT)["input_ids"]])
    args = dict(max_new_tokens=8, do_sample=False, pad_token_id=tok.eos_token_id)
    with torch.no_grad():
        with sv.apply(model):
            theirs = model.generate(ids, **args)
        with emogeom.steer(model, tok, g, "angry", 2.0, [1]):
            ours = model.generate(ids, **args)
    assert torch.equal(theirs, ours)


def test_steering_vector_without_model_is_absolute(steering_pkg, geoms):
    import torch

    g = geoms["gpt2"]
    sv = g.to_steering_vector("happy", "1-2", alpha=3.0)
    assert sorted(sv.layer_activations) == [1, 2]
    k = g.emotions.index("happy")
    for layer, vec in sv.layer_activations.items():
        assert abs(float(torch.linalg.vector_norm(vec)) - 3.0) < 1e-5
        unit = g.vectors[layer, k] / np.linalg.norm(g.vectors[layer, k])
        np.testing.assert_allclose(vec.numpy() / 3.0, unit, atol=1e-6)
    assert list(g.to_steering_vector("happy").layer_activations) == [g.best_layer]
    with pytest.raises(EmogeomError, match="unknown emotion"):
        g.to_steering_vector("bored")


def test_steering_layer_config_is_emogeoms_blocks(steering_pkg, lms):
    from emogeom.export.steering_vectors import check_layer_matching, layer_config

    assert layer_config(lms["llama"][0]) == {"decoder_block": "model.layers.{num}"}
    assert layer_config(lms["gpt2"][0]) == {"decoder_block": "transformer.h.{num}"}
    assert layer_config(lms["gemma3"][0]) == {"decoder_block": "model.layers.{num}"}
    for model, _ in lms.values():
        check_layer_matching(model)


def test_steering_vectors_missing_is_one_line(geoms, monkeypatch):
    monkeypatch.setitem(sys.modules, "steering_vectors", None)
    with pytest.raises(EmogeomError, match="pip install steering-vectors") as err:
        geoms["llama"].to_steering_vector("calm")
    assert "\n" not in str(err.value)
