"""The four-layer decomposition of a "comprehension vs generation" method effect.

Four vector sets of one model: A = comprehension (default preset, default precision), B =
gen-loose, C = gen-reference, D = gen-reference at INT8. Five RDM comparisons split the effect:
method-clean (A–C), method-loose (A–B), sub-parameters (B–C), precision (C–D) and conflated
(A–D); conflated − method-clean is the bias of a cross-experiment comparison (its sign says
whether it inflates or deflates ρ).
"""

from __future__ import annotations

import gc
import json
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import emogeom
from emogeom import artefacts as io
from emogeom.analysis import analyse
from emogeom.artefacts import csv_cell
from emogeom.config import (
    Generation,
    Statistics,
    default,
    make_settings,
    profile_value,
    run_profile,
)
from emogeom.emotions import EMOTIONS
from emogeom.errors import EmogeomError
from emogeom.extraction.generation import (
    GenerationRun,
    gen_preset,
    generation_work,
    resolve_layer,
    run_generation,
)
from emogeom.extraction.read import read_states
from emogeom.geometry import class_means, cosine_rdm, rowwise_spearman, upper
from emogeom.geometry.vectors import vectors_from_means
from emogeom.models import load_model, resolve_model
from emogeom.models.devices import resolve_device
from emogeom.models.precision import precision_device
from emogeom.models.timing import Estimate, Work, count, estimate, warm_up
from emogeom.progress import Progress, counter
from emogeom.stats import mantel, percentile_ci, resample_weights
from emogeom.stimuli import fixed_halves, load_corpus, load_neutral_sentences

PAIRS: tuple[tuple[str, str, str, str], ...] = (
    ("method-clean", "A", "C", "comprehension vs gen-reference (same precision)"),
    ("method-loose", "A", "B", "comprehension vs gen-loose"),
    ("sub-parameters", "B", "C", "gen-loose vs gen-reference"),
    ("precision", "C", "D", "gen-reference fp32 vs INT8"),
    ("conflated", "A", "D", "comprehension fp32 vs gen-reference INT8"),
)
PERMUTATIONS, BOOTSTRAP = default(Statistics, "permutations"), default(Statistics, "bootstrap")
TABLE_COLUMNS = ["layer", "set_x", "set_y", "what", "n_emotions", "rho", "ci_low", "ci_high",
                 "p_perm", "layer_x", "layer_y"]


