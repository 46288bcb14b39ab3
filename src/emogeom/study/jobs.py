"""Jobs of a study (model × precision × preset): planning, state on disk, computing.

A job's folder is ``jobs/<label>-<precision>-<preset>-<hash12>``, the hash covering every input
that determines its numbers. A job is done when its ``manifest.json`` exists and every artefact
it lists has the recorded sha256; anything less is recomputed.
"""

from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import emogeom
from emogeom import artefacts as io
from emogeom.errors import EmogeomError
from emogeom.models import resolve_model
from emogeom.models.loading import LoadedModel, ModelSource, slugify
from emogeom.stimuli import Corpus, load_corpus, load_neutral_sentences
from emogeom.study.pipeline import (
    RunSettings,
    add_steering,
    analyse,
    extract_states,
    load_for_run,
    write_model,
)
from emogeom.study.provenance import job_hash, model_fingerprint
from emogeom.study.spec import ModelEntry, StudySpec

# Settings that cannot change a job's numbers, left out of its key (the corpus and neutral
# files enter by content hash, not by path).
_NOT_IN_KEY = ("models", "out", "method", "n_boot", "ci_level", "corpus", "neutral")


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
    settings: RunSettings
    key: dict[str, Any]
    hash: str
    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name


def job_settings(spec: StudySpec, preset: str, precision: str,
                 entry: ModelEntry) -> RunSettings:
    """RunSettings of one job from the study's preset, layer policy and statistics."""
    st = spec.statistics
    return RunSettings.from_preset(
        preset, models=[entry.id], out=str(spec.out_dir), corpus=spec.corpus,
        neutral=spec.neutral, dtype=precision, per_emotion=spec.per_emotion,
        layer_criterion=None if spec.layer_policy == "preset" else spec.layer_policy,
        n_splits=st.splits, n_perm=st.permutations, n_boot=st.bootstrap, ci_level=st.ci_level,
        method=st.method, seed=st.seed, trust_remote_code=entry.trust_remote_code,
        steering=spec.steering,
        # Behaviour depends on the model and precision, not the preset: probe it once.
        behaviour=spec.behaviour and preset == spec.presets[0],
    )


def load_inputs(spec: StudySpec) -> dict[str, Inputs]:
    """Corpus and neutral sentences for each preset of the study (validated now)."""
    out = {}
    for preset in spec.presets:
        s = job_settings(spec, preset, spec.precisions[0], spec.models[0])
        out[preset] = Inputs(load_corpus(s.corpus, per_emotion=s.per_emotion),
                             load_neutral_sentences(s.neutral, n=s.n_neutral))
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
                settings = job_settings(spec, preset, precision, entry)
                data = inputs[preset]
                key = {
                    "model": fingerprint, "precision": precision,
                    "chat_template": entry.chat_template,
                    "trust_remote_code": entry.trust_remote_code,
                    "corpus_sha256": data.corpus.sha256, "neutral_sha256": data.neutral.sha256,
                    "settings": {k: v for k, v in asdict(settings).items()
                                 if k not in _NOT_IN_KEY},
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
    for name, digest in hashes.items():
        path = folder / name
        if not path.exists():
            return "damaged", f"{name} missing"
        if io.file_sha256(path) != digest:
            return "damaged", f"{name} does not match its checksum"
    return "done", ""


def compute_job(job: Job, inputs: Inputs, references: dict[str, np.ndarray],
                console=None) -> dict[str, Any]:
    """Extract and analyse one job (and steer and probe its model when asked), loading the
    model once; returns everything ``write_job`` needs. Pure of the output folder, so it can
    run on a Ray worker."""
    started = time.time()
    lm = load_for_run(job.source, job.settings, console, job.entry.revision)
    states = extract_states(lm, inputs.corpus, inputs.neutral, job.settings, console,
                            job.entry.chat_template)
    extract_s = time.time() - started
    metrics, arrays = analyse(states["stories"], states["neutral"], inputs.corpus,
                              job.settings, references)
    steering = behaviour = None
    if job.settings.steering:
        steering = add_steering(lm, job.settings, metrics, arrays,
                                list(inputs.corpus.emotions), console)
    if job.settings.behaviour:
        behaviour = probe_behaviour(lm, job, console)
        metrics.update({f"behaviour_{k}": v for k, v in behaviour["facets"].items()})
    info = dict(lm.info, chat_template_policy=job.entry.chat_template)
    del lm
    gc.collect()
    return {"states": states, "metrics": metrics, "arrays": arrays, "info": info,
            "steering": steering, "behaviour": behaviour,
            "timings": {"seconds": time.time() - started, "extract_seconds": extract_s}}


def probe_behaviour(lm: LoadedModel, job: Job, console=None) -> dict[str, Any]:
    """MTI Compliance profile of the job's model at its precision (greedy, the job's seed)."""
    from emogeom.behavior.profile import behaviour_profile

    if console is not None:
        console.print(f"{job.label}: behaviour probes ({job.settings.behaviour_tokens} new "
                      "tokens per reply)")
    profile = behaviour_profile(lm, seed=job.settings.seed,
                                max_new_tokens=job.settings.behaviour_tokens)
    profile["model_info"] = lm.info
    return profile


def write_job(job: Job, inputs: Inputs, payload: dict[str, Any]) -> None:
    """Write a computed job's artefacts (manifest last, with every file's checksum); clears
    an earlier failure record."""
    for stale in ("manifest.json", "failed.json"):
        (job.folder / stale).unlink(missing_ok=True)
    more = []
    if payload.get("steering") is not None:
        io.write_json(job.folder / "steering.json", payload["steering"])
        more.append("steering.json")
    if payload.get("behaviour") is not None:
        from emogeom.behavior.profile import save_profile

        profile = dict(payload["behaviour"])
        save_profile(profile, job.folder / "behaviour", profile.pop("model_info"))
        more += ["behaviour/profile.json", "behaviour/dialogues.jsonl"]
    write_model(job.folder, payload["states"], payload["metrics"], payload["arrays"],
                payload["info"], inputs.corpus, inputs.neutral, job.settings,
                payload["timings"],
                extra={"job": {"label": job.label, "family": job.entry.family,
                               "variant": job.entry.variant, "precision": job.precision,
                               "preset": job.preset, "hash": job.hash, "key": job.key}},
                more_artefacts=more)


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
