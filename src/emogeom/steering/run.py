"""End-to-end steering runs: ``run_steer`` behind ``emogeom steer`` (writes outputs.jsonl,
metrics.json, manifest.json) and ``steering_regime`` for the study pipeline.

Both take a ``LoadedModel``: ``models.load_model`` gives one from a name or path, and
``models.wrap(model, tokenizer)`` one from a transformers model and tokenizer already loaded
(a tokenizer without a pad token is left so).
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import emogeom
from emogeom import artefacts as io
from emogeom.config import Steering
from emogeom.errors import EmogeomError
from emogeom.geometry.layers import parse_layers
from emogeom.models import DTYPES, LoadedModel, load_model, resolve_model
from emogeom.models.timing import Estimate, Work, count, estimate, text_tokens, warm_up
from emogeom.progress import Progress, counter
from emogeom.steering.dose import (
    DEFAULT_SCENARIOS,
    DEFAULT_STRENGTHS,
    Scenario,
    dose_response,
    parse_strengths,
    readout_layer,
)
from emogeom.steering.regime import regimes, summarise
from emogeom.steering.vectors import (
    SteeringVectors,
    check_emotions,
    compute_vectors,
    load_vectors,
    residual_norms,
)


def scenarios_for(settings: Steering) -> list[Scenario]:
    """Default scenarios (each toward its own emotion, or all toward --emotion) plus the
    user's prompts (toward --emotion)."""
    chosen = []
    if settings.default_prompts:
        chosen = [Scenario(s.name if not settings.emotion else
                           f"{s.name.split('→')[0]}→{settings.emotion}",
                           s.prompt, settings.emotion or s.emotion) for s in DEFAULT_SCENARIOS]
    for k, p in enumerate(settings.prompts, start=1):
        if not p.strip():
            raise EmogeomError(f"prompt {k} is empty: give some text after --prompt")
        if not settings.emotion:
            raise EmogeomError("--prompt needs --emotion: say which emotion to steer it toward")
        chosen.append(Scenario(f"prompt {k}→{settings.emotion}", p, settings.emotion))
    if not chosen:
        raise EmogeomError("no prompts: give --prompt TEXT or keep the default prompts")
    return chosen


def validate(settings: Steering) -> tuple[list[Scenario], list[float], Path]:
    """Check everything that can be checked before loading the model."""
    resolve_model(settings.model)
    if settings.dtype not in DTYPES:
        raise EmogeomError(f"unknown dtype '{settings.dtype}' (use one of: {', '.join(DTYPES)})")
    scenarios = scenarios_for(settings)
    check_emotions([s.emotion for s in scenarios])
    strengths = parse_strengths(settings.strengths)
    if settings.vectors and not Path(settings.vectors).exists():
        raise EmogeomError(f"vectors file not found: {settings.vectors} (give the "
                           "vectors.safetensors written by `emogeom run`)")
    out = Path(settings.out) if settings.out else Path("out") / "steer" / (
        f"{resolve_model(settings.model).slug}-{settings.emotion or 'default'}")
    if out.exists() and not out.is_dir():
        raise EmogeomError(f"output path {out} is a file; give a folder with --out")
    return scenarios, strengths, out


def prepare_vectors(
    lm: LoadedModel, layers: list[int], vectors: str | None, per_emotion: int | None,
    progress: Progress | None = None,
) -> SteeringVectors:
    """Emotion vectors at ``layers`` (from a file or the shipped corpus) with residual norms."""
    sv = load_vectors(vectors, lm, layers) if vectors else compute_vectors(
        lm, layers, per_emotion, progress=progress)
    sv.norms = residual_norms(lm, layers)
    return sv


def steer_estimate(lm: LoadedModel, settings: Steering, scenarios: Sequence[Scenario],
                   strengths: Sequence[float]) -> Estimate:
    """How long ``run_steer`` will take: one output per scenario × sample × strength (one at a
    time), the stories read for the vectors, and each output read twice for scoring
    (perplexity, emotion projection); timed by a warm-up on the first prompt."""
    from emogeom.steering.scoring import prompt_ids
    from emogeom.stimuli import load_corpus, load_neutral_sentences

    prompts = [prompt_ids(lm, sc.prompt, settings.chat_template) for sc in scenarios]
    mean = round(sum(len(p) for p in prompts) / len(prompts))
    n_out = len(scenarios) * settings.samples * len(strengths)
    texts = list(load_neutral_sentences().texts)
    if not settings.vectors:
        texts += list(load_corpus(per_emotion=settings.per_emotion).texts)
    works = [Work(n_out, settings.max_new_tokens, 1, mean,
                  n_out * (mean + 2 * settings.max_new_tokens)),
             Work(read_tokens=text_tokens(lm.tokenizer, texts))]
    return estimate(f"{count(n_out)} generations × {settings.max_new_tokens} new tokens + "
                    f"scoring them + reading {count(len(texts))} texts", works,
                    warm_up(lm, prompts[:1]),
                    ["--strengths (fewer)", "--samples", "--max-new-tokens"])


