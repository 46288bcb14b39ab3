"""Precision paths: INT8 on CPU, unknown/unsupported precisions, drift rows, overflow report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emogeom.errors import EmogeomError
from emogeom.extraction import decoder_layers, extract_pooled
from emogeom.method.drift import drift_rows, extract_until_finite, parse_dtypes
from emogeom.models import load_model
from emogeom.models.precision import INT8_CPU


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


@pytest.fixture(scope="module")
def llama_pair(tiny_models):
    return load_model(str(tiny_models["llama"])), load_model(str(tiny_models["llama"]), "int8")


def test_int8_cpu_path_recorded_and_hooks_still_work(llama_pair, sample_texts):
    fp32, q = llama_pair
    quant = q.info["quantisation"]
    assert quant["path"] == INT8_CPU
    assert quant["modules_quantised"] == 3 * 7  # q, k, v, o, gate, up, down per block
    assert len(decoder_layers(q.model)) == 3
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    assert any(isinstance(m, dynamic) for m in decoder_layers(q.model)[0].modules())
    assert isinstance(q.model.get_output_embeddings(), torch.nn.Linear)  # head kept fp32
    a = extract_pooled(fp32.model, fp32.tokenizer, sample_texts)
    b = extract_pooled(q.model, q.tokenizer, sample_texts)
    assert np.isfinite(b).all()
    assert not np.array_equal(a, b)  # quantisation changed something
    assert _cos(a, b).min() > 0.98


def test_unknown_and_unsupported_precisions(tiny_models):
    with pytest.raises(EmogeomError, match="unknown dtype 'int3'"):
        load_model(str(tiny_models["llama"]), "int3")
    if not torch.cuda.is_available():
        with pytest.raises(EmogeomError, match="int4 has no CPU path.*bitsandbytes"):
            load_model(str(tiny_models["llama"]), "int4")
    with pytest.raises(EmogeomError, match="no nn.Linear"):  # GPT-2 blocks use Conv1D
        load_model(str(tiny_models["gpt2"]), "int8")
    with pytest.raises(EmogeomError, match="unknown dtype"):
        parse_dtypes("fp32,fp8")
    assert parse_dtypes("int8,bf16,fp32,bf16") == ["fp32", "int8", "bf16"]


def test_drift_rows_identity_and_change():
    rng = np.random.default_rng(0)
    labels = [e for e in "abcde" for _ in range(3)]
    ref = rng.normal(size=(2, 15, 8))
    same = drift_rows(ref, ref.copy(), labels, list("abcde"))
    assert [r["layer"] for r in same] == [0, 1]
    assert all(abs(r[k] - 1) < 1e-9 for r in same for k in ("state_cos_mean", "vector_cos_min",
                                                             "rdm_rho"))
    noisy = drift_rows(ref, ref[:1] + rng.normal(scale=0.5, size=(1, 15, 8)), labels,
                       list("abcde"))
    assert len(noisy) == 1 and noisy[0]["state_cos_mean"] < 0.999


def test_overflow_is_reported_with_its_layer(llama_pair, sample_texts):
    fp32 = llama_pair[0]
    block = decoder_layers(fp32.model)[1]

    def blow_up(_m, _i, output):
        hidden = output[0] if isinstance(output, tuple) else output
        bad = torch.full_like(hidden, float("inf"))
        return (bad, *output[1:]) if isinstance(output, tuple) else bad

    handle = block.register_forward_hook(blow_up)  # runs before extract_pooled's own hook
    try:
        states, broke, message = extract_until_finite(fp32, sample_texts, None, "fake fp16")
    finally:
        handle.remove()
    assert broke == 1 and "layer 1" in message
    assert states.shape[0] == 1 and np.isfinite(states).all()


@pytest.mark.real
def test_gemma_fp16_overflow_and_smollm_int8():
    from emogeom.stimuli import load_corpus

    texts = load_corpus(per_emotion=2).texts[:4]
    gemma = load_model("gemma3-270m", "fp16")
    states, broke, message = extract_until_finite(gemma, texts, None, "fp16")
    assert broke is not None and states.shape[0] == broke
    del gemma
    fp32, q = load_model("smollm2-135m-instruct"), load_model("smollm2-135m-instruct", "int8")
    a = extract_pooled(fp32.model, fp32.tokenizer, texts, layers=[0, 15])
    b = extract_pooled(q.model, q.tokenizer, texts, layers=[0, 15])
    assert _cos(a, b).min() > 0.9


def test_precision_command_refuses_int4_before_any_work(tiny_models, tmp_path, monkeypatch):
    from emogeom.models.precision import bitsandbytes_ready

    if bitsandbytes_ready():
        pytest.skip("int4 has a path on this machine")
    from typer.testing import CliRunner

    import emogeom.method.drift as drift
    from emogeom.cli import app

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the bad precision was refused")

    monkeypatch.setattr(drift, "load_model", no_loading)
    out = tmp_path / "drift"
    res = CliRunner().invoke(app, ["precision", "-m", str(tiny_models["llama"]), "--dtypes",
                                   "fp32,int4", "--per-emotion", "2", "--out", str(out)])
    assert res.exit_code == 2
    text = (res.stderr or res.output).strip()
    assert text.startswith("error: int4 has no CPU path") and "[bold" not in text, text
    assert not out.exists()
