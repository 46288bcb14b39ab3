"""Run a study file: plan jobs, skip finished ones, compute the rest (locally or on Ray),
then compare every pair that differs by one factor and write tables and the report.

Study folder: ``study.json`` (the spec and the job table), ``jobs/<job>/`` (per-job
artefacts), ``references/``, ``descriptors.csv``, ``comparisons.csv``, ``base_instruct.csv``,
``figures/`` and ``report.html``.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape

import emogeom
from emogeom import artefacts as io
from emogeom.emotions import NORMS_CITATION
from emogeom.errors import EmogeomError
from emogeom.models import resolve_model
from emogeom.stats import benjamini_hochberg, holm, mantel
from emogeom.study.executors import run_local, run_ray
from emogeom.study.jobs import (
    Inputs,
    Job,
    job_state,
    load_inputs,
    plan_jobs,
    record_failure,
    write_job,
)
from emogeom.study.pipeline import (
    COMPARISON_COLUMNS,
    ModelResult,
    compare,
    load_result,
    reference_rdms,
)
from emogeom.study.spec import StudySpec

STUDY_COLUMNS = ["kind", "precision_a", "preset_a", "precision_b", "preset_b",
                 *COMPARISON_COLUMNS]
DESCRIPTOR_COLUMNS = [
    "label", "family", "variant", "precision", "preset", "architecture", "n_layers",
    "best_layer", "best_layer_depth", "anisotropy", "rdm_std", "reliability",
    "rho_human", "p_human", "steering_regime_reference", "steering_regime_perplexity", "job",
]
# Test aid: seconds to wait after each finished job, so a test can kill a study midway.
PAUSE_ENV = "EMOGEOM_TEST_JOB_PAUSE"


def prepare(spec: StudySpec, console: Console | None = None):
    """Inputs per preset, reference RDMs per preset (cached in the study folder) and the job
    plan."""
    inputs = load_inputs(spec)
    for entry in spec.models:  # every model spec checked before anything is written
        resolve_model(entry.id)
    refs, skipped = {}, {}
    for preset, data in inputs.items():
        refs[preset], skipped[preset] = cached_references(
            spec.out_dir / "references" / preset, data, console)
    jobs = plan_jobs(spec, inputs, {p: list(r) for p, r in refs.items()})
    return inputs, refs, skipped, jobs


def cached_references(folder: Path, data: Inputs, console: Console | None = None):
    """Reference RDMs of a corpus, re-used from ``references.safetensors`` (exact floats) when
    the corpus, the package version and the available baselines are unchanged."""
    path = folder / "references.safetensors"
    expected = _reference_names()
    if path.exists():
        try:
            tensors, meta = io.read_tensors(path)
        except Exception:  # noqa: BLE001 - a damaged cache is recomputed
            tensors, meta = {}, {}
        if (meta.get("corpus_sha256") == data.corpus.sha256
                and meta.get("emogeom") == emogeom.__version__
                and sorted(tensors) == sorted(expected)):
            return {k: tensors[k] for k in expected}, meta.get("skipped", {})
    refs, skipped = reference_rdms(data.corpus, console)
    emotions = list(data.corpus.emotions)
    for name, rdm in refs.items():
        io.write_rdm_csv(folder / f"{name}_rdm.csv", rdm, emotions)
    io.write_tensors(path, refs, {"corpus_sha256": data.corpus.sha256, "skipped": skipped,
                                  "emogeom": emogeom.__version__, "emotions": emotions})
    return refs, skipped


def study_status(spec: StudySpec) -> list[dict[str, str]]:
    """State of every job of a study: label, precision, preset, state, detail, folder."""
    inputs = load_inputs(spec)
    names = {p: _reference_names() for p in inputs}
    jobs = plan_jobs(spec, inputs, names)
    rows = []
    for job in jobs:
        state, detail = job_state(job.folder)
        rows.append({"label": job.label, "precision": job.precision, "preset": job.preset,
                     "state": state, "detail": detail, "folder": job.name})
    return rows


def _reference_names() -> list[str]:
    """Which references a run would compute, without computing them (for status)."""
    from emogeom.baselines import BASELINES, BaselineUnavailable
    from emogeom.baselines.text import minilm_dir

    names = ["human", *BASELINES]
    try:
        minilm_dir()
    except BaselineUnavailable:
        names.remove("minilm")
    return names


def run_study_spec(
    spec: StudySpec, executor: str | None = None, address: str | None = None,
    jobs: int | None = None, console: Console | None = None,
) -> dict[str, Any]:
    """Compute every unfinished job, then compare and report. Returns counts, the per-job
    states and the paths written; failed jobs are recorded and reported, not fatal."""
    out = spec.out_dir
    if out.exists() and not out.is_dir():
        raise EmogeomError(f"output {out} exists and is not a folder; choose another 'out'")
    ex = spec.executor
    kind = executor or ex.kind
    if kind not in ("local", "ray"):
        raise EmogeomError(f"unknown executor '{kind}' (use local or ray)")
    n_jobs = jobs or ex.jobs
    inputs, refs, skipped, plan = prepare(spec, console)
    states = {job.hash: job_state(job.folder) for job in plan}
    for job in plan:
        state, detail = states[job.hash]
        if state == "damaged" and console is not None:
            console.print(f"[yellow]warning:[/] {job.name}: {escape(detail)}; recomputing",
                          soft_wrap=True)
    todo = [job for job in plan if states[job.hash][0] != "done"]
    _write_study_index(spec, plan, skipped)
    if console is not None:
        console.print(f"study {spec.name}: {len(plan)} jobs, {len(plan) - len(todo)} done, "
                      f"{len(todo)} to compute ({kind})")
    computed, failed = [], []
    pause = float(os.environ.get(PAUSE_ENV, "0") or 0)

    def on_done(job: Job, payload: dict[str, Any]) -> None:
        write_job(job, inputs[job.preset], payload)
        computed.append(job.name)
        if console is not None:
            m = payload["metrics"]
            console.print(f"done {job.name}: best layer {m['best_layer']}/{m['n_layers']}, "
                          f"reliability {m['reliability_at_best']:.3f}", soft_wrap=True)
        if pause:
            time.sleep(pause)

    def on_failed(job: Job, exc: BaseException) -> None:
        record_failure(job, exc)
        failed.append(job.name)
        if console is not None:
            console.print(f"[bold red]failed[/] {job.name}: {escape(str(exc))}",
                          soft_wrap=True)

    work = [(job, inputs[job.preset], refs[job.preset]) for job in todo]
    if kind == "ray":
        run_ray(work, on_done, on_failed, address or ex.address, ex.num_cpus, ex.num_gpus,
                max_in_flight=jobs or (ex.jobs if ex.jobs > 1 else None))
    else:
        run_local(work, on_done, on_failed, n_jobs, console if n_jobs <= 1 else None)
    done = {j.hash for j in plan if states[j.hash][0] == "done"}
    done |= {j.hash for j in todo if j.name in computed}
    summary = finish_study(spec, plan, inputs, refs, done)
    summary.update({"computed": computed, "failed": failed, "n_jobs": len(plan),
                    "skipped": len(plan) - len(todo)})
    return summary


def _write_study_index(spec: StudySpec, plan: list[Job], skipped: dict) -> None:
    io.write_json(spec.out_dir / "study.json", {
        "emogeom": emogeom.__version__,
        "spec": spec.model_dump(),
        "jobs": [{"label": j.label, "family": j.entry.family, "variant": j.entry.variant,
                  "precision": j.precision, "preset": j.preset, "folder": j.name,
                  "hash": j.hash} for j in plan],
        "references_skipped": skipped,
        "norms": NORMS_CITATION,
    })


def finish_study(spec: StudySpec, plan: list[Job], inputs: dict[str, Inputs],
                 refs: dict[str, dict[str, np.ndarray]],
                 done_hashes: set[str] | None = None) -> dict[str, Any]:
    """Compare the finished jobs (``done_hashes``, else checked on disk) and write
    descriptors, comparisons, base↔instruct and the report (unfinished jobs are listed)."""
    from emogeom.report.study import build_study_report

    out = spec.out_dir
    done = [j for j in plan if (j.hash in done_hashes if done_hashes is not None
                                else job_state(j.folder)[0] == "done")]
    results = {j.hash: load_result(j.folder, j.label) for j in done}
    io.write_csv(out / "descriptors.csv", DESCRIPTOR_COLUMNS,
                 [[io.csv_cell(v) for v in _descriptor(j, results[j.hash])] for j in done])
    rows = study_comparisons(spec, done, results, inputs, refs)
    io.write_csv(out / "comparisons.csv", STUDY_COLUMNS,
                 [[io.csv_cell(r.get(c)) for c in STUDY_COLUMNS] for r in rows])
    io.write_csv(out / "base_instruct.csv", BASE_INSTRUCT_COLUMNS,
                 [[io.csv_cell(r.get(c)) for c in BASE_INSTRUCT_COLUMNS]
                  for r in base_instruct_rows(spec, rows)])
    if spec.behaviour:
        io.write_json(out / "behaviour_link.json", behaviour_links(spec, done, rows))
    report = build_study_report(out)
    return {"report": report, "done": [j.name for j in done],
            "missing": [j.name for j in plan if j not in done], "comparisons": rows}


def _descriptor(job: Job, res: ModelResult) -> list[Any]:
    m = res.metrics
    manifest = io.read_json(job.folder / "manifest.json")
    return [job.label, job.entry.family, job.entry.variant, job.precision, job.preset,
            manifest["model"].get("architecture"), m["n_layers"], m["best_layer"],
            m["best_layer_depth"], m["anisotropy_at_best"], m["rdm_std_at_best"],
            m["reliability_at_best"], m.get("rho_human_at_best"), m.get("p_human_at_best"),
            m.get("steering_regime_reference"), m.get("steering_regime_perplexity"), job.name]


def study_comparisons(
    spec: StudySpec, done: list[Job], results: dict[str, ModelResult],
    inputs: dict[str, Inputs], refs: dict[str, dict[str, np.ndarray]],
) -> list[dict[str, Any]]:
    """``models``: every model pair at one precision and preset; ``precision``: one model and
    preset at two precisions; ``preset``: one model and precision under two presets (only ρ
    and Mantel p when the presets read different stories). Holm/BH within each kind and
    group."""
    rows: list[dict[str, Any]] = []

    def tag(row: dict[str, Any], kind: str, a: Job, b: Job) -> dict[str, Any]:
        row.update({"kind": kind, "precision_a": a.precision, "preset_a": a.preset,
                    "precision_b": b.precision, "preset_b": b.preset})
        return row

    groups: dict[tuple[str, str], list[Job]] = {}
    for job in done:
        groups.setdefault((job.precision, job.preset), []).append(job)
    for (_, preset), members in groups.items():
        if len(members) < 2:
            continue
        pairs = compare([results[j.hash] for j in members], inputs[preset].corpus,
                        members[0].settings, refs[preset])
        by_label = {j.label: j for j in members}
        rows += [tag(r, "models", by_label[r["model_a"]], by_label[r["model_b"]])
                 for r in pairs]
    for a, b in itertools.combinations(done, 2):
        if a.label != b.label:
            continue
        if a.preset == b.preset:
            row = compare([results[a.hash], results[b.hash]], inputs[a.preset].corpus,
                          a.settings, refs[a.preset])[0]
            rows.append(tag(row, "precision", a, b))
        elif a.precision == b.precision:
            rows.append(tag(_cross_preset(a, b, results, inputs), "preset", a, b))
    for key in {(r["kind"], r["precision_a"], r["preset_a"]) for r in rows}:
        members = [r for r in rows if (r["kind"], r["precision_a"], r["preset_a"]) == key]
        p = np.array([r["p_perm"] for r in members])
        for r, ph, pb in zip(members, holm(p), benjamini_hochberg(p)):
            r["p_holm"], r["p_bh"] = float(ph), float(pb)
    return rows


def _cross_preset(a: Job, b: Job, results: dict[str, ModelResult],
                  inputs: dict[str, Inputs]) -> dict[str, Any]:
    """One model under two presets: the full comparison when both read the same stories,
    otherwise ρ and Mantel p of the best-layer RDMs (no stimulus bootstrap is possible)."""
    ra, rb = results[a.hash], results[b.hash]
    ca, cb = inputs[a.preset].corpus, inputs[b.preset].corpus
    if ca.sha256 == cb.sha256:
        return compare([ra, rb], ca, a.settings, None)[0]
    rho, p = mantel(ra.rdm, rb.rdm, a.settings.method, a.settings.n_perm, a.settings.seed)
    return {"model_a": a.label, "model_b": b.label, "layer_a": ra.metrics["best_layer"],
            "layer_b": rb.metrics["best_layer"], "method": a.settings.method, "rho": rho,
            "p_perm": p}


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


BASE_INSTRUCT_COLUMNS = ["family", "precision", "preset", "base", "instruct", "layer_base",
                         "layer_instruct", "rho", "ci_low", "ci_high", "p_perm", "p_holm"]


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
