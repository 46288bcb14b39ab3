"""CLI commands for the steer room: ``emogeom steer`` (dose-response and regimes)."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from emogeom.commands import device_option, fail, max_memory_option
from emogeom.config import Steering, default
from emogeom.errors import EmogeomError

console = Console()


def _d(name: str):
    return default(Steering, name)


def _num(x: float | None, fmt: str = ".2f") -> str:
    return "–" if x is None or not math.isfinite(x) else format(x, fmt)


def _short(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def steer_command(
    model: str = typer.Option(..., "--model", "-m", help="Embedded name, local folder, .gguf "
                                                         "file or hub id."),
    emotion: str | None = typer.Option(
        None, help="Steer every prompt toward this emotion. Default: the two built-in "
                   "scenarios (hostile prompt → calm, neutral prompt → hostile)."),
    prompt: list[str] | None = typer.Option(
        None, "--prompt", help="Add a prompt steered toward --emotion; repeat for several."),
    default_prompts: bool = typer.Option(_d("default_prompts"),
                                         help="Include the two built-in prompts."),
    strengths: str = typer.Option(
        ",".join(f"{x:g}" for x in _d("strengths")),
        help="Comma-separated strengths, in units of the layer's mean residual norm (0 is "
             "added)."),
    layers: str | None = typer.Option(None, help="Layer, range 'a-b', list 'a,b' or 'all'. "
                                                 "Default: round(0.6 × layers)."),
    max_new_tokens: int = typer.Option(_d("max_new_tokens")),
    temperature: float = typer.Option(_d("temperature"),
                                      help="0 = greedy; > 0 = sampling seeded by --seed."),
    top_p: float = typer.Option(_d("top_p")),
    seed: int = typer.Option(_d("seed"), help="Sampling seed (the same at every strength)."),
    samples: int = typer.Option(_d("samples"),
                                help="Samples per prompt (needs --temperature > 0)."),
    per_emotion: int = typer.Option(_d("per_emotion"),
                                    help="Stories per emotion used to build the vectors."),
    vectors: Path | None = typer.Option(
        None, help="vectors.safetensors from `emogeom run` for this model, instead of "
                   "computing vectors from the corpus."),
    dtype: str = typer.Option(_d("dtype"), help="fp32 | bf16 | fp16"),
    chat_template: bool = typer.Option(
        _d("chat_template"), help="Wrap prompts in the model's chat template when it has one."),
    out: Path | None = typer.Option(None, help="Output folder. Default: "
                                               "out/steer/<model>-<emotion>/"),
    trust_remote_code: bool = typer.Option(_d("trust_remote_code"),
                                           help="Allow model code from the hub."),
    device: str = device_option(),
    max_memory: str | None = max_memory_option(),
) -> None:
    """Steer generation with an emotion vector over a grid of strengths; print outputs,
    quality metrics and regimes; save outputs.jsonl, metrics.json, manifest.json."""
    from emogeom.commands.progress import cli_progress
    from emogeom.config import checked
    from emogeom.steering.run import run_steer

    try:
        settings = checked(Steering, dict(
            model=model, emotion=emotion, prompts=list(prompt or []),
            default_prompts=default_prompts, strengths=strengths, layers=layers,
            max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed,
            samples=samples, per_emotion=per_emotion, vectors=str(vectors) if vectors else None,
            dtype=dtype, chat_template=chat_template, out=str(out) if out else None,
            trust_remote_code=trust_remote_code))
        with cli_progress(console) as progress:
            result = run_steer(settings, progress, device=device, max_memory=max_memory)
    except EmogeomError as exc:
        fail(exc)
    summary = result["summary"]
    info = result["model"]
    console.print(f"{info['model']}: {info['n_layers']} layers, d={info['d_model']}; steering "
                  f"layer(s) {summary['layers']}, residual norm "
                  + ", ".join(f"L{k} {v:.1f}" for k, v in summary["residual_norms"].items()),
                  soft_wrap=True, highlight=False)
    outputs = Table(title="steered outputs (truncated; full text in outputs.jsonl)")
    outputs.add_column("α", justify="right")
    outputs.add_column("scenario", no_wrap=True)
    outputs.add_column("output")
    for col in ("words", "rep3", "dist2", "ppl×", "shift"):
        outputs.add_column(col, justify="right")
    for r in result["records"]:
        outputs.add_row(f"{r['strength']:g}", r["scenario"], escape(_short(r["output"], 70)),
                        str(r["words"]), _num(r["repeated_3gram_share"]),
                        _num(r["distinct_2"]), _num(r["perplexity_ratio"]),
                        _num(r["emotion_shift"], ".1f"))
    console.print(outputs)
    dose = Table(title="dose-response")
    for col in ("α", "n", "words", "repeating", "short", "dist2", "ppl", "ppl×", "shift",
                "regime (reference)", "regime (ppl ratio)"):
        dose.add_column(col, justify="right" if col not in ("regime (reference)",
                                                              "regime (ppl ratio)") else "left")
    for row in summary["per_strength"]:
        dose.add_row(f"{row['strength']:g}", str(row["n_outputs"]), _num(row["mean_words"], ".1f"),
                     _num(row["share_repeating"]), _num(row["share_short"]),
                     _num(row["mean_distinct_2"]), _num(row["median_perplexity"], ".1f"),
                     _num(row["median_perplexity_ratio"]), _num(row["mean_emotion_shift"], ".1f"),
                     row["regime_reference"], row["regime_perplexity"])
    console.print(dose)
    reg = summary["regimes"]
    console.print(f"regime at the strongest strength: reference rule "
                  f"[bold]{reg['reference']['regime']}[/] (first non-surgical α: "
                  f"{reg['reference']['onset_strength']}), perplexity rule "
                  f"[bold]{reg['perplexity']['regime']}[/] (first non-surgical α: "
                  f"{reg['perplexity']['onset_strength']})", soft_wrap=True, highlight=False)
    console.print(f"saved: {result['out']}/outputs.jsonl, metrics.json, manifest.json",
                  soft_wrap=True, highlight=False)


def register(app: typer.Typer) -> None:
    """Add this room's commands to app."""
    app.command("steer")(steer_command)