@dataclass
class VectorSet:
    """Pooled states of one set at its chosen layer, and how they become emotion vectors."""

    name: str
    acts: np.ndarray  # [N, d]
    labels: list[str]
    ids: list[str]
    conditions: list[str]
    baseline: str  # emotion-mean | neutral
    unit_norm: bool
    layer: int
    description: str = ""

    def vectors(self, weights: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
        """Vectors [E', d] (or [B, E', d] under bootstrap ``weights`` [B, C, N])."""
        means = (class_means(self.acts, self.labels, self.conditions) if weights is None
                 else weights @ np.asarray(self.acts, dtype=np.float64))
        return vectors_from_means(means, self.conditions, self.baseline, self.unit_norm)

    def rdm(self, weights: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
        vec, names = self.vectors(weights)
        return cosine_rdm(vec), names


def generation_set(name: str, run: GenerationRun, layer: int, description: str) -> VectorSet:
    """A VectorSet from a generation run at ``layer`` with its protocol's position/baseline."""
    p = run.protocol
    return VectorSet(name, run.states[p.position][layer], run.labels, run.ids, run.conditions,
                     p.baseline, p.unit_norm, layer, description)


def bootstrap_replicates(
    sets: Sequence[VectorSet], n_boot: int, seed: int
) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Bootstrap RDMs [B, E', E'] per set, resampling samples within each condition. Sets over
    the same samples (same ids, e.g. one protocol at two precisions) share their resamples, so
    their comparison is paired; other sets are resampled independently."""
    groups: dict[tuple, int] = {}
    out = {}
    for s in sets:
        k = groups.setdefault((tuple(s.ids), tuple(s.conditions)), len(groups))
        w = resample_weights(s.labels, s.conditions, n_boot, seed + 7919 * k)
        out[s.name] = s.rdm(w)
    return out


def compare_sets(
    x: VectorSet, y: VectorSet, n_perm: int, seed: int,
    boot: dict[str, tuple[np.ndarray, list[str]]] | None = None, level: float = 0.95,
) -> dict[str, Any]:
    """Spearman ρ of the two RDMs over the emotions both have, Mantel p, and (with ``boot``)
    the percentile CI and the bootstrap ρ samples."""
    rx, ex = x.rdm()
    ry, ey = y.rdm()
    shared = [e for e in ex if e in ey]
    if len(shared) < 3:
        raise EmogeomError(f"sets {x.name} and {y.name} share {len(shared)} emotions; RDMs need "
                           "at least 3 in common")
    ix, iy = [ex.index(e) for e in shared], [ey.index(e) for e in shared]
    rho, p = mantel(rx[np.ix_(ix, ix)], ry[np.ix_(iy, iy)], "spearman", n_perm, seed)
    row = {"set_x": x.name, "set_y": y.name, "n_emotions": len(shared), "emotions": shared,
           "rho": rho, "p_perm": p, "layer_x": x.layer, "layer_y": y.layer,
           "ci_low": float("nan"), "ci_high": float("nan"), "rho_samples": None}
    if boot is not None:
        bx, by = boot[x.name][0], boot[y.name][0]
        samples = rowwise_spearman(upper(bx[:, ix][:, :, ix]), upper(by[:, iy][:, :, iy]))
        finite = np.isfinite(samples)  # a constant replicate RDM has no ρ: left out, counted
        row["boot_undefined"] = int((~finite).sum())
        samples = samples[finite]
        row["ci_low"], row["ci_high"] = ((float(v) for v in percentile_ci(samples, level))
                                         if samples.size else (float("nan"),) * 2)
        row["rho_samples"] = samples
    return row


def decomposition_table(
    sets: dict[str, VectorSet], n_perm: int = PERMUTATIONS, n_boot: int = BOOTSTRAP, seed: int = 0,
    level: float = 0.95,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The five comparison rows over sets A, B, C, D and the bias (conflated − method-clean)
    with its bootstrap CI and direction."""
    missing = [k for k in "ABCD" if k not in sets]
    if missing:
        raise EmogeomError(f"decomposition needs sets A, B, C and D; missing {missing}")
    boot = bootstrap_replicates([sets[k] for k in "ABCD"], n_boot, seed) if n_boot > 0 else None
    rows = []
    for layer, a, b, what in PAIRS:
        row = compare_sets(sets[a], sets[b], n_perm, seed, boot, level)
        row.update({"layer": layer, "what": what})
        rows.append(row)
    by = {r["layer"]: r for r in rows}
    delta = by["conflated"]["rho"] - by["method-clean"]["rho"]
    bias = {"delta": delta, "direction": "inflates" if delta > 0 else
            "deflates" if delta < 0 else "none",
            "ci_low": float("nan"), "ci_high": float("nan")}
    if boot is not None:
        diff = by["conflated"]["rho_samples"] - by["method-clean"]["rho_samples"]
        bias["ci_low"], bias["ci_high"] = (float(v) for v in percentile_ci(diff, level))
    bias["ci_excludes_zero"] = bool(bias["ci_low"] > 0 or bias["ci_high"] < 0)
    return rows, bias


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [[csv_cell(r[c]) for c in TABLE_COLUMNS] for r in rows]


def decomposition_figure(rows: list[dict[str, Any]], bias: dict[str, Any],
                         sets: dict[str, VectorSet], title: str):
    """Bars of the five ρ with CIs, and the four RDMs over the emotions all sets share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(15, 6.5))
    grid = fig.add_gridspec(2, 4, width_ratios=[1.6, 1, 1, 0.05])
    ax = fig.add_subplot(grid[:, 0])
    rho = np.array([r["rho"] for r in rows])
    low = np.array([r["ci_low"] for r in rows])
    high = np.array([r["ci_high"] for r in rows])
    err = np.nan_to_num(np.stack([rho - low, high - rho]), nan=0.0).clip(min=0)
    ax.barh(range(len(rows)), rho, xerr=err, color="#4c72b0", capsize=4)
    ax.set_yticks(range(len(rows)),
                  [f"{r['layer']}\n({r['set_x']} vs {r['set_y']})" for r in rows])
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlim(min(-0.1, float(np.nanmin(low)) - 0.05 if np.isfinite(low).any() else -0.1),
                1.05)
    ax.set_xlabel("RDM Spearman ρ (95% bootstrap CI)")
    ax.set_title(f"bias (conflated − method-clean) = {bias['delta']:+.3f}: {bias['direction']}")
    shared = [e for e in EMOTIONS if all(e in s.rdm()[1] for s in sets.values())]
    for k, name in enumerate("ABCD"):
        rdm, names = sets[name].rdm()
        idx = [names.index(e) for e in shared]
        sub = fig.add_subplot(grid[k // 2, 1 + k % 2])
        im = sub.imshow(rdm[np.ix_(idx, idx)], cmap="viridis")
        sub.set_title(f"{name}: {sets[name].description} (L{sets[name].layer})", fontsize=8)
        sub.set_xticks(range(len(shared)), shared, rotation=90, fontsize=5)
        sub.set_yticks(range(len(shared)), shared, fontsize=5)
    fig.colorbar(im, cax=fig.add_subplot(grid[:, 3]), label="1 − cos")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def readable_records(run: GenerationRun) -> list[dict[str, Any]]:
    """Generated texts for the jsonl artefact (token ids left out)."""
    keep = ("id", "emotion", "template", "story", "topic", "chat_template", "prompt", "input",
            "text",
            "n_prompt_tokens", "n_generated", "stopped")
    return [{k: r[k] for k in keep} for r in run.records]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    io.atomic_write_bytes(path, text.encode())


def comprehension_set(
    lm, per_emotion: int | None, seed: int, progress: Progress | None = None,
) -> tuple[VectorSet, dict[str, Any]]:
    """Set A: the comprehension geometry (default preset) of the shipped corpus, read as a
    study job reads it; the set holds the denoised best-layer states."""
    settings = make_settings("default", per_emotion=per_emotion, seed=seed, permutations=1000)
    corpus = load_corpus(per_emotion=per_emotion)
    neutral = load_neutral_sentences(n=settings.extraction.n_neutral)
    states = read_states(lm.model, lm.tokenizer, corpus, neutral, settings.extraction,
                         progress, "A comprehension")
    geom = analyse(states["stories"], states["neutral"], corpus, fixed_halves(corpus), settings)
    vs = VectorSet("A", geom.acts, geom.labels, geom.stimulus_ids, geom.emotions,
                   "emotion-mean", False, geom.best_layer, "comprehension")
    info = {"preset": "default", "settings": settings.model_dump(),
            "corpus_sha256": corpus.sha256, "n_stimuli": len(corpus.stimuli),
            "best_layer": geom.best_layer,
            "best_layer_criterion": geom.metrics["best_layer_criterion"],
            "reliability_at_best": geom.metrics["reliability_at_best"]}
    return vs, info


def generate_texts(lm, protocol: Generation, label: str, progress: Progress | None = None,
                   emotions: Sequence[str] = EMOTIONS) -> GenerationRun:
    """run_generation, reporting the writing and the re-reading pass as two tasks."""
    n = protocol.n_templates * protocol.stories * len(emotions)
    return run_generation(lm, protocol, emotions,
                          on_generated=counter(progress, f"{label}: writing", n),
                          on_extracted=counter(progress, f"{label}: reading back", n))


def corpus_tokens(lm, per_emotion: int | None) -> tuple[int, int]:
    """(texts, tokens) that set A reads: the shipped stories (first ``per_emotion`` per emotion)
    and the neutral sentences, as the model's tokenizer splits them."""
    texts = list(load_corpus(per_emotion=per_emotion).texts) + list(load_neutral_sentences().texts)
    return len(texts), sum(len(ids) for ids in lm.tokenizer(texts)["input_ids"])


def generation_estimate(
    lm, protocols: Sequence[tuple[str, Generation]], read: tuple[int, int] | None = None,
    hints: Sequence[str] = (), note: str = "",
) -> Estimate:
    """One Estimate for generating every (label, protocol) and reading ``read`` = (texts,
    tokens) of a corpus, from a warm-up on the first protocol's first batch of prompts."""
    works, parts = [], []
    first = None
    for label, p in protocols:
        work, prompts = generation_work(lm, p)
        works.append(work)
        first = first or prompts
        parts.append(f"{label} {count(work.generations)} × {work.new_tokens}")
    n = sum(w.generations for w in works)
    what = (f"{count(n)} generations ({', '.join(parts)} new tokens) + reading them back")
    if read is not None:
        works.append(Work(read_tokens=read[1]))
        what += f" + reading {count(read[0])} texts"
    return estimate(what, works, warm_up(lm, first), hints, note)


def output_folder(out: str | Path | None, command: str, model: str) -> Path:
    """OUT, or out/<command>/<model-slug>/; an existing file there is an error."""
    folder = Path(out) if out else Path("out") / command / resolve_model(model).slug
    if folder.exists() and not folder.is_dir():
        raise EmogeomError(f"--out {folder} exists and is not a folder; choose another")
    return folder


def run_decompose(
    model: str,
    templates: int | None = None,
    samples: int | None = None,
    max_new_tokens: int | None = None,
    loose_samples: int | None = None,
    loose_max_new_tokens: int | None = None,
    per_emotion: int | None = None,
    seed: int = 0,
    n_perm: int | None = None,
    n_boot: int | None = None,
    out: str | Path | None = None,
    progress: Progress | None = None,
    quantised: str = "int8",
    device: str | None = "auto",
    max_memory: str | dict | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    """Build A, B, C, D for ``model``, compare them, and write CSV, figure, texts, manifest;
    ``progress`` gets the counts of each stage and one-line notes (the profile, and an
    estimate of the time before the long work). Sizes left None come from the run profile
    (``config.PROFILES``; default quick on a CPU, full on a GPU)."""
    started = time.time()
    resolved = resolve_device(device)
    profile, why = run_profile(profile, resolved.split(":")[0])
    size = {k: profile_value(profile, k, v) for k, v in (
        ("templates", templates), ("samples", samples), ("max_new_tokens", max_new_tokens),
        ("loose_samples", loose_samples), ("loose_max_new_tokens", loose_max_new_tokens),
        ("per_emotion", per_emotion))}
    templates, samples, max_new_tokens = size["templates"], size["samples"], size["max_new_tokens"]
    loose_samples, loose_max_new_tokens = size["loose_samples"], size["loose_max_new_tokens"]
    per_emotion = size["per_emotion"]
    n_perm = profile_value(profile, "permutations", n_perm, PERMUTATIONS)
    n_boot = profile_value(profile, "bootstrap", n_boot, BOOTSTRAP)
    ref = gen_preset("gen-reference", n_templates=templates, stories=samples,
                     max_new_tokens=max_new_tokens, seed=seed)
    loose = gen_preset("gen-loose", stories=loose_samples, max_new_tokens=loose_max_new_tokens,
                       seed=seed)
    if per_emotion is not None and per_emotion < 2:
        raise EmogeomError("--per-emotion must be at least 2 (vectors need 2 stories each)")
    if n_perm < 1 or n_boot < 0:
        raise EmogeomError("--permutations must be ≥ 1 and --bootstrap ≥ 0")
    precision_device(quantised, device, resolved)  # D can load: check first
    folder = output_folder(out, "decompose", model)
    say = progress or (lambda _m: None)
    say(f"profile: {profile} ({why})")
    lm = load_model(model, "fp32", device=device, max_memory=max_memory)
    info_fp32 = lm.info
    n_layers = info_fp32["n_layers"]
    est = generation_estimate(
        lm, [("B", loose), ("C", ref), ("D", ref)], corpus_tokens(lm, per_emotion),
        ([] if profile == "quick" else ["--profile quick"])
        + ["--samples", "--templates", "--max-new-tokens"],
        f"D ({quantised}) counted at the fp32 rate")
    say(est.line())
    set_a, comp_info = comprehension_set(lm, per_emotion, seed, progress)
    say(f"A: comprehension best layer {set_a.layer} of {n_layers}")
    run_b = generate_texts(lm, loose, "B gen-loose", progress)
    run_c = generate_texts(lm, ref, "C gen-reference", progress)
    layer_b = resolve_layer(loose.layer, n_layers, set_a.layer)
    layer_c = resolve_layer(ref.layer, n_layers, set_a.layer)
    del lm
    gc.collect()
    lm_q = load_model(model, quantised, device=device, max_memory=max_memory)
    info_q = lm_q.info
    run_d = generate_texts(lm_q, ref, f"D gen-reference {quantised}", progress)
    del lm_q
    gc.collect()
    sets = {"A": set_a,
            "B": generation_set("B", run_b, layer_b, "gen-loose"),
            "C": generation_set("C", run_c, layer_c, "gen-reference"),
            "D": generation_set("D", run_d, layer_c, f"gen-reference {quantised}")}
    rows, bias = decomposition_table(sets, n_perm, n_boot, seed)
    hashes = {}
    for key, run in (("B", run_b), ("C", run_c), ("D", run_d)):
        name = f"texts_{key}.jsonl"
        write_jsonl(folder / name, readable_records(run))
        hashes[f"states_{key}.safetensors"] = io.write_tensors(
            folder / f"states_{key}.safetensors", run.states,
            {"ids": run.ids, "labels": run.labels, "layout": "[layers, samples, d] per "
             "token position, pooled over the generated span"})
    rdms = {}
    for k, s in sets.items():
        rdm, names = s.rdm()
        rdms[f"rdm_{k}"] = rdm
        rdms[f"vectors_{k}"] = s.vectors()[0]
    hashes["rdms.safetensors"] = io.write_tensors(
        folder / "rdms.safetensors", rdms,
        {k: s.rdm()[1] for k, s in sets.items()} | {"layers": {k: s.layer for k, s in
                                                               sets.items()}})
    io.write_csv(folder / "decomposition.csv", TABLE_COLUMNS + ["bias_delta", "bias_direction"],
                 [r + ([csv_cell(bias["delta"]), bias["direction"]] if row["layer"] == "conflated"
                       else ["", ""]) for r, row in zip(table_rows(rows), rows)])
    fig = decomposition_figure(rows, bias, sets, f"method-effect decomposition: {model}")
    for ext in ("png", "pdf"):
        fig.savefig(folder / f"decomposition.{ext}", dpi=130)
    manifest = {
        "emogeom": emogeom.__version__, "command": "decompose", "profile": profile,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "estimate": {"seconds": round(est.seconds, 1), "line": est.line()},
        "model_fp32": info_fp32, "model_quantised": info_q,
        "A": comp_info,
        "B": {"preset": "gen-loose", "protocol": loose.model_dump(), "layer": layer_b,
              "dropped_empty": run_b.dropped},
        "C": {"preset": "gen-reference", "protocol": ref.model_dump(), "layer": layer_c,
              "dropped_empty": run_c.dropped},
        "D": {"preset": "gen-reference", "precision": quantised, "protocol": ref.model_dump(),
              "layer": layer_c, "dropped_empty": run_d.dropped},
        "statistics": {"method": "spearman", "n_perm": n_perm, "n_boot": n_boot, "seed": seed,
                       "ci_level": 0.95, "bootstrap": "samples resampled within emotion; sets "
                       "over the same sample ids (C, D) resampled jointly"},
        "rows": [{k: v for k, v in r.items() if k != "rho_samples"} for r in rows],
        "bias": bias, "artefacts": hashes, "seconds": round(time.time() - started, 1),
        "python": platform.python_version(), "numpy": np.__version__,
    }
    io.write_json(folder / "manifest.json", manifest)
    return {"rows": rows, "bias": bias, "folder": folder, "sets": sets,
            "quantisation": info_q.get("quantisation"), "protocols": {"B": loose, "C": ref},
            "comprehension": comp_info, "seconds": manifest["seconds"], "profile": profile,
            "estimate": est}

