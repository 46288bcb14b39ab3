"""The backbone run: for each model extract → vectors → RDMs → descriptors, then compare
every pair of models and write the report. Everything lands on disk before it is shown."""

from __future__ import annotations

import gc
import itertools
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import emogeom
from emogeom import artefacts as io
from emogeom import geometry
from emogeom.baselines import BASELINES, BaselineUnavailable, baseline_states
from emogeom.emotions import NEUTRAL, NORMS_CITATION, valence_arousal, valence_groups
from emogeom.errors import EmogeomError
from emogeom.extract import POOLINGS, extract_pooled
from emogeom.models import DTYPES, load_model, resolve_model
from emogeom.models.loading import LoadedModel, ModelSource
from emogeom.models.precision import QUANTISED
from emogeom.stats import (
    METHODS,
    benjamini_hochberg,
    bootstrap_rho,
    ceiled,
    cross_text,
    half_rdm,
    holm,
    layer_max_test,
    linear_cka,
    mantel,
    noise_ceiling,
    partial_mantel,
    procrustes_similarity,
)
from emogeom.stimuli import Corpus, fixed_halves, load_corpus, load_neutral_sentences
from emogeom.study.presets import preset_values

EMBEDDED_DEFAULT = ("smollm2-135m-instruct", "gemma3-270m")
LAYER_CRITERIA = ("reliability", "reference", "text-general")


@dataclass
class RunSettings:
    """Everything that determines a run's numbers (recorded in every manifest)."""

    models: list[str] = field(default_factory=lambda: list(EMBEDDED_DEFAULT))
    corpus: str | None = None
    neutral: str | None = None
    out: str = "out"
    preset: str = "default"
    dtype: str = "fp32"
    per_emotion: int | None = None
    n_neutral: int | None = None
    pooling: str = "mean"
    mean_start: int = 1
    layer_criterion: str = "reliability"
    denoise: float = 0.5
    n_splits: int = 10
    n_perm: int = 10_000
    n_boot: int = 1000
    ci_level: float = 0.95
    method: str = "spearman"
    seed: int = 0
    max_batch_tokens: int = 8192
    trust_remote_code: bool = False
    steering: bool = False
    steering_tokens: int = 40
    behaviour: bool = False
    behaviour_tokens: int = 64


    @classmethod
    def from_preset(cls, preset: str = "default", **overrides: Any) -> RunSettings:
        """Settings of a named preset, with any non-None ``overrides`` on top."""
        values = preset_values(preset)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(preset=preset, **values)


@dataclass
class ModelResult:
    """One model's numbers kept in memory for the comparisons (all also on disk)."""

    slug: str
    metrics: dict[str, Any]
    rdms: np.ndarray  # [L, E, E]
    vectors: np.ndarray  # best layer [E, d]
    acts: np.ndarray  # best layer, after any denoising [N, d]
    half_rdms: np.ndarray  # [2, L, E, E] from the corpus's fixed halves

    @property
    def rdm(self) -> np.ndarray:
        return self.rdms[self.metrics["best_layer"]]


