"""``emogeom study run|status|check FILE``: many models from one YAML, resumable."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from emogeom.commands import device_option, fail, max_memory_option, print_error
from emogeom.errors import EmogeomError

console = Console()


def _load(file: Path):
    from emogeom.study.spec import load_study

    try:
        return load_study(file)
    except EmogeomError as exc:
        fail(exc)


study_app = typer.Typer(no_args_is_help=True,
                        help="Run a study file: models × precisions × presets, resumable.")


def run_and_print(spec, executor: str | None = None, address: str | None = None,
                  jobs: int | None = None, label: str = "study") -> None:
    """Run a study (from a file or from `run`'s flags) and print its summary; exit 1 when a
    job failed (the previous top-level outputs are then left untouched)."""
    from emogeom.artefacts import read_csv
    from emogeom.commands.progress import cli_progress
    from emogeom.study.runner import run_study_spec

    started = time.time()
    try:
        with cli_progress(console) as progress:
            res = run_study_spec(spec, executor, address, jobs, progress)
    except EmogeomError as exc:
        fail(exc)
    console.print(f"jobs: {res['n_jobs']} in the study, {res['skipped']} already done, "
                  f"{len(res['computed'])} computed, {len(res['failed'])} failed")
    if res["failed"]:
        first = res["errors"][0] if res.get("errors") else "see `emogeom study status`"
        more = f" (and {len(res['errors']) - 1} more)" if len(res.get("errors", [])) > 1 else ""
        print_error(f"{len(res['failed'])} job(s) failed: {first}{more}; {spec.out_dir}'s "
                    "report and tables were left as they were, finished jobs are kept; run "
                    "again to retry.")
        raise typer.Exit(1)
    table = Table(title=f"{label} {spec.name}: emotion geometry per job")
    table.add_column("model", overflow="fold")
    for col in ("dtype", "preset", "layer", "aniso.", "RDM sd", "reliab.", "ρ VA"):
        table.add_column(col, justify="right", overflow="fold")
    for d in read_csv(spec.out_dir / "descriptors.csv"):
        table.add_row(d["label"], d["precision"], d["preset"],
                      f"{d['best_layer']} / {d['n_layers']}", f"{float(d['anisotropy']):.3f}",
                      f"{float(d['rdm_std']):.3f}", f"{float(d['reliability']):.3f}",
                      f"{float(d['rho_human']):.3f}" if d["rho_human"] else "–")
    console.print(table)
    for r in res["comparisons"]:
        if r["kind"] != "models":
            continue
        ci = (f" [{r['ci_low']:.3f}, {r['ci_high']:.3f}]" if r.get("ci_low") is not None
              else "")
        console.print(f"{r['model_a']} (L{r['layer_a']}) vs {r['model_b']} (L{r['layer_b']}) "
                      f"({r['precision_a']}, {r['preset_a']}): {r['method']} ρ = "
                      f"{r['rho']:.3f}{ci}, p = {r['p_perm']:.3g}{_cross(r)}", soft_wrap=True)
    link_file = spec.out_dir / "behaviour_link.json"
    if spec.behaviour and link_file.exists():
        from emogeom.artefacts import read_json
        from emogeom.commands.behave import print_link

        for link in read_json(link_file):
            console.print(f"behaviour link at {link['precision']}, preset {link['preset']}:")
            print_link(link, console)
    console.print(f"report: {res['report']}  ({time.time() - started:.0f} s)")


@study_app.command("run")
def study_run(
    file: Path = typer.Argument(..., help="Study file (.yaml)."),
    executor: str | None = typer.Option(None, help="local | ray (default: the file's)."),
    ray_address: str | None = typer.Option(None, help="Ray cluster address, e.g. "
                                                      "ray://head:10001 (default: start one)."),
    jobs: int | None = typer.Option(None, help="Jobs at once (local: worker processes; "
                                              "ray: tasks in flight)."),
    device: str | None = device_option(None),
    max_memory: str | None = max_memory_option(),
) -> None:
    """Compute every unfinished job, then compare and write the study report. --device and
    --max-memory override the study file's (a model's own device still wins)."""
    from emogeom.models.devices import max_memory_option as parse_memory
    from emogeom.models.devices import resolve_device

    spec = _load(file)
    try:
        update = {}
        if device is not None:
            resolve_device(device)
            update["device"] = device
        if max_memory is not None:
            update["max_memory"] = parse_memory(max_memory)
    except EmogeomError as exc:
        fail(exc)
    run_and_print(spec.model_copy(update=update), executor, ray_address, jobs)


def run(
    model: list[str] | None = typer.Option(
        None, "--model", "-m",
        help="Embedded name, local folder, .gguf file or hub id; repeat for several. "
             "Default: smollm2-135m-instruct and gemma3-270m."),
    preset: str | None = typer.Option(None, help="default | paper (the reference "
                                                 "pipeline)."),
    corpus: Path | None = typer.Option(None, help="Corpus (.jsonl, .csv or .tsv)."),
    columns: str | None = typer.Option(
        None, help="The corpus's column names, e.g. text=passage,emotion=label (or positions "
                   "in a file without a header: emotion=1,text=3)."),
    neutral: Path | None = typer.Option(None, help="Neutral sentences (.jsonl)."),
    dtype: str | None = typer.Option(None, help="fp32 (default) | bf16 | fp16 | int8 | int4"),
    per_emotion: int | None = typer.Option(None, help="Use N texts per emotion (the first of "
                                                      "each style in turn)."),
    n_neutral: int | None = typer.Option(None, help="Use the first N neutral sentences."),
    pooling: str | None = typer.Option(None, help="last | mean"),
    mean_start: int | None = typer.Option(None, help="Mean pooling skips the first k tokens."),
    max_batch_tokens: int | None = typer.Option(None, help="Padded tokens per batch."),
    truncate: bool = typer.Option(False, help="Cut texts longer than a model's context to "
                                              "their first tokens (default: refuse them)."),
    chat_template: str | None = typer.Option(None, help="raw (default: stories as text) | "
                                                        "chat (each story as a user message)."),
    layer_criterion: str | None = typer.Option(None, help="reliability | reference | "
                                                          "general"),
    denoise: float | None = typer.Option(
        None, help="Project off neutral PCs explaining this variance fraction (0 = off)."),
    splits: int | None = typer.Option(
        None, help="Split-halves for reliability (the fixed one, then random)."),
    method: str | None = typer.Option(None, help="RDM comparison: spearman | pearson | "
                                                 "kendall | cosine"),
    permutations: int | None = typer.Option(None, help="Mantel permutations."),
    bootstrap: int | None = typer.Option(None, help="Stimulus-bootstrap samples for CIs."),
    ci_level: float | None = typer.Option(None, help="Confidence level of the intervals."),
    seed: int | None = typer.Option(None, help="Seed for splits and permutations."),
    out: Path = typer.Option(Path("out/run"), help="Study folder to write (resumable)."),
    trust_remote_code: bool = typer.Option(False, help="Allow model code from the hub."),
    steering: bool = typer.Option(False, help="Also steer each model along its best-layer "
                                              "vectors and classify its regime."),
    behaviour: bool = typer.Option(False, help="Also probe MTI Compliance behaviour."),
    jobs: int | None = typer.Option(None, help="Jobs at once (worker processes; with "
                                              "several GPUs each worker gets its own)."),
    device: str = device_option(),
    max_memory: str | None = max_memory_option(),
) -> None:
    """Extract, describe and compare emotion geometry of the models given: a study built from
    these flags (same jobs, provenance, resume, tables and report as `emogeom study run`)."""
    from emogeom.config import EMBEDDED_DEFAULT, ModelEntry, StudySpec
    from emogeom.models.devices import max_memory_option as parse_memory
    from emogeom.models.devices import resolve_device

    flat = {"pooling": pooling, "mean_start": mean_start, "per_emotion": per_emotion,
            "n_neutral": n_neutral, "max_batch_tokens": max_batch_tokens,
            "truncate": truncate or None}
    try:
        resolve_device(device)  # this run's jobs run here: an absent device fails now
        spec = StudySpec(
            name=out.name or "run", out=str(out),
            models=[ModelEntry(id=m, trust_remote_code=trust_remote_code,
                               **({"chat_template": chat_template} if chat_template else {}))
                    for m in (model or EMBEDDED_DEFAULT)],
            **({"precisions": [dtype]} if dtype else {}),
            **({"presets": [preset]} if preset else {}),
            corpus=str(corpus) if corpus else None, corpus_columns=columns,
            neutral=str(neutral) if neutral else None,
            extraction={k: v for k, v in flat.items() if v is not None},
            analysis={k: v for k, v in {"layer_criterion": layer_criterion,
                                        "denoise": denoise, "splits": splits}.items()
                      if v is not None},
            statistics={k: v for k, v in {"method": method, "permutations": permutations,
                                          "bootstrap": bootstrap, "ci_level": ci_level,
                                          "seed": seed}.items() if v is not None},
            steering=steering, behaviour=behaviour, device=device,
            max_memory=parse_memory(max_memory))
    except EmogeomError as exc:
        fail(exc)
    except ValueError as exc:
        fail(EmogeomError(flag_error(exc)))
    run_and_print(spec, None, None, jobs, label="run")


def _cross(r: dict) -> str:
    """'; other styles ρ = …' for a comparison row that has the cross-style value."""
    if r.get("rho_cross_style") is None:
        return ""
    where = "other styles" if r.get("cross_split") == "style" else "other half of the texts"
    return f"; {where} ρ = {r['rho_cross_style']:.3f} (p = {r['p_cross_style']:.3g})"


def flag_error(exc: ValueError) -> str:
    """A pydantic error about a study built from flags, in terms of the flags."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc)
    first = exc.errors()[0]
    names = [str(k) for k in first["loc"] if not isinstance(k, int)]
    flag = "--" + (names[-1] if names else "?").replace("_", "-")
    flag = {"--precisions": "--dtype", "--presets": "--preset"}.get(flag, flag)
    if names[:1] == ["models"]:
        flag = "--model"
    msg = first["msg"].removeprefix("Value error, ")
    return f"{flag}: {msg}"


