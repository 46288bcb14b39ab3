"""Jobs of a study (model × precision × preset): planning, state on disk, computing, writing.

A job's folder is ``jobs/<label>-<precision>-<preset>-<hash12>``, the hash covering every input
that determines its numbers. A job is done when its ``manifest.json`` exists and every artefact
it lists has the recorded sha256; anything less is recomputed.
"""

from __future__ import annotations

import gc
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import emogeom
from emogeom import artefacts as io
from emogeom.analysis import Geometry, analyse
from emogeom.config import ModelEntry, Settings, StudySpec, settings_key
from emogeom.errors import EmogeomError
from emogeom.models import resolve_model
from emogeom.models.loading import LoadedModel, ModelSource, slugify
from emogeom.progress import Progress
from emogeom.stimuli import Corpus, fixed_halves, load_corpus, load_neutral_sentences
from emogeom.study.provenance import job_hash, model_fingerprint


@dataclass(frozen=True)
class Inputs:
    """A preset's stimuli: the story corpus and the neutral sentences."""

    corpus: Corpus
    neutral: Corpus


@dataclass(frozen=True)
class Job:
    """One unit of work: everything needed to compute it, here or on a Ray worker."""

    label: str
    entry: ModelEntry
    source: ModelSource
    precision: str
    preset: str
    settings: Settings
    key: dict[str, Any]
    hash: str
    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name


def load_inputs(spec: StudySpec) -> dict[str, Inputs]:
    """Corpus and neutral sentences for each preset of the study (validated now)."""
    out = {}
    for preset in spec.presets:
        ext = spec.settings(preset, spec.precisions[0], spec.models[0]).extraction
        out[preset] = Inputs(load_corpus(spec.corpus, per_emotion=ext.per_emotion,
                                         columns=spec.corpus_columns),
                             load_neutral_sentences(spec.neutral, n=ext.n_neutral))
    return out


def plan_jobs(spec: StudySpec, inputs: dict[str, Inputs],
              references: dict[str, list[str]]) -> list[Job]:
    """Every model × precision × preset job with its provenance key and folder."""
    jobs = []
    fingerprints = {}
    for entry in spec.models:
        source = resolve_model(entry.id)
        fingerprints[entry.id] = (source, model_fingerprint(source, entry.revision))
    for preset in spec.presets:
        for precision in spec.precisions:
            for entry in spec.models:
                source, fingerprint = fingerprints[entry.id]
                settings = spec.settings(preset, precision, entry)
                data = inputs[preset]
                key = {
                    "model": fingerprint, "precision": precision,
                    "chat_template": entry.chat_template,
                    "trust_remote_code": entry.trust_remote_code,
                    "corpus_sha256": data.corpus.sha256, "neutral_sha256": data.neutral.sha256,
                    "settings": settings_key(settings),
                    "references": sorted(references[preset]),
                    "emogeom": emogeom.__version__,
                }
                digest = job_hash(key)
                folder = (spec.out_dir / "jobs"
                          / f"{slugify(entry.name)}-{precision}-{preset}-{digest[:12]}")
                jobs.append(Job(entry.name, entry, source, precision, preset, settings, key,
                                digest, folder))
    return jobs


def job_state(folder: Path) -> tuple[str, str]:
    """(``done`` | ``pending`` | ``failed`` | ``damaged``, detail) from the files on disk."""
    manifest = folder / "manifest.json"
    if not manifest.exists():
        failed = folder / "failed.json"
        if failed.exists():
            try:
                return "failed", io.read_json(failed).get("error", "")
            except ValueError:
                return "failed", "failed.json unreadable"
        partial = folder.exists() and any(folder.iterdir())
        return "pending", "partial files from an interrupted run" if partial else ""
    try:
        hashes = io.read_json(manifest)["artefacts"]
    except (ValueError, KeyError, TypeError):
        return "damaged", "manifest.json unreadable"
    damage = io.first_damage(folder, hashes) if isinstance(hashes, dict) else \
        "manifest.json has no checksums"
    return ("damaged", damage) if damage else ("done", "")


@dataclass(frozen=True)
class ModelTask:
    """The unfinished jobs of one model at one precision: the model is loaded once and reads
    the stories once for all of them (every pooling in the same hooked pass); each job is
    then analysed and written on its own, under its own hash."""

    jobs: tuple[Job, ...]
    device: str | None = None
    max_memory: dict | None = None

    @property
    def name(self) -> str:
        first = self.jobs[0]
        return f"{first.label} ({first.precision}: {', '.join(j.preset for j in self.jobs)})"