def validate(settings: RunSettings) -> tuple[list[ModelSource], Corpus, Corpus]:
    """Check every input before anything is computed or written; one-line errors."""
    if settings.dtype not in (*DTYPES, *QUANTISED):
        raise EmogeomError(f"unknown dtype '{settings.dtype}' "
                           f"(use one of: {', '.join((*DTYPES, *QUANTISED))})")
    if settings.pooling not in POOLINGS:
        raise EmogeomError(f"unknown pooling '{settings.pooling}' (use: {', '.join(POOLINGS)})")
    if settings.layer_criterion not in LAYER_CRITERIA:
        raise EmogeomError(f"unknown layer criterion '{settings.layer_criterion}' "
                           f"(use: {', '.join(LAYER_CRITERIA)})")
    if not 0.0 <= settings.denoise < 1.0:
        raise EmogeomError("--denoise is a variance fraction in [0, 1); 0 turns it off")
    if settings.n_perm < 1 or settings.n_splits < 1 or settings.n_boot < 1:
        raise EmogeomError("permutations, splits and bootstrap samples must be at least 1")
    if settings.method not in METHODS:
        raise EmogeomError(f"unknown comparison method '{settings.method}' "
                           f"(use: {', '.join(METHODS)})")
    if not 0 < settings.ci_level < 1:
        raise EmogeomError("--ci-level must lie between 0 and 1 (e.g. 0.95)")
    if not settings.models:
        raise EmogeomError("no models given")
    sources = [resolve_model(m) for m in settings.models]
    slugs = [s.slug for s in sources]
    if len(set(slugs)) != len(slugs):
        raise EmogeomError(f"two models share an output folder name: {slugs}; give distinct ones")
    out = Path(settings.out)
    if out.exists() and not out.is_dir():
        raise EmogeomError(f"--out {out} exists and is not a folder")
    if settings.per_emotion is not None and settings.per_emotion < 2:
        raise EmogeomError("--per-emotion must be at least 2 (vectors need 2 stories each)")
    return (sources, load_corpus(settings.corpus, per_emotion=settings.per_emotion),
            load_neutral_sentences(settings.neutral, n=settings.n_neutral))