def run_steer(settings: Steering, progress: Progress | None = None, device: str | None = "auto",
              max_memory: str | dict | None = None) -> dict[str, Any]:
    """Load the model (onto ``device``, see ``models.devices``), build vectors, run the dose
    grid, write outputs.jsonl, metrics.json and manifest.json under the output folder;
    returns what the CLI prints."""
    scenarios, strengths, out = validate(settings)
    started = time.time()
    lm = load_model(settings.model, settings.dtype,
                    trust_remote_code=settings.trust_remote_code, device=device,
                    max_memory=max_memory)
    n_layers = lm.info["n_layers"]
    layers = parse_layers(settings.layers, n_layers)
    if settings.vectors:  # check the file before any long work
        load_vectors(settings.vectors, lm, layers)
    est = steer_estimate(lm, settings, scenarios, strengths)
    if progress is not None:
        progress(est.line())
    sv = prepare_vectors(lm, layers, settings.vectors, settings.per_emotion, progress)
    n_out = len(scenarios) * settings.samples * len(strengths)
    records = dose_response(lm, sv, scenarios, strengths, settings.max_new_tokens,
                            settings.temperature, settings.top_p, settings.seed,
                            settings.samples, settings.chat_template,
                            counter(progress, "steered outputs", n_out))
    rows = summarise(records)
    summary = {"model": lm.source.spec, "layers": layers,
               "readout_layer": readout_layer(layers),
               "residual_norms": {str(k): v for k, v in sv.norms.items()},
               "per_strength": rows, "regimes": regimes(rows),
               "per_scenario": {sc.name: summarise([r for r in records
                                                    if r["scenario"] == sc.name])
                                for sc in scenarios}}
    manifest = {
        "emogeom": emogeom.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": lm.info,
        "settings": {**settings.model_dump(), "strengths": strengths, "layers_resolved": layers},
        "seed": settings.seed,
        "scenarios": [asdict(s) for s in scenarios],
        "vectors": sv.source,
        "residual_norms": {"per_layer": {str(k): v for k, v in sv.norms.items()},
                           "texts": "shipped neutral sentences", "statistic":
                           "mean per-token L2 norm of the block output, first token skipped"},
        "scale": "added vector = strength × residual norm × unit emotion vector, every position",
        "seconds": round(time.time() - started, 1),
        "estimate": {"seconds": round(est.seconds, 1), "line": est.line()},
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    out.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(_finite(r), ensure_ascii=False) + "\n" for r in records)
    io.atomic_write_bytes(out / "outputs.jsonl", lines.encode())
    io.write_json(out / "metrics.json", summary)
    io.write_json(out / "manifest.json", manifest)
    return {"out": str(out), "records": records, "summary": summary, "model": lm.info}


def _finite(record: dict) -> dict:
    """Flat record with NaN/inf floats as None (strict JSON)."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in record.items()}


def steering_regime(
    lm: LoadedModel, vectors_at_layer: np.ndarray, emotions: Sequence[str], layer: int,
    strengths: Sequence[float] = DEFAULT_STRENGTHS, scenarios: Sequence[Scenario] | None = None,
    max_new_tokens: int = 40, temperature: float = 0.0, seed: int = 0,
) -> dict[str, Any]:
    """Steering regime of a loaded model at one layer with its emotion vectors [E, d]
    (e.g. the study's vectors at the best layer): both regimes and a small dose table.
    ``lm`` is a ``LoadedModel``; ``models.wrap(model, tokenizer)`` makes one of a plain
    transformers model and tokenizer."""
    vecs = np.asarray(vectors_at_layer, dtype=np.float32)
    if vecs.ndim != 2 or vecs.shape[0] != len(emotions):
        raise EmogeomError(f"vectors_at_layer must be [{len(emotions)} emotions, d], got "
                           f"{list(vecs.shape)}")
    layers = parse_layers(str(layer), lm.info["n_layers"])
    sv = SteeringVectors(layers, list(emotions), vecs[None], residual_norms(lm, layers),
                         {"kind": "given"})
    scenarios = list(scenarios or DEFAULT_SCENARIOS)
    check_emotions([s.emotion for s in scenarios], sv.emotions)
    records = dose_response(lm, sv, scenarios, strengths, max_new_tokens, temperature,
                            seed=seed)
    rows = summarise(records)
    reg = regimes(rows)
    return {"layer": layer, "residual_norm": sv.norms[layer],
            "regime_reference": reg["reference"]["regime"],
            "onset_reference": reg["reference"]["onset_strength"],
            "regime_perplexity": reg["perplexity"]["regime"],
            "onset_perplexity": reg["perplexity"]["onset_strength"],
            "unsteered_regime_reference": reg["reference"]["baseline_regime"],
            "thresholds": reg["thresholds"], "dose": rows,
            "samples": [{k: r[k] for k in ("scenario", "strength", "output")} for r in records]}