def group_jobs(jobs: list[Job], device: str | None = None,
               max_memory: dict | None = None) -> list[ModelTask]:
    """Jobs grouped by model and precision, in plan order; a model's own device wins over
    the study's."""
    groups: dict[tuple[str, str], list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.label, job.precision), []).append(job)
    return [ModelTask(tuple(g), g[0].entry.device or device, max_memory)
            for g in groups.values()]


def load_for_job(job: Job, device: str | None = None, max_memory: dict | None = None,
                 progress: Progress | None = None) -> LoadedModel:
    """Load a job's model at its precision on its device, with a note before and after."""
    from emogeom.models import load_model
    from emogeom.models.devices import job_device

    ext = job.settings.extraction
    if progress is not None:
        progress(f"loading {job.source.spec} ({ext.dtype})...")
    lm = load_model(job.source, ext.dtype, revision=job.entry.revision,
                    trust_remote_code=job.settings.trust_remote_code,
                    device=job_device(device or "auto"), max_memory=max_memory)
    if progress is not None:
        progress(f"loaded {job.source.spec}: {lm.info['architecture']}, "
                 f"{lm.info['n_layers']} layers, d={lm.info['d_model']}")
    return lm


def geometry_of(lm: LoadedModel, inputs: Inputs, settings: Settings,
                references: dict[str, np.ndarray], name: str,
                progress: Progress | None = None) -> tuple[dict[str, np.ndarray], Geometry]:
    """Pooled states and the geometry of a loaded model under one settings: the path from a
    model to its numbers used by ``emogeom.extract``."""
    from emogeom.extraction.read import read_states

    states = read_states(lm.model, lm.tokenizer, inputs.corpus, inputs.neutral,
                         settings.extraction, progress, name)
    return states, _analyse(lm, inputs, settings, references, name, states)


def _analyse(lm: LoadedModel, inputs: Inputs, settings: Settings,
             references: dict[str, np.ndarray], name: str,
             states: dict[str, np.ndarray]) -> Geometry:
    return analyse(states["stories"], states["neutral"], inputs.corpus,
                   fixed_halves(inputs.corpus), settings, references, name,
                   dict(lm.info, chat_template_policy=settings.extraction.chat_template))


def _rows(part: Corpus, union: Corpus) -> np.ndarray | None:
    """Where ``part``'s texts sit in ``union`` (None unless every one is there, in order of
    ``part``)."""
    where = {(s.emotion, s.id, s.text): i for i, s in enumerate(union.stimuli)}
    rows = [where.get((s.emotion, s.id, s.text)) for s in part.stimuli]
    return None if any(r is None for r in rows) else np.array(rows)


def shared_passes(task: ModelTask, inputs: dict[str, Inputs]) -> list[tuple[Inputs, list[Job]]]:
    """Which jobs can read their texts in one pass: those with the same reading settings
    (mean start, token budget, chat policy) whose stories and neutral sentences are subsets
    of the largest corpus among them. Each pass: (union inputs, its jobs)."""
    passes: list[tuple[Inputs, list[Job]]] = []
    keyed: dict[tuple, list[Job]] = {}
    for job in task.jobs:
        ext = job.settings.extraction
        keyed.setdefault((ext.mean_start, ext.max_batch_tokens, ext.chat_template,
                        ext.truncate), []).append(job)
    for group in keyed.values():
        union = max((inputs[j.preset] for j in group),
                    key=lambda x: (len(x.corpus.stimuli), len(x.neutral.stimuli)))
        fits = [j for j in group if _rows(inputs[j.preset].corpus, union.corpus) is not None
                and _rows(inputs[j.preset].neutral, union.neutral) is not None]
        if fits:
            passes.append((union, fits))
        passes += [(inputs[j.preset], [j]) for j in group if j not in fits]
    return passes