@study_app.command("status")
def study_status_cmd(file: Path = typer.Argument(..., help="Study file (.yaml).")) -> None:
    """done / pending / failed / damaged for every job of the study."""
    from emogeom.study.runner import study_status

    spec = _load(file)
    try:
        rows = study_status(spec)
    except EmogeomError as exc:
        fail(exc)
    table = Table(title=f"study {spec.name} → {spec.out_dir}")
    for col in ("model", "precision", "preset", "state", "detail", "folder"):
        table.add_column(col, overflow="fold")
    colours = {"done": "green", "pending": "yellow", "failed": "red", "damaged": "red"}
    for r in rows:
        table.add_row(r["label"], r["precision"], r["preset"],
                      f"[{colours[r['state']]}]{r['state']}[/]", r["detail"], r["folder"])
    console.print(table)
    counts = {s: sum(r["state"] == s for r in rows) for s in colours}
    console.print(", ".join(f"{v} {k}" for k, v in counts.items()))
    if counts["failed"] or counts["damaged"]:
        raise typer.Exit(1)  # scripts can tell a study that needs attention


@study_app.command("check")
def study_check(file: Path = typer.Argument(..., help="Study file (.yaml).")) -> None:
    """Validate a study file as `study run` would, without loading any model or writing."""
    from emogeom.study.runner import check_study

    spec = _load(file)
    try:
        check_study(spec)
    except EmogeomError as exc:
        fail(exc)
    n = len(spec.models) * len(spec.precisions) * len(spec.presets)
    console.print(f"{file}: valid. study '{spec.name}': {len(spec.models)} models × "
                  f"{len(spec.precisions)} precisions × {len(spec.presets)} presets = {n} jobs"
                  f" → {spec.out_dir}", soft_wrap=True)
    families: dict[str, set[str]] = {}
    for m in spec.models:
        if m.family:
            families.setdefault(m.family, set()).add(m.variant or "?")
    pairs = [f for f, v in families.items() if {"base", "instruct"} <= v]
    console.print(f"families with base and instruct: {', '.join(pairs) or 'none'}")


def register(app: typer.Typer) -> None:
    """Add ``emogeom run`` and ``emogeom study``."""
    app.command("run")(run)
    app.add_typer(study_app, name="study")
