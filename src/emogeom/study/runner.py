"""Run a study: plan jobs, skip finished ones, compute the rest (locally or on Ray), then
compare every pair that differs by one factor and write tables and the report.

Study folder: ``jobs/<job>/`` (per-job artefacts, written as each job finishes) and the
top-level outputs ``study.json``, ``references/``, ``descriptors.csv``, ``comparisons.csv``,
``base_instruct.csv``, ``profiles.json``, ``behaviour_link.json``, ``figures/`` and
``report.html``. Top-level outputs are built in a staging folder and moved into place only
when every job has succeeded: a failed or interrupted study leaves the previous ones as they
were.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

import emogeom
from emogeom import artefacts as io
from emogeom.analysis import COLUMNS, Comparison, Geometry, compare, correct
from emogeom.config import StudySpec
from emogeom.emotions import NORMS_CITATION
from emogeom.errors import EmogeomError
from emogeom.models import resolve_model
from emogeom.progress import Progress
from emogeom.study.executors import run_local, run_ray
from emogeom.study.jobs import (
    Inputs,
    Job,
    ModelTask,
    group_jobs,
    job_state,
    load_inputs,
    plan_jobs,
    record_failure,
    write_job,
)
from emogeom.study.lock import output_lock

STUDY_COLUMNS = ["kind", "precision_a", "preset_a", "precision_b", "preset_b", *COLUMNS]
DESCRIPTOR_COLUMNS = [
    "label", "family", "variant", "precision", "preset", "architecture", "n_layers",
    "best_layer", "best_layer_depth", "anisotropy", "rdm_std", "reliability",
    "cross_style", "cross_style_normalised", "p_cross_style", "cross_split",
    "best_layer_reliability", "best_layer_general", "pc1_valence_abs_r", "best_pc_valence",
    "rho_human", "p_human", "steering_regime_reference", "steering_regime_perplexity", "job",
]
BASE_INSTRUCT_COLUMNS = ["family", "precision", "preset", "base", "instruct", "layer_base",
                         "layer_instruct", "rho", "ci_low", "ci_high", "p_perm", "p_holm"]
# Top-level outputs, replaced together at the end of a fully successful run.
TOP_LEVEL = ("study.json", "references", "descriptors.csv", "comparisons.csv",
             "base_instruct.csv", "profiles.json", "behaviour_link.json", "figures",
             "report.html", "manifest.json")
# The study manifest: sha256 of every other top-level output, checked before any is trusted.
MANIFEST = "manifest.json"
REFERENCES_FILE = "references.safetensors"
STAGING = ".staging"
# Test aid: seconds to wait after each finished job, so a test can kill a study midway.
PAUSE_ENV = "EMOGEOM_TEST_JOB_PAUSE"


def prepare(spec: StudySpec, progress: Progress | None = None):
    """Inputs per preset, reference RDMs per preset (re-used from the study folder when
    valid, else computed in memory) and the job plan. Writes nothing."""
    inputs = check_study(spec)
    sums = study_checksums(spec.out_dir)
    refs, skipped = {}, {}
    for preset, data in inputs.items():
        refs[preset], skipped[preset] = cached_references(
            spec.out_dir / "references" / preset, data, progress,
            sums.get(f"references/{preset}/{REFERENCES_FILE}"))
    jobs = plan_jobs(spec, inputs, {p: list(r) for p, r in refs.items()})
    return inputs, refs, skipped, jobs


def check_study(spec: StudySpec) -> dict[str, Inputs]:
    """Everything a study run would refuse, found without loading a model or writing a file:
    the output folder, the corpus and neutral sentences, every model spec (a local file or
    folder must exist), every device and the executor. Returns the inputs per preset."""
    from emogeom.models.devices import resolve_device
    from emogeom.models.loading import check_gguf_file, needs_remote_code, remote_code_error

    out = spec.out_dir
    if out.exists() and not out.is_dir():
        raise EmogeomError(f"out: {out} exists and is not a folder; choose another 'out'")
    parent = next((p for p in (out, *out.parents) if p.exists()), None)
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        raise EmogeomError(f"out: {parent} is not writable; check its permissions or choose "
                           "another 'out'")
    if spec.executor.kind not in ("local", "ray"):
        raise EmogeomError(f"executor: unknown kind '{spec.executor.kind}' (use local or ray)")
    inputs = load_inputs(spec)
    for entry in spec.models:
        source = resolve_model(entry.id)
        if source.kind == "gguf":
            check_gguf_file(source.path)
        if (source.kind == "local" and not entry.trust_remote_code
                and needs_remote_code(source.path)):
            raise remote_code_error(entry.id)
        resolve_device(entry.device or spec.device)
    return inputs


def study_checksums(out: Path) -> dict[str, str]:
    """The checksums of a study's top-level outputs recorded in ``OUT/manifest.json`` ({}
    when there is none or it is unreadable: nothing study-level is then trusted)."""
    try:
        sums = io.read_json(out / MANIFEST)["artefacts"]
    except (EmogeomError, OSError, ValueError, KeyError, TypeError):
        return {}
    return sums if isinstance(sums, dict) else {}


def cached_references(folder: Path, data: Inputs, progress: Progress | None = None,
                      checksum: str | None = None):
    """Reference RDMs of a corpus, re-used from ``references.safetensors`` (exact floats) when
    its checksum matches the study manifest's and the corpus, the package version and the
    available baselines are unchanged; otherwise recomputed (a damaged cache says so)."""
    from emogeom.baselines.references import reference_names, reference_rdms

    path = folder / REFERENCES_FILE
    expected = reference_names()
    if path.exists() and checksum is not None:
        if io.file_sha256(path) != checksum:
            if progress is not None:
                progress(f"warning: {path} does not match its checksum in the study "
                         "manifest; recomputing the reference RDMs")
        else:
            tensors, meta = io.read_tensors(path)
            if (meta.get("corpus_sha256") == data.corpus.sha256
                    and meta.get("emogeom") == emogeom.__version__
                    and sorted(tensors) == sorted(expected)):
                return {k: tensors[k] for k in expected}, meta.get("skipped", {})
    return reference_rdms(data.corpus, progress)


def write_references(folder: Path, refs: dict[str, np.ndarray], skipped: dict[str, str],
                     data: Inputs) -> None:
    """The cache ``references.safetensors`` and one readable CSV per reference RDM."""
    emotions = list(data.corpus.emotions)
    for name, rdm in refs.items():
        io.write_rdm_csv(folder / f"{name}_rdm.csv", rdm, emotions)
    io.write_tensors(folder / REFERENCES_FILE, refs,
                     {"corpus_sha256": data.corpus.sha256, "skipped": skipped,
                      "emogeom": emogeom.__version__, "emotions": emotions})


def study_status(spec: StudySpec) -> list[dict[str, str]]:
    """State of every job of a study: label, precision, preset, state, detail, folder."""
    from emogeom.baselines.references import reference_names

    inputs = load_inputs(spec)
    jobs = plan_jobs(spec, inputs, {p: reference_names() for p in inputs})
    rows = []
    for job in jobs:
        state, detail = job_state(job.folder)
        rows.append({"label": job.label, "precision": job.precision, "preset": job.preset,
                     "state": state, "detail": detail, "folder": job.name})
    return rows


def run_study_spec(
    spec: StudySpec, executor: str | None = None, address: str | None = None,
    jobs: int | None = None, progress: Progress | None = None,
) -> dict[str, Any]:
    """Compute every unfinished job, then (only if none failed) compare and report. Returns
    counts, the jobs computed and failed, and the paths written."""
    ex = spec.executor
    kind = executor or ex.kind
    if kind not in ("local", "ray"):
        raise EmogeomError(f"--executor: unknown executor '{kind}' (use local or ray)")
    if jobs is not None and jobs < 1:
        raise EmogeomError(f"--jobs: {jobs} is not a number of jobs (give 1 or more)")
    inputs, refs, skipped, plan = prepare(spec, progress)
    with output_lock(spec.out_dir):
        return _run_locked(spec, kind, address, jobs, progress, inputs, refs, skipped, plan)


def _run_locked(spec: StudySpec, kind: str, address: str | None, jobs: int | None,
                progress: Progress | None, inputs, refs, skipped, plan) -> dict[str, Any]:
    """The part of a study run that writes, under the output folder's lock."""
    out, ex = spec.out_dir, spec.executor
    n_jobs = jobs or ex.jobs
    note = progress or (lambda *a, **k: None)
    states = {job.hash: job_state(job.folder) for job in plan}
    for job in plan:
        state, detail = states[job.hash]
        if state == "damaged":
            note(f"warning: {job.name}: {detail}; recomputing")
    todo = [job for job in plan if states[job.hash][0] != "done"]
    note(f"study {spec.name}: {len(plan)} jobs, {len(plan) - len(todo)} done, "
         f"{len(todo)} to compute ({kind})")
    computed, failed = [], []
    pause = float(os.environ.get(PAUSE_ENV, "0") or 0)

    def on_done(task: ModelTask, payloads: dict[str, dict[str, Any]]) -> None:
        for job in task.jobs:
            write_job(job, inputs[job.preset], payloads[job.name])
            computed.append(job.name)
            g = payloads[job.name]["geometry"]
            note(f"done {job.name}: best layer {g.best_layer}/{g.n_layers} "
                 f"({g.metrics['best_layer_criterion']}), reliability "
                 f"{g.metrics['reliability_at_best']:.3f}, cross-style ρ "
                 f"{g.metrics['cross_style_at_best']:.3f}")
        if pause:
            time.sleep(pause)

    errors: list[str] = []

    def on_failed(task: ModelTask, exc: BaseException) -> None:
        for job in task.jobs:
            record_failure(job, exc)
            failed.append(job.name)
        errors.append(f"{task.name}: {failure_line(exc)}")
        note(f"failed {errors[-1]}")

    # One task per model and precision: loaded once, its texts read once for every preset.
    work = [(task, inputs, refs) for task in group_jobs(todo, spec.device, spec.max_memory)]
    if kind == "ray":
        run_ray(work, on_done, on_failed, address or ex.address, ex.num_cpus, ex.num_gpus,
                max_in_flight=jobs or (ex.jobs if ex.jobs > 1 else None))
    else:
        run_local(work, on_done, on_failed, n_jobs, progress if n_jobs <= 1 else None)
    summary: dict[str, Any] = {"computed": computed, "failed": failed, "errors": errors,
                               "n_jobs": len(plan),
                               "skipped": len(plan) - len(todo), "report": None,
                               "comparisons": []}
    if failed:
        note(f"{len(failed)} job(s) failed: the previous top-level outputs of {out} are left "
             "as they were")
        return summary
    summary.update(finish_study(spec, plan, inputs, refs, skipped))
    return summary


