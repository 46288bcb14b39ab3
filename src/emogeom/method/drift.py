"""Precision drift: how far pooled states, emotion vectors and RDMs at each layer move from
fp32 when the same model runs at bf16, fp16 or INT8 on the same corpus.

A precision whose activations go non-finite (fp16 on Gemma-3) is reported, not fatal: the
layers before the first non-finite one are still compared, and the row says where it broke.
"""

from __future__ import annotations

import gc
import platform
import re
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import emogeom
from emogeom import artefacts as io
from emogeom.errors import EmogeomError
from emogeom.extraction import NonFiniteActivations, extract_pooled
from emogeom.geometry import cosine_rdm, emotion_vectors, rowwise_spearman, upper
from emogeom.method.decompose import output_folder
from emogeom.models import DTYPES, load_model
from emogeom.models.devices import resolve_device
from emogeom.models.precision import QUANTISED, precision_device
from emogeom.progress import Progress, counter
from emogeom.stimuli import load_corpus

PRECISIONS = (*DTYPES, *QUANTISED)
COLUMNS = ["dtype", "layer", "state_cos_mean", "state_cos_min", "vector_cos_mean",
           "vector_cos_min", "rdm_rho"]


def parse_dtypes(text: str) -> list[str]:
    """Comma list of precisions, fp32 first (the reference); unknown names are an error."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in PRECISIONS]
    if bad or not names:
        raise EmogeomError(f"unknown dtype(s) {bad or text!r} (use a comma list of: "
                           f"{', '.join(PRECISIONS)})")
    return ["fp32"] + [n for n in dict.fromkeys(names) if n != "fp32"]


def _rowwise_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return np.divide((a * b).sum(-1), den, out=np.full(den.shape, np.nan), where=den > 0)


def drift_rows(
    ref: np.ndarray, other: np.ndarray, labels: Sequence[str], emotions: Sequence[str]
) -> list[dict[str, float]]:
    """Per layer of ``other`` [L', N, d] (L' ≤ L): cosine of pooled states and of emotion
    vectors with fp32 ``ref`` [L, N, d], and the RDM Spearman ρ."""
    layers = other.shape[0]
    sc = _rowwise_cos(other, ref[:layers])  # [L', N]
    v_o, v_r = emotion_vectors(other, labels, emotions), emotion_vectors(ref[:layers], labels,
                                                                          emotions)
    vc = _rowwise_cos(v_o, v_r)  # [L', E]
    rho = rowwise_spearman(upper(cosine_rdm(v_o)), upper(cosine_rdm(v_r)))
    return [{"layer": k, "state_cos_mean": float(sc[k].mean()),
             "state_cos_min": float(sc[k].min()), "vector_cos_mean": float(vc[k].mean()),
             "vector_cos_min": float(vc[k].min()), "rdm_rho": float(rho[k])}
            for k in range(layers)]


def extract_until_finite(lm, texts: Sequence[str], progress: Progress | None, label: str
                         ) -> tuple[np.ndarray, int | None, str | None]:
    """Pooled states of every layer; on overflow, those of the layers before the first
    non-finite one (a note to ``progress`` says so). Returns (states, first non-finite layer
    or None, message)."""
    layers: list[int] | None = None
    broke, message = None, None
    while True:
        try:
            states = extract_pooled(lm.model, lm.tokenizer, texts, "mean", 1, layers=layers,
                                    on_batch=counter(progress, label, len(texts)))
            return states, broke, message
        except NonFiniteActivations as exc:
            found = re.search(r"layer (\d+)", str(exc))
            k = int(found.group(1)) if found else 0
            broke, message = (k if broke is None else min(broke, k)), str(exc)
            if k == 0:
                return np.zeros((0, len(texts), lm.info["d_model"]), np.float32), 0, message
            layers = list(range(k))
            if progress is not None:
                progress(f"{label}: layer {k} went non-finite; comparing layers 0..{k - 1}")


def run_precision(
    model: str, dtypes: Sequence[str] = PRECISIONS, per_emotion: int | None = None,
    out: str | Path | None = None, progress: Progress | None = None,
    device: str | None = "auto", max_memory: str | dict | None = None,
) -> dict[str, Any]:
    """Extract the shipped corpus at every precision, compare each with fp32 per layer, write
    drift.csv and manifest.json; returns rows per precision and each one's status."""
    started = time.time()
    dtypes = parse_dtypes(",".join(dtypes))
    if per_emotion is not None and per_emotion < 2:
        raise EmogeomError("--per-emotion must be at least 2 (vectors need 2 stories each)")
    for dt in dtypes:  # an unsupported path fails now, before any extraction
        precision_device(dt, device, resolve_device(device))
    folder = output_folder(out, "precision", model)
    corpus = load_corpus(per_emotion=per_emotion)
    emotions = list(corpus.emotions)
    states, status, infos, rows = {}, {}, {}, {}
    for dt in dtypes:
        lm = load_model(model, dt, device=device, max_memory=max_memory)
        infos[dt] = lm.info
        t0 = time.time()
        st, broke, message = extract_until_finite(lm, corpus.texts, progress, f"{dt}")
        n_layers = lm.info["n_layers"]
        del lm
        gc.collect()
        states[dt] = st
        status[dt] = {"n_layers": n_layers, "first_non_finite_layer": broke,
                      "message": message, "layers_compared": int(st.shape[0]),
                      "extract_seconds": round(time.time() - t0, 1),
                      "quantisation": infos[dt].get("quantisation", {"path": "none"})["path"],
                      "dtype_loaded": infos[dt].get("dtype_loaded")}
        if dt == "fp32" and broke is not None:
            raise EmogeomError(f"fp32 itself went non-finite at layer {broke}: the model or "
                               "its weights are broken; re-convert it")
        rows[dt] = drift_rows(states["fp32"], st, corpus.labels, emotions) if st.shape[0] \
            else []
    table = [[dt, str(r["layer"])] + [f"{r[c]:.6g}" for c in COLUMNS[2:]]
             for dt in dtypes for r in rows[dt]]
    io.write_csv(folder / "drift.csv", COLUMNS, table)
    io.write_json(folder / "manifest.json", {
        "emogeom": emogeom.__version__, "command": "precision",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "models": infos, "status": status, "reference": "fp32",
        "corpus": {"path": corpus.source, "sha256": corpus.sha256,
                   "n_stimuli": len(corpus.stimuli), "per_emotion": per_emotion},
        "pooling": "mean over tokens from position 1 (the default preset)",
        "vectors": "emotion mean minus mean over the 21 emotions, no denoising",
        "rdm_rho": "Spearman over the upper triangle, per layer",
        "seconds": round(time.time() - started, 1),
        "python": platform.python_version(), "numpy": np.__version__,
    })
    return {"rows": rows, "status": status, "folder": folder, "dtypes": dtypes,
            "n_stimuli": len(corpus.stimuli)}
