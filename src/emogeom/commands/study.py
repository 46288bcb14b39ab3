"""``emogeom study run|status|check FILE``: many models from one YAML, resumable."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from emogeom.commands import fail
from emogeom.errors import EmogeomError

console = Console()
err = Console(stderr=True)


def _load(file: Path):
    from emogeom.study.spec import load_study

    try:
        return load_study(file)
    except EmogeomError as exc:
        fail(exc)


study_app = typer.Typer(no_args_is_help=True,
                        help="Run a study file: models × precisions × presets, resumable.")


@study_app.command("run")
def study_run(
    file: Path = typer.Argument(..., help="Study file (.yaml)."),
    executor: str | None = typer.Option(None, help="local | ray (default: the file's)."),
    ray_address: str | None = typer.Option(None, help="Ray cluster address, e.g. "
                                                      "ray://head:10001 (default: start one)."),
    jobs: int | None = typer.Option(None, help="Jobs at once (local: worker processes; "
                                              "ray: tasks in flight)."),
) -> None:
    """Compute every unfinished job, then compare and write the study report."""
    from emogeom.study.runner import run_study_spec

    spec = _load(file)
    started = time.time()
    try:
        res = run_study_spec(spec, executor, ray_address, jobs, console)
    except EmogeomError as exc:
        fail(exc)
    from emogeom.artefacts import read_csv

    table = Table(title=f"study {spec.name}: emotion geometry per job")
    table.add_column("model", overflow="fold")
    for col in ("dtype", "preset", "layer", "aniso.", "RDM sd", "reliab.", "ρ VA"):
        table.add_column(col, justify="right", overflow="fold")
    for d in read_csv(spec.out_dir / "descriptors.csv"):
        table.add_row(d["label"], d["precision"], d["preset"],
                      f"{d['best_layer']} / {d['n_layers']}", f"{float(d['anisotropy']):.3f}",
                      f"{float(d['rdm_std']):.3f}", f"{float(d['reliability']):.3f}",
                      f"{float(d['rho_human']):.3f}" if d["rho_human"] else "–")
    console.print(table)
    models = [r for r in res["comparisons"] if r["kind"] == "models"]
    for r in models:
        console.print(f"{r['model_a']} vs {r['model_b']} ({r['precision_a']}, {r['preset_a']}):"
                      f" ρ = {r['rho']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}], "
                      f"p = {r['p_perm']:.3g}", soft_wrap=True)
    link_file = spec.out_dir / "behaviour_link.json"
    if spec.behaviour and link_file.exists():
        from emogeom.artefacts import read_json
        from emogeom.commands.behave import print_link

        for link in read_json(link_file):
            console.print(f"behaviour link at {link['precision']}, preset {link['preset']}:")
            print_link(link, console)
    console.print(f"jobs: {res['n_jobs']} in the study, {res['skipped']} already done, "
                  f"{len(res['computed'])} computed, {len(res['failed'])} failed")
    console.print(f"report: {res['report']}  ({time.time() - started:.0f} s)")
    if res["failed"]:
        err.print(f"[bold red]{len(res['failed'])} job(s) failed[/]: see `emogeom study "
                  f"status {file}`; run again to retry them", highlight=False)
        raise typer.Exit(1)


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


@study_app.command("check")
def study_check(file: Path = typer.Argument(..., help="Study file (.yaml).")) -> None:
    """Validate a study file without loading any model or touching the hub."""
    spec = _load(file)
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
    """Add ``emogeom study``."""
    app.add_typer(study_app, name="study")
