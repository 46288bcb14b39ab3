"""Generation mode, its presets and pooling over the generated span; the decomposition table."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emogeom.errors import EmogeomError
from emogeom.extraction.generation import (
    TOPICS,
    build_samples,
    extract_generated,
    gen_preset,
    resolve_layer,
    run_generation,
    span_weights,
)
from emogeom.geometry.vectors import vectors_from_means
from emogeom.method.decompose import PAIRS, VectorSet, decomposition_table
from emogeom.models import load_model

EMOS = ["happy", "sad", "calm", "angry", "neutral"]


@pytest.fixture(scope="module")
def llama(tiny_models):
    return load_model(str(tiny_models["llama"]))


def _texts(run):
    return [r["text"] for r in run.records]


def test_sampling_reproducible_with_seed_and_differs_with_another(llama):
    p = gen_preset("gen-loose", max_new_tokens=6, stories=2, seed=3)
    a, b = run_generation(llama, p, EMOS), run_generation(llama, p, EMOS)
    c = run_generation(llama, p.model_copy(update={"seed": 4}), EMOS)
    assert _texts(a) == _texts(b)
    assert np.array_equal(a.states["last"], b.states["last"])
    assert _texts(a) != _texts(c)
    assert len(a.records) == len(EMOS) * 2 and a.conditions == EMOS


def test_greedy_stories_differ_by_topic(llama):
    p = gen_preset("gen-reference", n_templates=2, stories=3, max_new_tokens=5)
    samples = build_samples(p, EMOS)
    assert len(samples) == len(EMOS) * 2 * 3
    assert len({s.prompt for s in samples}) == len(samples)  # no two prompts alike
    assert samples[0].topic == TOPICS[0] and samples[1].topic == TOPICS[1]
    neutral = [s for s in samples if s.emotion == "neutral"]
    assert all("neutral" in s.prompt or "factual" in s.prompt for s in neutral)


def test_span_weights_pick_generated_tokens_only():
    w = span_weights([7, 4], [3, 1], [7, 4], width=7)
    last, middle, mean = w
    assert last[0].argmax() == 6 and last[1].argmax() == 3
    assert middle[0].argmax() == 3 + 4 // 2 and middle[1].argmax() == 1 + 3 // 2
    assert torch.allclose(mean[0, 3:], torch.full((4,), 0.25)) and mean[0, :3].sum() == 0
    assert mean[1, 4:].sum() == 0 and mean[1, 0] == 0  # padding and prompt get no weight
    with pytest.raises(EmogeomError, match="empty"):
        span_weights([3], [3], [3], width=3)


def test_extract_generated_matches_hidden_states(llama):
    tok = llama.tokenizer
    seqs = [tok("The cat sat on the mat today.")["input_ids"], tok("A dog ran.")["input_ids"]]
    starts = [3, 2]
    got = extract_generated(llama.model, tok.pad_token_id, seqs, starts)
    for i, (seq, start) in enumerate(zip(seqs, starts)):
        with torch.inference_mode():
            hs = llama.model(torch.tensor([seq]), output_hidden_states=True).hidden_states
        for layer in range(2):  # hidden_states[l+1] is block l's output below the final norm
            h = hs[layer + 1][0].numpy()
            np.testing.assert_allclose(got["last"][layer, i], h[-1], rtol=1e-4, atol=1e-4)
            mid = start + (len(seq) - start) // 2
            np.testing.assert_allclose(got["middle"][layer, i], h[mid], rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(got["mean"][layer, i], h[start:].mean(0), rtol=1e-4,
                                       atol=1e-4)


def test_baselines_and_unit_norm():
    means = np.arange(12, dtype=float).reshape(3, 4) ** 1.5  # conditions x d
    conds = ["happy", "neutral", "sad"]
    v, names = vectors_from_means(means, conds, "neutral", unit_norm=False)
    assert names == ["happy", "sad"]
    np.testing.assert_allclose(v, means[[0, 2]] - means[1])
    v, names = vectors_from_means(means, conds, "emotion-mean", unit_norm=True)
    assert names == conds
    np.testing.assert_allclose(np.linalg.norm(v, axis=-1), 1.0)
    np.testing.assert_allclose(v * np.linalg.norm(means - means.mean(0), axis=-1)[:, None],
                               means - means.mean(0))
    with pytest.raises(EmogeomError, match="needs the neutral condition"):
        vectors_from_means(means, ["happy", "calm", "sad"], "neutral", True)


def test_bad_generation_input():
    with pytest.raises(EmogeomError, match="unknown generation preset"):
        gen_preset("gen-fancy")
    with pytest.raises(EmogeomError, match="unknown token position 'first'"):
        gen_preset("gen-reference", position="first")
    with pytest.raises(EmogeomError, match="unknown baseline"):
        gen_preset("gen-loose", baseline="median")
    with pytest.raises(EmogeomError, match="repeats stories"):
        gen_preset("gen-reference", stories=len(TOPICS) + 1)
    with pytest.raises(EmogeomError, match="templates"):
        gen_preset("gen-reference", n_templates=99)
    with pytest.raises(EmogeomError, match="unknown layer rule"):
        gen_preset("gen-reference", layer="middle")
    with pytest.raises(EmogeomError, match="needs a comprehension run"):
        resolve_layer("best-comprehension", 30)
    assert resolve_layer("fraction:0.5", 30) == 15 and resolve_layer("fraction:0.5", 18) == 9
    assert resolve_layer("best-comprehension", 30, 7) == 7


def _set(name, acts, labels, ids, baseline="emotion-mean", unit=False):
    conds = list(dict.fromkeys(labels))
    return VectorSet(name, acts, labels, ids, conds, baseline, unit, 0, name)


def test_decomposition_table_shape_and_identity():
    rng = np.random.default_rng(1)
    labels = [e for e in EMOS for _ in range(4)]
    ids = [f"s{i}" for i in range(len(labels))]
    acts = rng.normal(size=(len(labels), 16)) + np.repeat(rng.normal(size=(5, 16)), 4, 0)
    same = {k: _set(k, acts, labels, ids) for k in "ABCD"}
    rows, bias = decomposition_table(same, n_perm=199, n_boot=50, seed=0)
    assert [r["layer"] for r in rows] == [p[0] for p in PAIRS]
    assert all(r["n_emotions"] == 5 for r in rows)
    assert all(abs(r["rho"] - 1) < 1e-12 and abs(r["ci_low"] - 1) < 1e-12 for r in rows)
    assert bias["delta"] == 0 and bias["direction"] == "none"
    # A neutral-baseline set shares only the 4 emotions; a noisy D drops ρ for C–D only.
    other = dict(same)
    other["C"] = _set("C", acts, labels, ids, baseline="neutral", unit=True)
    other["D"] = _set("D", acts + rng.normal(scale=3, size=acts.shape), labels, ids,
                      baseline="neutral")
    rows, bias = decomposition_table(other, n_perm=199, n_boot=50, seed=0)
    by = {r["layer"]: r for r in rows}
    assert by["method-loose"]["n_emotions"] == 5 and by["method-clean"]["n_emotions"] == 4
    assert by["precision"]["rho"] < 1 and by["method-loose"]["rho"] == pytest.approx(1)
    assert bias["direction"] in ("inflates", "deflates")
    with pytest.raises(EmogeomError, match="missing"):
        decomposition_table({"A": same["A"]})


def test_decompose_cli_end_to_end(tiny_models, tmp_path):
    from typer.testing import CliRunner

    from emogeom.cli import app

    out = tmp_path / "dec"
    args = ["decompose", "-m", str(tiny_models["llama"]), "--templates", "1", "--samples", "2",
            "--max-new-tokens", "4", "--loose-max-new-tokens", "4", "--per-emotion", "2",
            "--permutations", "99", "--bootstrap", "20", "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "method-clean" in res.output and "bias" in res.output
    lines = (out / "decomposition.csv").read_text().splitlines()
    assert len(lines) == 6 and lines[0].startswith("layer,set_x")
    texts = [json.loads(x) for x in (out / "texts_C.jsonl").read_text().splitlines()]
    assert len(texts) == 21 * 2 and {"prompt", "text", "emotion"} <= set(texts[0])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model_quantised"]["quantisation"]["path"] == "torch-dynamic-qint8"
    assert manifest["C"]["protocol"]["stories"] == 2
    assert (out / "decomposition.png").stat().st_size > 0
    bad = CliRunner().invoke(app, ["decompose", "-m", str(tiny_models["llama"]),
                                   "--templates", "50", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "templates" in bad.output
    assert not (tmp_path / "bad").exists()


def test_sensitivity_grid_on_tiny_model(tiny_models, tmp_path):
    from emogeom.method.sensitivity import run_sensitivity

    res = run_sensitivity(str(tiny_models["llama"]), "gen-reference", templates=1, samples=2,
                          max_new_tokens=3, n_perm=49, n_boot=10, out=tmp_path / "sens")
    rows = {(r["knob"], r["value"]): r for r in res["rows"]}
    knobs = {k for k, _ in rows}
    assert {"position", "layer", "baseline", "unit_norm", "samples", "chat_template",
            "decoding", "max_new_tokens", "templates"} <= knobs
    assert rows[("unit_norm", "False")]["rho"] == pytest.approx(1.0)  # cosine RDM: scale-free
    assert not rows[("position", "last")]["regenerated"]
    assert rows[("decoding", "sample T=0.7 top-p=0.9")]["regenerated"]
    assert (tmp_path / "sens" / "sensitivity.csv").exists()
    assert (tmp_path / "sens" / "texts" / "base.jsonl").exists()