def finish_study(spec: StudySpec, plan: list[Job], inputs: dict[str, Inputs],
                 refs: dict[str, dict[str, np.ndarray]],
                 skipped: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Compare the finished jobs and write every top-level output into a staging folder, then
    move them into place together."""
    out = spec.out_dir
    stage = out / STAGING
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        return _stage_and_publish(spec, plan, inputs, refs, skipped, stage)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)  # a full disk or a bug leaves no half stage
        raise


def _stage_and_publish(spec: StudySpec, plan: list[Job], inputs: dict[str, Inputs],
                       refs: dict[str, dict[str, np.ndarray]],
                       skipped: dict[str, dict[str, str]], stage: Path) -> dict[str, Any]:
    from emogeom.report.study import build_study_report

    out = spec.out_dir
    results = {j.label + "\0" + j.precision + "\0" + j.preset: Geometry.load(j.folder)
               for j in plan}

    def geom(job: Job) -> Geometry:
        return results[job.label + "\0" + job.precision + "\0" + job.preset]

    _write_study_index(stage, spec, plan, skipped)
    for preset, data in inputs.items():
        write_references(stage / "references" / preset, refs[preset], skipped[preset], data)
    io.write_csv(stage / "descriptors.csv", DESCRIPTOR_COLUMNS,
                 [[io.csv_cell(v) for v in _descriptor(j, geom(j))] for j in plan])
    rows, profiles = study_comparisons(spec, plan, geom)
    io.write_csv(stage / "comparisons.csv", STUDY_COLUMNS,
                 [[io.csv_cell(r.get(c)) for c in STUDY_COLUMNS] for r in rows])
    io.write_json(stage / "profiles.json", profiles)
    io.write_csv(stage / "base_instruct.csv", BASE_INSTRUCT_COLUMNS,
                 [[io.csv_cell(r.get(c)) for c in BASE_INSTRUCT_COLUMNS]
                  for r in base_instruct_rows(spec, rows)])
    if spec.behaviour:
        io.write_json(stage / "behaviour_link.json", behaviour_links(spec, plan, rows))
    (stage / "jobs").symlink_to(Path("..") / "jobs", target_is_directory=True)
    build_study_report(stage)
    (stage / "jobs").unlink()
    write_study_manifest(stage)
    publish(stage, out)
    return {"report": out / "report.html", "done": [j.name for j in plan], "comparisons": rows}


def write_study_manifest(out: Path) -> None:
    """``OUT/manifest.json``: the sha256 of every other top-level output of the study."""
    names = [n for n in TOP_LEVEL if n != MANIFEST]
    io.write_json(out / MANIFEST, {"emogeom": emogeom.__version__,
                                   "artefacts": io.checksums(out, names)})


def verify_study(out: Path) -> None:
    """Raise one line when a top-level output or a finished job of a study folder differs
    from its recorded checksum (a report re-rendered from it would show wrong numbers)."""
    sums = study_checksums(out)
    if not sums:
        raise EmogeomError(f"{out}/{MANIFEST} is missing or unreadable, so its tables cannot "
                           "be trusted; run the study again to rewrite them")
    damage = io.first_damage(out, {k: v for k, v in sums.items()
                                   if not k.startswith(("figures/", "report.html"))})
    if damage:
        raise EmogeomError(f"{out}: {damage}; run the study again to recompute it")
    for job in study_folder_jobs(out):
        state, detail = job_state(out / "jobs" / job["folder"])
        if state == "damaged":
            raise EmogeomError(f"{out}/jobs/{job['folder']}: {detail}; run the study again "
                               "to recompute it")


def failure_line(exc: BaseException) -> str:
    """A job's error in one line (an emogeom error as it is, others with their type)."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    return first if isinstance(exc, EmogeomError) else f"{type(exc).__name__}: {first}"


def publish(stage: Path, out: Path) -> None:
    """Move every top-level output from ``stage`` into ``out``, replacing the old ones (old
    outputs absent from the new set are removed, so no stale table survives)."""
    for name in TOP_LEVEL:
        new, old = stage / name, out / name
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        elif old.exists() or old.is_symlink():
            old.unlink()
        if new.exists():
            os.replace(new, old)
    shutil.rmtree(stage, ignore_errors=True)


def _write_study_index(folder: Path, spec: StudySpec, plan: list[Job], skipped: dict) -> None:
    io.write_json(folder / "study.json", {
        "emogeom": emogeom.__version__,
        "spec": spec.model_dump(),
        "jobs": [{"label": j.label, "family": j.entry.family, "variant": j.entry.variant,
                  "precision": j.precision, "preset": j.preset, "folder": j.name,
                  "hash": j.hash} for j in plan],
        "references_skipped": skipped,
        "norms": NORMS_CITATION,
    })


def _descriptor(job: Job, g: Geometry) -> list[Any]:
    m = g.metrics
    return [job.label, job.entry.family, job.entry.variant, job.precision, job.preset,
            g.model_info.get("architecture"), m["n_layers"], m["best_layer"],
            m["best_layer_depth"], m["anisotropy_at_best"], m["rdm_std_at_best"],
            m["reliability_at_best"], m.get("cross_style_at_best"),
            m.get("cross_style_normalised_at_best"), m.get("p_cross_style_at_best"),
            m.get("cross_style_split"), m.get("best_layer_reliability"),
            m.get("best_layer_general"), m.get("pc1_valence_abs_r"), m.get("best_pc_valence"),
            m.get("rho_human_at_best"), m.get("p_human_at_best"),
            m.get("steering_regime_reference"), m.get("steering_regime_perplexity"), job.name]


def study_comparisons(spec: StudySpec, done: list[Job], geom) -> tuple[list[dict], list[dict]]:
    """``models``: every model pair at one precision and preset; ``precision``: one model and
    preset at two precisions; ``preset``: one model and precision under two presets (only ρ
    and Mantel p when the presets read different stories). Holm/BH within each kind and
    group. Rows are keyed by job label, precision and preset, never by hash."""
    tagged: list[tuple[str, Job, Job, Comparison]] = []
    groups: dict[tuple[str, str], list[Job]] = {}
    for job in done:
        groups.setdefault((job.precision, job.preset), []).append(job)
    for members in groups.values():
        family = [("models", a, b, compare(geom(a), geom(b), spec.statistics))
                  for a, b in itertools.combinations(members, 2)]
        correct([c for *_, c in family])
        tagged += family
    factor: dict[tuple[str, str, str], list[Comparison]] = {}
    for a, b in itertools.combinations(done, 2):
        if a.label != b.label or (a.preset != b.preset and a.precision != b.precision):
            continue
        kind = "precision" if a.preset == b.preset else "preset"
        c = compare(geom(a), geom(b), spec.statistics)
        factor.setdefault((kind, a.precision, a.preset), []).append(c)
        tagged.append((kind, a, b, c))
    for family in factor.values():
        correct(family)
    rows, profiles = [], []
    for kind, a, b, c in tagged:
        row = c.row()
        row.update({"kind": kind, "model_a": a.label, "model_b": b.label,
                    "precision_a": a.precision, "preset_a": a.preset,
                    "precision_b": b.precision, "preset_b": b.preset})
        rows.append(row)
        if kind == "models" and c.same_text is not None:
            profiles.append({"model_a": a.label, "model_b": b.label,
                             "precision": a.precision, "preset": a.preset,
                             "layer_b": row["layer_b"], "same_text": c.same_text,
                             "cross_text": c.cross_text,
                             **({} if c.cross_style is None
                                else {"cross_style": c.cross_style})})
    return rows, profiles


def behaviour_links(spec: StudySpec, done: list[Job],
                    rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per precision: the models' facet profiles and the Mantel test between behaviour
    distance and geometry dissimilarity (1 − ρ at the first preset), with its small-n
    caveat."""
    from emogeom.behavior.link import link_behaviour_geometry

    preset = spec.presets[0]
    links = []
    for precision in spec.precisions:
        profiles = {}
        for job in done:
            path = job.folder / "behaviour" / "profile.json"
            if job.precision == precision and job.preset == preset and path.exists():
                profiles[job.label] = io.read_json(path)
        rho = {(r["model_a"], r["model_b"]): r["rho"] for r in rows
               if r["kind"] == "models" and r["precision_a"] == precision
               and r["preset_a"] == preset}
        link = link_behaviour_geometry(profiles, rho, "spearman",
                                       spec.statistics.permutations, spec.statistics.seed)
        link.update(precision=precision, preset=preset,
                    facets_by_model={k: v["facets"] for k, v in profiles.items()})
        links.append(link)
    return links


def base_instruct_rows(spec: StudySpec, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per family, the base↔instruct comparison at each precision and preset."""
    variant = {m.name: (m.family, m.variant) for m in spec.models}
    out = []
    for r in rows:
        if r["kind"] != "models":
            continue
        fa, va = variant.get(r["model_a"], (None, None))
        fb, vb = variant.get(r["model_b"], (None, None))
        if fa is None or fa != fb or {va, vb} != {"base", "instruct"}:
            continue
        base_first = va == "base"
        out.append({
            "family": fa, "precision": r["precision_a"], "preset": r["preset_a"],
            "base": r["model_a"] if base_first else r["model_b"],
            "instruct": r["model_b"] if base_first else r["model_a"],
            "layer_base": r["layer_a"] if base_first else r["layer_b"],
            "layer_instruct": r["layer_b"] if base_first else r["layer_a"],
            **{k: r.get(k) for k in ("rho", "ci_low", "ci_high", "p_perm", "p_holm")},
        })
    return out


def study_folder_jobs(out: Path) -> list[dict[str, Any]]:
    """The job table of a study folder (from ``study.json``)."""
    index = out / "study.json"
    if not index.exists():
        raise EmogeomError(f"{out} is not a study folder (no study.json)")
    return io.read_json(index)["jobs"]