def task_estimate(lm: LoadedModel, task: ModelTask, inputs: dict[str, Inputs]) -> str:
    """The estimate line of one model task (its texts read once per shared pass, plus steering
    and behaviour replies when asked), timed by a warm-up on a batch of its first texts."""
    from emogeom.behavior.profile import n_steps
    from emogeom.config import Behaviour
    from emogeom.models.timing import Work, count, estimate, text_tokens, warm_up
    from emogeom.steering.dose import DEFAULT_SCENARIOS, DEFAULT_STRENGTHS

    passes = shared_passes(task, inputs)
    texts = [t for union, _ in passes for t in (*union.corpus.texts, *union.neutral.texts)]
    works = [Work(read_tokens=text_tokens(lm.tokenizer, texts))]
    what = f"{task.name}: reading {count(len(texts))} texts"
    extra = []
    for job in task.jobs:
        if job.settings.steering:
            n = len(DEFAULT_SCENARIOS) * len(DEFAULT_STRENGTHS)
            works.append(Work(n, job.settings.steering_tokens, 1, 40, n * 80))
            extra.append(f"{n} steered outputs × {job.settings.steering_tokens} tokens")
        if job.settings.behaviour:
            n = n_steps(Behaviour())
            works.append(Work(n, job.settings.behaviour_tokens, 1, 200))
            extra.append(f"{n} behaviour replies × {job.settings.behaviour_tokens} tokens")
    if extra:
        what += " + " + " + ".join(extra)
    sample = lm.tokenizer(list(texts[:8]))["input_ids"]
    return estimate(what, works, warm_up(lm, sample, 2),
                    ["--per-emotion", "fewer models or precisions"]).line()


def compute_job(task: ModelTask, inputs: dict[str, Inputs],
                references: dict[str, dict[str, np.ndarray]],
                progress: Progress | None = None) -> dict[str, dict[str, Any]]:
    """Compute every job of a model task, loading the model once and reading each shared set
    of texts once; returns {job name: everything ``write_job`` needs}. Pure of the output
    folder, so it can run on a Ray worker."""
    from emogeom.extraction.read import read_poolings

    started = time.time()
    lm = load_for_job(task.jobs[0], task.device, task.max_memory, progress)
    if progress is not None:
        progress(task_estimate(lm, task, inputs))
    payloads = {}
    for union, jobs in shared_passes(task, inputs):
        poolings = tuple(dict.fromkeys(j.settings.extraction.pooling for j in jobs))
        read_started = time.time()
        stats: dict[str, int] = {}
        states = read_poolings(lm.model, lm.tokenizer, union.corpus, union.neutral,
                               jobs[0].settings.extraction, poolings, progress, jobs[0].label,
                               stats)
        read_s = time.time() - read_started
        for job in jobs:
            data = inputs[job.preset]
            rows = _rows(data.corpus, union.corpus)
            neutral_rows = _rows(data.neutral, union.neutral)
            own = states[job.settings.extraction.pooling]
            job_states = {"stories": np.ascontiguousarray(own["stories"][:, rows]),
                          "neutral": np.ascontiguousarray(own["neutral"][:, neutral_rows])}
            geom = _analyse(lm, data, job.settings, references[job.preset], job.label,
                            job_states)
            steering = behaviour = None
            if job.settings.steering:
                steering = add_steering(lm, job.settings, geom, progress)
            if job.settings.behaviour:
                behaviour = probe_behaviour(lm, job, progress)
                geom.metrics.update({f"behaviour_{k}": v
                                     for k, v in behaviour["facets"].items()})
            payloads[job.name] = {
                "states": job_states, "geometry": geom, "steering": steering,
                "behaviour": behaviour,
                "read": {"texts": len(union.corpus.stimuli) + len(union.neutral.stimuli),
                         "poolings": list(poolings), "shared_with": [j.name for j in jobs],
                         **stats},
                "timings": {"seconds": time.time() - started, "extract_seconds": read_s}}
    del lm
    gc.collect()
    return payloads


def add_steering(lm: LoadedModel, settings: Settings, geom: Geometry,
                 progress: Progress | None = None) -> dict[str, Any]:
    """Steer the model along its own best-layer vectors (both default scenarios, the default
    strength grid, greedy) and add both regimes to the geometry's metrics."""
    from emogeom.steering.run import steering_regime

    best = geom.best_layer
    if progress is not None:
        progress(f"{geom.name}: steering at layer {best} ({settings.steering_tokens} new "
                 "tokens per output)")
    record = steering_regime(lm, geom.vectors[best].astype(np.float64), geom.emotions, best,
                             max_new_tokens=settings.steering_tokens,
                             seed=settings.statistics.seed)
    for key in ("regime_reference", "onset_reference", "regime_perplexity",
                "onset_perplexity"):
        geom.metrics[f"steering_{key}"] = record[key]
    return record