def analyse(
    acts: np.ndarray, neutral: np.ndarray, corpus: Corpus, settings: RunSettings,
    references: dict[str, np.ndarray] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Geometry of one model from pooled states: metrics, and arrays ``vectors`` [L, E, d],
    ``rdms`` [L, E, E], ``half_rdms`` [2, L, E, E] (the corpus's fixed halves) and ``acts``
    (best layer after any denoising, [N, d]). ``references`` (name → RDM: the human
    valence-arousal RDM, text baselines) get a ρ profile over layers and a Mantel p at the
    best layer."""
    emotions = list(corpus.emotions)
    references = references or {}
    if settings.denoise > 0:
        acts = geometry.project_out_neutral_pcs(acts, neutral, settings.denoise)
    vectors = geometry.emotion_vectors(acts, corpus.labels, emotions)
    rdms = geometry.cosine_rdm(vectors)
    halves = fixed_halves(corpus)
    rel = geometry.layer_reliability(acts, corpus.labels, emotions, settings.n_splits,
                                     settings.seed, fixed=halves)
    half_rdms = np.stack([half_rdm(acts, corpus.labels, emotions, h) for h in halves])
    aniso = geometry.anisotropy(neutral)
    ref_layer = geometry.reference_best_layer(vectors)
    rel_layer = geometry.best_layer(rel["reliability"])
    general_layer = geometry.best_layer(rel["split_half_fixed"])
    best = {"reliability": rel_layer, "reference": ref_layer,
            "text-general": general_layer}[settings.layer_criterion]
    n_layers = acts.shape[0]
    pos, neg = valence_groups(emotions)
    within, between = geometry.group_distances(rdms[best], emotions, pos, neg)
    # PCA over the 20 emotions: neutral sits far from all of them and would own PC1.
    feeling = [i for i, e in enumerate(emotions) if e != NEUTRAL]
    pc_r = geometry.pc_correlations(vectors[best][feeling],
                                    valence_arousal([emotions[i] for i in feeling]), n_pcs=3)
    best_pc = 0 if np.all(np.isnan(pc_r[:, 0])) else int(np.nanargmax(pc_r[:, 0]))
    metrics = {
        "n_layers": n_layers,
        "best_layer": best,
        "best_layer_depth": best / max(n_layers - 1, 1),
        "best_layer_criterion": settings.layer_criterion,
        "best_layer_reliability": rel_layer,
        "best_layer_reference": ref_layer,
        "best_layer_text_general": general_layer,
        "anisotropy": aniso,
        "anisotropy_at_best": float(aniso[best]),
        "rdm_std": geometry.rdm_std(rdms),
        "rdm_std_at_best": float(geometry.rdm_std(rdms[best])),
        "reliability": rel["reliability"],
        "split_half": rel["split_half"],
        "split_half_fixed": rel["split_half_fixed"],
        "reliability_at_best": float(rel["reliability"][best]),
        "valence_within": within,
        "valence_between": between,
        "pc1_valence_abs_r": float(pc_r[0, 0]),
        "pc1_arousal_abs_r": float(pc_r[0, 1]),
        "best_pc_valence": best_pc + 1,
        "best_pc_valence_abs_r": float(pc_r[best_pc, 0]),
        "pc_note": "PCA (first 3 PCs) of the best-layer vectors of the emotions other than neutral",
        "norms": NORMS_CITATION,
        "layer_definition": "output of decoder block i (0-based), before any final norm",
    }
    model_upper = geometry.upper(rdms)
    for name, ref in references.items():
        profile = geometry.rowwise_spearman(model_upper, geometry.upper(ref)[None])
        rho, p = mantel(rdms[best], ref, "spearman", settings.n_perm, settings.seed)
        metrics[f"rho_{name}"] = profile
        metrics[f"rho_{name}_at_best"], metrics[f"p_{name}_at_best"] = rho, p
    arrays = {"vectors": vectors, "rdms": rdms, "half_rdms": half_rdms, "acts": acts[best]}
    return metrics, arrays


def load_for_run(source: ModelSource, settings: RunSettings, console: Console | None,
                 revision: str | None = None) -> LoadedModel:
    """Load a model at the settings' dtype, with a spinner and a line when there is a console."""
    if console is None:
        return load_model(source, settings.dtype, revision=revision,
                          trust_remote_code=settings.trust_remote_code)
    with console.status(f"loading {source.spec} ({settings.dtype})..."):
        lm = load_model(source, settings.dtype, revision=revision,
                        trust_remote_code=settings.trust_remote_code)
    console.print(f"loaded {source.spec}: {lm.info['architecture']}, "
                  f"{lm.info['n_layers']} layers, d={lm.info['d_model']}")
    return lm


def story_texts(lm, texts: list[str], chat_template: str) -> tuple[list[str], bool]:
    """Texts as the model reads them: ``raw`` (as written, with the tokenizer's special
    tokens) or ``chat`` (each story as one user message in the model's chat template)."""
    if chat_template == "raw":
        return texts, True
    if chat_template != "chat":
        raise EmogeomError(f"unknown chat-template policy '{chat_template}' (use raw or chat)")
    tok = lm.tokenizer
    if not getattr(tok, "chat_template", None):
        raise EmogeomError(f"model '{lm.source.spec}' has no chat template; "
                           "use chat_template: raw for it")
    return [tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False,
                                    add_generation_prompt=True) for t in texts], False


def extract_states(
    lm: LoadedModel, corpus: Corpus, neutral: Corpus, settings: RunSettings,
    console: Console | None = None, chat_template: str = "raw",
) -> dict[str, np.ndarray]:
    """Pooled states {stories, neutral} [L, N, d] of a loaded model."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, disable=console is None) as bar:
        states = {}
        for name, part in (("stories", corpus), ("neutral", neutral)):
            texts, special = story_texts(lm, list(part.texts), chat_template)
            task = bar.add_task(f"{lm.source.slug}: {name}", total=len(texts))
            states[name] = extract_pooled(
                lm.model, lm.tokenizer, texts, settings.pooling, settings.mean_start,
                max_batch_tokens=settings.max_batch_tokens, add_special_tokens=special,
                on_batch=lambda n, t=task: bar.advance(t, n),
            )
    return states


def write_model(
    folder: Path, states: dict[str, np.ndarray], metrics: dict[str, Any],
    arrays: dict[str, np.ndarray], info: dict[str, Any], corpus: Corpus, neutral: Corpus,
    settings: RunSettings, timings: dict[str, float], extra: dict[str, Any] | None = None,
    more_artefacts: list[str] | None = None,
) -> None:
    """Write one model's artefacts, each atomically; ``manifest.json`` goes last and holds
    the sha256 of every other file, so a folder without it is unfinished."""
    emotions = list(corpus.emotions)
    best = metrics["best_layer"]
    hashes = {
        "activations.safetensors": io.write_tensors(
            folder / "activations.safetensors", states,
            {"stimulus_ids": [s.id for s in corpus.stimuli], "labels": corpus.labels,
             "neutral_ids": [s.id for s in neutral.stimuli]}),
        "vectors.safetensors": io.write_tensors(
            folder / "vectors.safetensors",
            {"vectors": arrays["vectors"].astype(np.float32)},
            {"emotions": emotions, "denoise": settings.denoise}),
        "analysis.safetensors": io.write_tensors(
            folder / "analysis.safetensors",
            {"half_rdms": arrays["half_rdms"], "acts_best": arrays["acts"]},
            {"emotions": emotions, "best_layer": best}),
    }
    io.write_json(folder / "metrics.json", metrics)
    io.write_rdm_csv(folder / "rdm.csv", arrays["rdms"][best], emotions)
    for name in ("metrics.json", "rdm.csv", *(more_artefacts or [])):
        hashes[name] = io.file_sha256(folder / name)
    manifest = {
        "emogeom": emogeom.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": info,
        "corpus": {"path": corpus.source, "sha256": corpus.sha256,
                   "n_stimuli": len(corpus.stimuli), "per_emotion": corpus.counts()},
        "neutral": {"path": neutral.source, "sha256": neutral.sha256,
                    "n": len(neutral.stimuli)},
        "settings": {k: v for k, v in asdict(settings).items() if k not in ("models", "out")},
        **(extra or {}),
        "artefacts": hashes,
        "seconds": round(timings.get("seconds", 0.0), 1),
        "extract_seconds": round(timings.get("extract_seconds", 0.0), 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    io.write_json(folder / "manifest.json", manifest)


def load_result(folder: Path, slug: str) -> ModelResult:
    """A model's numbers back from its artefacts (no model loaded)."""
    metrics = io.read_json(folder / "metrics.json")
    vectors = io.read_tensors(folder / "vectors.safetensors")[0]["vectors"].astype(np.float64)
    extra = io.read_tensors(folder / "analysis.safetensors")[0]
    return ModelResult(slug, metrics, geometry.cosine_rdm(vectors),
                       vectors[metrics["best_layer"]], extra["acts_best"], extra["half_rdms"])


def add_steering(
    lm: LoadedModel, settings: RunSettings, metrics: dict[str, Any],
    arrays: dict[str, np.ndarray], emotions: list[str], console: Console | None = None,
) -> dict[str, Any]:
    """Steer the model along its own best-layer vectors (both default scenarios, the default
    strength grid, greedy) and add both regimes to ``metrics``; returns the full record."""
    from emogeom.steering.run import steering_regime

    best = metrics["best_layer"]
    if console is not None:
        console.print(f"{lm.source.slug}: steering at layer {best} "
                      f"({settings.steering_tokens} new tokens per output)")
    record = steering_regime(lm, arrays["vectors"][best], emotions, best,
                             max_new_tokens=settings.steering_tokens, seed=settings.seed)
    for key in ("regime_reference", "onset_reference", "regime_perplexity",
                "onset_perplexity"):
        metrics[f"steering_{key}"] = record[key]
    return record


def run_model(
    source: ModelSource, corpus: Corpus, neutral: Corpus, settings: RunSettings,
    console: Console | None, references: dict[str, np.ndarray] | None = None,
) -> ModelResult:
    """Load one model, extract, analyse (and steer), and write its artefacts to
    OUT/<slug>/."""
    started = time.time()
    lm = load_for_run(source, settings, console)
    states = extract_states(lm, corpus, neutral, settings, console)
    extract_s = time.time() - started
    metrics, arrays = analyse(states["stories"], states["neutral"], corpus, settings,
                              references)
    if settings.steering:
        io.write_json(Path(settings.out) / source.slug / "steering.json", add_steering(
            lm, settings, metrics, arrays, list(corpus.emotions), console))
    info = dict(lm.info, chat_template_policy="raw")
    del lm
    gc.collect()
    write_model(Path(settings.out) / source.slug, states, metrics, arrays, info, corpus,
                neutral, settings, {"seconds": time.time() - started,
                                    "extract_seconds": extract_s})
    best = metrics["best_layer"]
    return ModelResult(source.slug, metrics, arrays["rdms"], arrays["vectors"][best],
                       arrays["acts"], arrays["half_rdms"])


COMPARISON_COLUMNS = [
    "model_a", "model_b", "layer_a", "layer_b", "method", "rho", "ci_low", "ci_high", "p_perm",
    "p_holm", "p_bh", "ceiling", "rho_ceiled", "cka", "procrustes", "rho_max_layers",
    "layer_a_max", "layer_b_max", "p_max_layers",
    "rho_cross_text", "ci_cross_text_low", "ci_cross_text_high", "p_cross_text",
    "rho_within_a", "ci_within_a_low", "ci_within_a_high", "p_within_a",
    "rho_within_b", "ci_within_b_low", "ci_within_b_high", "p_within_b",
    "rho_partial_text", "p_partial_text", "rho_partial_tfidf", "p_partial_tfidf",
    "rho_partial_surface", "p_partial_surface", "rho_partial_minilm", "p_partial_minilm",
    "rho_human_a", "p_human_a", "rho_human_b", "p_human_b",
]


def reference_rdms(
    corpus: Corpus, console: Console | None = None
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The human valence-arousal RDM and the text-baseline RDMs of the corpus; an optional
    baseline whose package is missing is skipped with its reason."""
    emotions = list(corpus.emotions)
    refs = {"human": geometry.rating_rdm(valence_arousal(emotions))}
    skipped = {}
    for name in BASELINES:
        try:
            states = baseline_states(name, corpus.texts)
        except BaselineUnavailable as exc:
            skipped[name] = str(exc)
            if console is not None:
                console.print(f"[yellow]note:[/] {exc}", soft_wrap=True)
            continue
        refs[name] = geometry.cosine_rdm(
            geometry.emotion_vectors(states, corpus.labels, emotions))[0]
    return refs, skipped


def compare(
    results: list[ModelResult], corpus: Corpus, settings: RunSettings,
    references: dict[str, np.ndarray] | None = None,
) -> list[dict[str, Any]]:
    """Every model pair at its best layers: ρ with Mantel p, stimulus-bootstrap CI, noise
    ceiling, Holm/BH over pairs, CKA and Procrustes on the vectors, and the ρ maximised over
    all layer pairs with its max-statistic p."""
    rows = []
    for a, b in itertools.combinations(results, 2):
        rho, p = mantel(a.rdm, b.rdm, settings.method, settings.n_perm, settings.seed)
        boot = bootstrap_rho(a.acts, b.acts, corpus.labels, corpus.emotions, settings.method,
                             settings.n_boot, settings.seed, settings.ci_level)
        rel_a, rel_b = a.metrics["reliability_at_best"], b.metrics["reliability_at_best"]
        row = {"model_a": a.slug, "model_b": b.slug,
               "layer_a": a.metrics["best_layer"], "layer_b": b.metrics["best_layer"],
               "method": settings.method, "rho": rho, "ci_low": boot["ci_low"],
               "ci_high": boot["ci_high"], "p_perm": p,
               "ceiling": noise_ceiling(rel_a, rel_b), "rho_ceiled": ceiled(rho, rel_a, rel_b),
               "cka": linear_cka(a.vectors, b.vectors),
               "procrustes": procrustes_similarity(a.vectors, b.vectors)}
        row.update(text_controls(a, b, corpus, settings, references or {}))
        if settings.method != "kendall":
            search = layer_max_test(a.rdms, b.rdms, settings.method, settings.n_perm,
                                    settings.seed)
            row.update({"rho_max_layers": search["rho_max"], "layer_a_max": search["layer_a"],
                        "layer_b_max": search["layer_b"], "p_max_layers": search["p_max"]})
        rows.append(row)
    p_values = np.array([r["p_perm"] for r in rows])
    for r, ph, pb in zip(rows, holm(p_values), benjamini_hochberg(p_values)):
        r["p_holm"], r["p_bh"] = float(ph), float(pb)
    return rows


def text_controls(
    a: ModelResult, b: ModelResult, corpus: Corpus, settings: RunSettings,
    references: dict[str, np.ndarray],
) -> dict[str, Any]:
    """Is the agreement the models' or the texts'? Cross-text ρ over the corpus's fixed
    halves, ρ partialling out each text baseline and all of them, and each model's ρ with the
    human reference."""
    # Cross-text and partial ρ are defined for Spearman and Pearson; other methods use Spearman.
    method = settings.method if settings.method == "pearson" else "spearman"
    row = cross_text(a.acts, b.acts, corpus.labels, corpus.emotions, fixed_halves(corpus),
                     method, settings.n_perm, settings.n_boot, settings.seed, settings.ci_level)
    text = {k: v for k, v in references.items() if k != "human"}
    if text:
        row["rho_partial_text"], row["p_partial_text"] = partial_mantel(
            a.rdm, b.rdm, list(text.values()), method, settings.n_perm, settings.seed)
        for name, ref in text.items():
            row[f"rho_partial_{name}"], row[f"p_partial_{name}"] = partial_mantel(
                a.rdm, b.rdm, [ref], method, settings.n_perm, settings.seed)
    for side, res in (("a", a), ("b", b)):
        row[f"rho_human_{side}"] = res.metrics.get("rho_human_at_best")
        row[f"p_human_{side}"] = res.metrics.get("p_human_at_best")
    lb = b.metrics["best_layer"]
    # Profiles over a's layers with b at its chosen layer: same texts vs disjoint halves.
    ua, ub = geometry.upper(a.rdms), geometry.upper(b.rdms[lb])[None]
    h_a, h_b = geometry.upper(a.half_rdms), geometry.upper(b.half_rdms[:, lb])
    row["profile_same_text"] = geometry.rowwise_spearman(ua, ub)
    row["profile_cross_text"] = (geometry.rowwise_spearman(h_a[0], h_b[1][None])
                                 + geometry.rowwise_spearman(h_a[1], h_b[0][None])) / 2
    row["profile_layer_b"] = lb
    return row


def run_study(settings: RunSettings, console: Console | None = None) -> dict[str, Any]:
    """Validate, run every model, compare, write ``comparisons.csv`` and ``report.html``."""
    from emogeom.report import build_report

    sources, corpus, neutral = validate(settings)
    out = Path(settings.out)
    references, skipped = reference_rdms(corpus, console)
    for name, rdm in references.items():
        io.write_rdm_csv(out / "references" / f"{name}_rdm.csv", rdm, list(corpus.emotions))
    io.write_json(out / "references" / "references.json",
                  {"available": list(references), "skipped": skipped,
                   "human": NORMS_CITATION + " RDM = Euclidean distance in (valence, arousal)."})
    results = [run_model(s, corpus, neutral, settings, console, references) for s in sources]
    rows = compare(results, corpus, settings, references)
    io.write_csv(out / "comparisons.csv", COMPARISON_COLUMNS,
                 [[io.csv_cell(r.get(c)) for c in COMPARISON_COLUMNS] for r in rows])
    io.write_json(out / "profiles.json", [
        {"model_a": r["model_a"], "model_b": r["model_b"], "layer_b": r["profile_layer_b"],
         "same_text": r["profile_same_text"], "cross_text": r["profile_cross_text"]}
        for r in rows])
    report = build_report(out, [r.slug for r in results])
    return {"results": results, "comparisons": rows, "report": report,
            "n_stimuli": len(corpus.stimuli), "n_emotions": len(corpus.emotions)}
