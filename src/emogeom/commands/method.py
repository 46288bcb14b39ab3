"""CLI commands for the method room: ``precision``, ``decompose`` and ``sensitivity``.

Every command writes its artefacts (CSV, manifest.json, texts) before printing the table.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from emogeom.commands import device_option, fail, max_memory_option
from emogeom.commands.progress import cli_progress
from emogeom.config import PROFILES, Statistics, default
from emogeom.errors import EmogeomError

console = Console(stderr=False)
PERMUTATIONS, BOOTSTRAP = default(Statistics, "permutations"), default(Statistics, "bootstrap")
QUICK = PROFILES["quick"]


def profile_option():
    """``--profile quick|full`` of decompose and sensitivity."""
    return typer.Option(None, "--profile", help="quick (CPU-sized: "
                        f"{QUICK['templates']} templates x {QUICK['samples']} stories, "
                        f"{QUICK['max_new_tokens']} tokens, {QUICK['bootstrap']} bootstrap "
                        "samples) | full (the paper-sized run). Default: full on a GPU, quick "
                        "on a CPU; flags below override the profile's sizes.")


def _f(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or x != x else f"{x:.{digits}f}"


def precision(
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m"),
    dtypes: str = typer.Option("fp32,bf16,fp16,int8",
                               help="Comma list of fp32 | bf16 | fp16 | int8 | int4 "
                                    "(fp32 is always the reference)."),
    per_emotion: int | None = typer.Option(None, help="First N stories per emotion (fast: 5)."),
    out: Path | None = typer.Option(None, help="Output folder (default: out/precision/<model>)."),
    device: str = device_option(),
    max_memory: str | None = max_memory_option(),
) -> None:
    """Per layer: cosine of pooled states and of emotion vectors vs fp32, and RDM ρ vs fp32."""
    from emogeom.method.drift import parse_dtypes, run_precision

    try:
        with cli_progress(console) as progress:
            res = run_precision(model, parse_dtypes(dtypes), per_emotion, out, progress,
                                device=device, max_memory=max_memory)
    except EmogeomError as exc:
        fail(exc)
    others = [d for d in res["dtypes"] if d != "fp32"]
    table = Table(title=f"precision drift vs fp32: {model} ({res['n_stimuli']} stories; "
                        "cells: state cos / vector cos / RDM ρ)")
    table.add_column("layer", justify="right")
    for d in others:
        table.add_column(d, justify="right")
    n_layers = res["status"]["fp32"]["n_layers"]
    for layer in range(n_layers):
        cells = []
        for d in others:
            rows = res["rows"][d]
            if layer < len(rows):
                r = rows[layer]
                cells.append(f"{r['state_cos_mean']:.4f} / {r['vector_cos_mean']:.3f} / "
                             f"{r['rdm_rho']:.3f}")
            else:
                cells.append("non-finite")
        table.add_row(str(layer), *cells)
    console.print(table)
    for d in res["dtypes"]:
        s = res["status"][d]
        line = f"{d}: loaded as {s['dtype_loaded']}, quantisation {s['quantisation']}"
        if s["first_non_finite_layer"] is not None:
            line += (f"; [bold red]NON-FINITE[/] from layer {s['first_non_finite_layer']} of "
                     f"{s['n_layers']} (layers 0..{s['layers_compared'] - 1} compared)")
        console.print(line, soft_wrap=True)
    console.print(f"saved: {res['folder'] / 'drift.csv'}, manifest.json")


def decompose(
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m"),
    profile: str | None = profile_option(),
    templates: int | None = typer.Option(None, help="gen-reference templates [full 5, quick "
                                                    f"{QUICK['templates']}]."),
    samples: int | None = typer.Option(None, help="gen-reference stories per template [full "
                                                  f"10, quick {QUICK['samples']}]."),
    max_new_tokens: int | None = typer.Option(None, help="gen-reference new tokens [full 256, "
                                                         f"quick {QUICK['max_new_tokens']}]."),
    loose_samples: int | None = typer.Option(None, help="gen-loose samples per emotion [1]."),
    loose_max_new_tokens: int | None = typer.Option(
        None, help=f"gen-loose new tokens [full 100, quick {QUICK['loose_max_new_tokens']}]."),
    per_emotion: int | None = typer.Option(None, help="Comprehension: first N stories per "
                                                      "emotion [full all, quick "
                                                      f"{QUICK['per_emotion']}]."),
    seed: int = typer.Option(0, help="Seed for sampling, permutations and bootstrap."),
    permutations: int | None = typer.Option(
        None, help=f"Mantel permutations [full {PERMUTATIONS}, quick {QUICK['permutations']}]."),
    bootstrap: int | None = typer.Option(
        None, help=f"Bootstrap samples for the CIs, 0 = none [full {BOOTSTRAP}, quick "
                   f"{QUICK['bootstrap']}]."),
    out: Path | None = typer.Option(None, help="Output folder (default: out/decompose/<model>)."),
    device: str = device_option(),
    max_memory: str | None = max_memory_option(),
) -> None:
    """A = comprehension, B = gen-loose, C = gen-reference, D = gen-reference INT8: the
    four-layer decomposition of a method effect."""
    from emogeom.method.decompose import run_decompose
    from emogeom.models.timing import duration

    try:
        with cli_progress(console) as progress:
            res = run_decompose(model, templates, samples, max_new_tokens, loose_samples,
                                loose_max_new_tokens, per_emotion, seed, permutations,
                                bootstrap, out, progress, device=device,
                                max_memory=max_memory, profile=profile)
    except EmogeomError as exc:
        fail(exc)
    b, c = res["protocols"]["B"], res["protocols"]["C"]
    table = Table(title=f"method-effect decomposition: {model}")
    for col in ("layer", "sets", "emotions", "ρ", "95% CI", "perm p"):
        table.add_column(col, justify="right" if col not in ("layer", "sets") else "left")
    for r in res["rows"]:
        table.add_row(r["layer"], f"{r['set_x']} (L{r['layer_x']}) vs {r['set_y']} "
                                  f"(L{r['layer_y']})", str(r["n_emotions"]), _f(r["rho"]),
                      f"[{_f(r['ci_low'])}, {_f(r['ci_high'])}]", f"{r['p_perm']:.4g}")
    console.print(table)
    bias = res["bias"]
    console.print(f"bias (conflated − method-clean) = {bias['delta']:+.3f} "
                  f"[{_f(bias['ci_low'])}, {_f(bias['ci_high'])}]: the cross-experiment "
                  f"comparison {bias['direction']} ρ"
                  f"{'' if bias['ci_excludes_zero'] else ' (CI includes 0)'}", soft_wrap=True)
    console.print(f"A: comprehension, default preset, {res['comprehension']['n_stimuli']} "
                  f"stories; B: gen-loose {b.n_templates}x{b.stories}, {b.max_new_tokens} "
                  f"tokens; C/D: gen-reference {c.n_templates} templates x {c.stories} stories,"
                  f" {c.max_new_tokens} tokens; D quantisation: "
                  f"{(res['quantisation'] or {}).get('path')}", soft_wrap=True)
    console.print(f"saved: {res['folder']} (decomposition.csv/.png/.pdf, texts_*.jsonl, "
                  f"manifest.json) in {res['seconds']:.0f} s (profile {res['profile']}; "
                  f"estimated {duration(res['estimate'].seconds)})", soft_wrap=True)


def sensitivity(
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m"),
    base: str = typer.Option("gen-reference", help="Base protocol preset."),
    profile: str | None = profile_option(),
    templates: int | None = typer.Option(
        None, help="Templates of the base (default: the profile's for gen-reference, else the "
                   "preset's)."),
    samples: int | None = typer.Option(None, help="Stories per template (default: as "
                                                  "--templates)."),
    max_new_tokens: int | None = typer.Option(None, help="New tokens (default: as "
                                                         "--templates)."),
    per_emotion: int | None = typer.Option(None, help="Comprehension stories per emotion "
                                                      "(only if the base needs them)."),
    seed: int = typer.Option(0),
    permutations: int | None = typer.Option(
        None, help=f"Mantel permutations [full {PERMUTATIONS}, quick {QUICK['permutations']}]."),
    bootstrap: int | None = typer.Option(
        None, help=f"Bootstrap samples, 0 = none [full {BOOTSTRAP}, quick "
                   f"{QUICK['bootstrap']}]."),
    regenerate: bool = typer.Option(True, help="Also vary knobs that need new texts."),
    out: Path | None = typer.Option(None, help="Output folder (default: out/sensitivity/<model>)."),
    device: str = device_option(),
    max_memory: str | None = max_memory_option(),
) -> None:
    """Vary one generation sub-parameter at a time; ρ of each variant's RDM to the base."""
    from emogeom.method.sensitivity import run_sensitivity
    from emogeom.models.timing import duration

    try:
        with cli_progress(console) as progress:
            res = run_sensitivity(model, base, templates, samples, max_new_tokens, per_emotion,
                                  seed, permutations, bootstrap, out, progress, regenerate,
                                  device=device, max_memory=max_memory, profile=profile)
    except EmogeomError as exc:
        fail(exc)
    p = res["base"]
    table = Table(title=f"sensitivity to one knob at a time: {model} (base {base}: "
                        f"{p.n_templates}x{p.stories}, {p.max_new_tokens} tokens, "
                        f"layer {res['base_layer']})")
    for col in ("knob", "base → variant", "new texts", "ρ to base", "95% CI", "perm p"):
        table.add_column(col, justify="left" if col in ("knob", "base → variant") else "right")
    for r in sorted(res["rows"], key=lambda r: r["rho"]):
        table.add_row(r["knob"], f"{r['base_value']} → {r['value']}",
                      "yes" if r["regenerated"] else "no", _f(r["rho"]),
                      f"[{_f(r['ci_low'])}, {_f(r['ci_high'])}]", f"{r['p_perm']:.4g}")
    console.print(table)
    console.print(f"saved: {res['folder']} (sensitivity.csv, texts/, manifest.json) in "
                  f"{res['seconds']:.0f} s (profile {res['profile']}; estimated "
                  f"{duration(res['estimate'].seconds)})", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add this room's commands to app."""
    app.command()(precision)
    app.command()(decompose)
    app.command()(sensitivity)
