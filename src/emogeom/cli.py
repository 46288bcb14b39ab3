"""Command line: a thin shell over the Python API (parse → call → print)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from emogeom.errors import EmogeomError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Emotion geometry of language models.")
console = Console(stderr=False)
err = Console(stderr=True)


def _fail(exc: Exception) -> None:
    err.print(f"[bold red]error:[/] {exc}", soft_wrap=True, markup=True, highlight=False)
    raise typer.Exit(2)


@app.callback()
def main() -> None:
    """emogeom: extract emotion vectors, measure and compare their geometry."""


@app.command()
def run(
    model: list[str] | None = typer.Option(  # noqa: UP007
        None, "--model", "-m",
        help="Embedded name, local folder, .gguf file or hub id; repeat for several. "
             "Default: smollm2-135m-instruct and gemma3-270m."),
    corpus: Path | None = typer.Option(None, help="Story corpus (.jsonl); default: shipped."),  # noqa: UP007
    neutral: Path | None = typer.Option(None, help="Neutral sentences (.jsonl)."),  # noqa: UP007
    dtype: str = typer.Option("fp32", help="fp32 | bf16 | fp16"),
    pooling: str = typer.Option("mean", help="last | mean"),
    mean_start: int = typer.Option(1, help="Mean pooling skips the first k tokens."),
    layer_criterion: str = typer.Option("reliability", help="reliability | reference"),
    denoise: float = typer.Option(0.0, help="Project off neutral PCs explaining this "
                                            "variance fraction (0 = off)."),
    permutations: int = typer.Option(10_000, help="Mantel permutations."),
    seed: int = typer.Option(0, help="Seed for splits and permutations."),
    out: Path = typer.Option(Path("out"), help="Output folder."),
    trust_remote_code: bool = typer.Option(False, help="Allow model code from the hub."),
) -> None:
    """Extract, describe and compare emotion geometry; write artefacts and report.html."""
    from emogeom.study import RunSettings, run_study
    from emogeom.study.pipeline import EMBEDDED_DEFAULT

    settings = RunSettings(
        models=list(model) if model else list(EMBEDDED_DEFAULT),
        corpus=str(corpus) if corpus else None, neutral=str(neutral) if neutral else None,
        out=str(out), dtype=dtype, pooling=pooling, mean_start=mean_start,
        layer_criterion=layer_criterion, denoise=denoise, n_perm=permutations, seed=seed,
        trust_remote_code=trust_remote_code,
    )
    started = time.time()
    try:
        result = run_study(settings, console)
    except EmogeomError as exc:
        _fail(exc)
    table = Table(title="emotion geometry per model")
    table.add_column("model", no_wrap=True)
    for col in ("best layer", "anisotropy", "RDM std", "reliability", "|r| PC1~val"):
        table.add_column(col, justify="right")
    for r in result["results"]:
        m = r.metrics
        table.add_row(r.slug, f"{m['best_layer']} / {m['n_layers']}",
                      f"{m['anisotropy_at_best']:.3f}", f"{m['rdm_std_at_best']:.3f}",
                      f"{m['reliability_at_best']:.3f}", f"{m['pc1_valence_abs_r']:.2f}")
    console.print(table)
    for c in result["comparisons"]:
        console.print(f"{c['model_a']} (L{c['layer_a']}) vs {c['model_b']} (L{c['layer_b']}): "
                      f"Spearman ρ = {c['rho']:.3f}, permutation p = {c['p_perm']:.4g}")
    console.print(f"report: {result['report']}  ({time.time() - started:.0f} s)")


@app.command()
def report(out: Path = typer.Argument(..., help="A folder written by `emogeom run`.")) -> None:
    """Re-render report.html from the artefacts in OUT (no model is loaded)."""
    from emogeom.report import build_report
    from emogeom.report.html import discover

    if not out.is_dir() or not discover(out):
        _fail(EmogeomError(f"{out} holds no model results (metrics.json); run `emogeom run`"))
    try:
        console.print(f"report: {build_report(out)}")
    except EmogeomError as exc:
        _fail(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