def probe_behaviour(lm: LoadedModel, job: Job, progress: Progress | None = None
                    ) -> dict[str, Any]:
    """MTI Compliance profile of the job's model at its precision (greedy, the job's seed)."""
    from emogeom.behavior.profile import behaviour_profile

    if progress is not None:
        progress(f"{job.label}: behaviour probes ({job.settings.behaviour_tokens} new tokens "
                 "per reply)")
    profile = behaviour_profile(lm, seed=job.settings.statistics.seed,
                                max_new_tokens=job.settings.behaviour_tokens)
    profile["model_info"] = lm.info
    return profile


def write_job(job: Job, inputs: Inputs, payload: dict[str, Any]) -> None:
    """Write a computed job's artefacts (manifest last, with every file's checksum); clears
    an earlier failure record."""
    folder = job.folder
    for stale in ("manifest.json", "failed.json"):
        (folder / stale).unlink(missing_ok=True)
    geom: Geometry = payload["geometry"]
    corpus, neutral = inputs.corpus, inputs.neutral
    hashes = {"activations.safetensors": io.write_tensors(
        folder / "activations.safetensors", payload["states"],
        {"stimulus_ids": [s.id for s in corpus.stimuli], "labels": corpus.labels,
         "neutral_ids": [s.id for s in neutral.stimuli]})}
    hashes.update(geom.save(folder))
    if payload.get("steering") is not None:
        io.write_json(folder / "steering.json", payload["steering"])
        hashes["steering.json"] = io.file_sha256(folder / "steering.json")
    if payload.get("behaviour") is not None:
        from emogeom.behavior.profile import save_profile

        profile = dict(payload["behaviour"])
        save_profile(profile, folder / "behaviour", profile.pop("model_info"))
        for name in ("behaviour/profile.json", "behaviour/dialogues.jsonl"):
            hashes[name] = io.file_sha256(folder / name)
    timings = payload["timings"]
    io.write_json(folder / "manifest.json", {
        "emogeom": emogeom.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": geom.model_info,
        "corpus": {"path": corpus.source, "sha256": corpus.sha256,
                   "n_stimuli": len(corpus.stimuli), "per_emotion": corpus.counts(),
                   "styles": {st: sum(s.style == st for s in corpus.stimuli)
                              for st in corpus.styles}},
        "neutral": {"path": neutral.source, "sha256": neutral.sha256,
                    "n": len(neutral.stimuli)},
        "settings": geom.settings,
        "layer_choice": layer_choice(geom.metrics),
        "read": payload.get("read"),
        "job": {"label": job.label, "family": job.entry.family, "variant": job.entry.variant,
                "precision": job.precision, "preset": job.preset, "hash": job.hash,
                "key": job.key},
        "artefacts": hashes,
        "seconds": round(timings.get("seconds", 0.0), 1),
        "extract_seconds": round(timings.get("extract_seconds", 0.0), 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
    })


def layer_choice(m: dict[str, Any]) -> dict[str, Any]:
    """The chosen layer, its rule, and the layer each rule would pick with its reliability and
    cross-style ρ, so that a reader sees what the choice of rule changed."""
    picks = {rule: m.get(f"best_layer_{rule}") for rule in ("reliability", "general",
                                                            "reference")}

    def at(key: str, layer: Any) -> Any:
        series = m.get(key)
        return series[layer] if isinstance(series, list) and layer is not None else None

    return {"criterion": m.get("best_layer_criterion"), "chosen": m.get("best_layer"),
            "cross_style_split": m.get("cross_style_split"),
            "by_rule": {rule: {"layer": layer, "reliability": at("reliability", layer),
                               "cross_style": at("cross_style", layer)}
                        for rule, layer in picks.items()}}


def record_failure(job: Job, error: BaseException) -> None:
    """Leave ``failed.json`` (the error in one line) so ``study status`` can show it."""
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    io.write_json(job.folder / "failed.json",
                  {"error": f"{type(error).__name__}: {message}",
                   "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "job": job.key})


def require_done(jobs: list[Job]) -> None:
    """Raise unless every job is done (used before a report that needs them all)."""
    missing = [j.name for j in jobs if job_state(j.folder)[0] != "done"]
    if missing:
        raise EmogeomError(f"{len(missing)} job(s) not finished (e.g. {missing[0]}); "
                           "run `emogeom study run` first")
