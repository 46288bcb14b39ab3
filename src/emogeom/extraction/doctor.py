"""``emogeom doctor``: does the fast hook path compute the same numbers as the slow, trusted
one (HF ``output_hidden_states`` per text)? TransformerLens 4, where installed, is compared
by tests/test_extraction.py and benchmarks/extract_speed.py."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from emogeom import geometry
from emogeom.extraction import NonFiniteActivations, extract_pooled
from emogeom.extraction.reference import per_text_hidden_states, strip_final_norm
from emogeom.models import load_model
from emogeom.stimuli import load_corpus

TOLERANCE = {"fp32": 1e-4, "bf16": 5e-2, "fp16": 1e-2}
MIN_RHO = {"fp32": 0.999, "bf16": 0.95, "fp16": 0.99}


def layer_agreement(ours: np.ndarray, ref: np.ndarray, labels, emotions) -> list[dict]:
    """Per layer: max abs diff, diff relative to the reference's largest entry, the lowest
    per-emotion vector cosine and the RDM Spearman ρ between the two paths."""
    out = []
    va = geometry.emotion_vectors(ours, labels, emotions)
    vb = geometry.emotion_vectors(ref, labels, emotions)
    ra, rb = geometry.upper(geometry.cosine_rdm(va)), geometry.upper(geometry.cosine_rdm(vb))
    rho = geometry.rowwise_spearman(ra, rb)
    for layer in range(ours.shape[0]):
        diff = float(np.abs(ours[layer] - ref[layer]).max())
        scale = float(np.abs(ref[layer]).max()) or 1.0
        na = np.linalg.norm(va[layer], axis=1)
        nb = np.linalg.norm(vb[layer], axis=1)
        cos = (va[layer] * vb[layer]).sum(1) / np.maximum(na * nb, 1e-30)
        out.append({"layer": layer, "max_abs_diff": diff, "rel_diff": diff / scale,
                    "min_emotion_cosine": float(cos.min()), "rdm_rho": float(rho[layer])})
    return out


def doctor(model: str, dtype: str = "fp32", per_emotion: int = 3, pooling: str = "mean",
           mean_start: int = 1, device: str | None = "auto",
           max_memory: str | dict | None = None) -> dict[str, Any]:
    """Compare our extraction with HF's per-text ``output_hidden_states`` (eager attention,
    same dtype, same device) on ``per_emotion`` stories of each emotion; PASS/FAIL by dtype
    tolerance."""
    corpus = load_corpus(per_emotion=per_emotion)
    lm = load_model(model, dtype, device=device, max_memory=max_memory)
    result: dict[str, Any] = {"model": model, "dtype": dtype,
                              "dtype_loaded": lm.info["dtype_loaded"], "n_texts": len(corpus.texts),
                              "device": lm.info["device"]}
    try:
        ours = extract_pooled(lm.model, lm.tokenizer, corpus.texts, pooling, mean_start)
    except NonFiniteActivations as exc:
        result.update({"status": "FAIL", "non_finite": str(exc), "layers": []})
        return result
    del lm
    ref_lm = load_model(model, dtype, attn_implementation="eager", device=device,
                        max_memory=max_memory)
    stripped = strip_final_norm(ref_lm.model)
    ref = per_text_hidden_states(ref_lm.model, ref_lm.tokenizer, corpus.texts, pooling,
                                 mean_start)
    if not stripped:  # the last entry is after the final norm: compare the others only
        ours_cmp, ref = ours[:-1], ref[:-1]
    else:
        ours_cmp = ours
    layers = layer_agreement(ours_cmp, ref, corpus.labels, list(corpus.emotions))
    ok = all(r["rel_diff"] <= TOLERANCE[dtype] and r["rdm_rho"] >= MIN_RHO[dtype]
             for r in layers)
    result.update({
        "status": "PASS" if ok else "FAIL", "layers": layers, "non_finite": None,
        "last_layer_checked": stripped, "tolerance_rel": TOLERANCE[dtype],
        "min_rho": MIN_RHO[dtype],
        "transformer_lens": ("installed here: tests/test_extraction.py and "
                             "benchmarks/extract_speed.py compare against its TransformerBridge"
                             if importlib.util.find_spec("transformer_lens") else
                             "not in this environment (pip install -e '.[dev]' adds "
                             "TransformerLens 4; benchmarks/extract_speed.py compares it)"),
    })
    return result
