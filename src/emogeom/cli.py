"""Command line: a thin shell over the Python API (parse → call → print)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from emogeom.commands import device_option, fail, max_memory_option, print_error
from emogeom.errors import EmogeomError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Emotion geometry of language models.")
console = Console(stderr=False)


@app.callback()
def root(debug: bool = typer.Option(
        False, "--debug", help="Show the full traceback of an error (also EMOGEOM_DEBUG=1).")
) -> None:
    """emogeom: extract emotion vectors, measure and compare their geometry."""


corpus_app = typer.Typer(no_args_is_help=True, help="Check or generate stimulus corpora.")
app.add_typer(corpus_app, name="corpus")


@corpus_app.command("check")
def corpus_check(
    file: Path | None = typer.Argument(None, help="Corpus (.jsonl, .csv or .tsv); default: "
                                                  "shipped."),
    columns: str | None = typer.Option(
        None, help="The file's column names, e.g. text=passage,emotion=label."),
    synonyms: Path | None = typer.Option(None, help="JSON {emotion: [words]} to check "
                                                    "leakage against; default: shipped list."),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Also count each story's tokens as this model reads them "
                                    "(its tokenizer and config only) against its context."),
    chat_template: str = typer.Option("raw", help="How --model reads the stories: raw | chat "
                                                  "(each story as a user message)."),
    trust_remote_code: bool = typer.Option(False, help="Allow --model's own code (auto_map)."),
) -> None:
    """Validate a corpus: counts, lengths, topics, duplicates and emotion-word leakage; with
    --model, token lengths against the model's context (exit 1 when a story is over it)."""
    from emogeom.extraction.context import model_story_lengths
    from emogeom.stimuli import load_corpus
    from emogeom.stimuli.check import LENGTH_RATIO_MAX, check_corpus, load_synonyms

    try:
        corpus = load_corpus(file, columns=columns)
        rep = check_corpus(corpus, load_synonyms(synonyms) if synonyms else None)
        lengths = (model_story_lengths(model, corpus, chat_template, trust_remote_code)
                   if model else None)
    except (EmogeomError, OSError, ValueError) as exc:
        fail(exc)
    table = Table(title=f"corpus check: {file or 'shipped corpus'}")
    table.add_column("emotion", no_wrap=True)
    for col in ("stories", "mean tokens", "topics", "leaks"):
        table.add_column(col, justify="right")
    for r in rep.rows:
        table.add_row(r.emotion, str(r.count), f"{r.mean_tokens:.1f}", str(r.topics),
                      str(len(r.leaks)))
    console.print(table)
    if rep.styles:
        st = Table(title="texts per style × emotion (mean-length ratio per style)")
        st.add_column("emotion", no_wrap=True)
        for style in rep.styles:
            st.add_column(f"{style}\n{rep.style_ratios[style]:.2f}", justify="right")
        for r in rep.rows:
            st.add_row(r.emotion, *(str(rep.styles[style][r.emotion]) for style in rep.styles))
        console.print(st)
    console.print(f"{sum(r.count for r in rep.rows)} texts, {len(rep.rows)} emotions, "
                  f"{len(rep.styles) or 'no'} styles, {rep.topics} topics; "
                  f"mean-length ratio max/min = {rep.length_ratio:.3f} (limit "
                  f"{LENGTH_RATIO_MAX}); leaking stories = {sum(len(r.leaks) for r in rep.rows)};"
                  f" duplicate groups = {len(rep.duplicates)}", soft_wrap=True)
    for w in rep.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    if lengths is not None:
        limit = lengths["limit"]
        ctx = f"{limit[0]} ({limit[1]})" if limit else "unknown"
        lt = Table(title=f"{model}: tokens per story ({chat_template}); context {ctx}")
        lt.add_column("emotion", no_wrap=True)
        for col in ("stories", "min", "mean", "max", "over context"):
            lt.add_column(col, justify="right")
        for r in lengths["rows"]:
            over = ", ".join(r["over"][:3]) + (" ..." if len(r["over"]) > 3 else "")
            lt.add_row(r["emotion"], str(r["n"]), str(r["min"]), f"{r['mean']:.1f}",
                       str(r["max"]), f"[bold red]{len(r['over'])}: {over}[/]" if r["over"]
                       else "0")
        console.print(lt)
        if limit is None:
            console.print(f"{model}: its config names no context length; not checked",
                          soft_wrap=True, highlight=False)
        elif lengths["n_over"]:
            n = lengths["n_over"]
            print_error(f"{n} {'story is' if n == 1 else 'stories are'} longer than {model} "
                        f"reads ({limit[0]} tokens); shorten {'it' if n == 1 else 'them'} or "
                        "run with --truncate")
        else:
            console.print(f"every story fits {model}'s context of {limit[0]} tokens",
                          soft_wrap=True, highlight=False)
    for e in rep.errors:
        print_error(e)
    if not rep.ok or (lengths is not None and lengths["n_over"]):
        raise typer.Exit(1)


@corpus_app.command("generate")
def corpus_generate(
    model: str = typer.Option(..., "--model", "-m", help="An instruct model (chat template)."),
    per_emotion: int = typer.Option(20, help="Stories per emotion (topics in turn)."),
    out: Path = typer.Option(..., help="New .jsonl file to write."),
    emotions: str | None = typer.Option(None, help="Comma-separated subset; default: all 21."),
    seed: int = typer.Option(0, help="Base seed for sampling."),
    max_new_tokens: int = typer.Option(120),
    temperature: float = typer.Option(0.8),
    top_p: float = typer.Option(0.95),
    device: str = device_option(),
    max_memory: str | None = max_memory_option(),
) -> None:
    """Have a model write a corpus, emotion words forbidden and checked; saves JSON Lines."""
    from emogeom.commands.progress import cli_progress
    from emogeom.emotions import EMOTIONS
    from emogeom.models.devices import resolve_device
    from emogeom.stimuli.generate import write_corpus

    chosen = [e.strip() for e in emotions.split(",")] if emotions else list(EMOTIONS)
    try:
        resolve_device(device)  # an absent device fails before the progress display
        with cli_progress(console) as progress:
            result = write_corpus(model, per_emotion, out, chosen, seed, max_new_tokens,
                                  temperature, top_p, device=device, max_memory=max_memory,
                                  progress=progress)
    except EmogeomError as exc:
        fail(exc)
    console.print(f"wrote {result['kept']} stories to {result['out']}; dropped after retries "
                  f"(forbidden word used): {result['dropped'] or 'none'}")


@app.command()
def doctor(
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m"),
    dtype: str = typer.Option("fp32", help="fp32 | bf16 | fp16"),
    per_emotion: int = typer.Option(3, help="Stories per emotion to check."),
    pooling: str = typer.Option("mean", help="last | mean"),
    device: str = device_option(),
    max_memory: str | None = max_memory_option(),
) -> None:
    """Check that the fast extraction equals HF output_hidden_states, layer by layer."""
    from emogeom.extraction.doctor import doctor as run_doctor

    try:
        res = run_doctor(model, dtype, per_emotion, pooling, device=device,
                         max_memory=max_memory)
    except EmogeomError as exc:
        fail(exc)
    place = res["device"]
    gpus = ", ".join(g["name"] for g in place.get("gpus", []))
    console.print(f"{res['model']}: dtype asked {res['dtype']}, loaded {res['dtype_loaded']}; "
                  f"{res['n_texts']} texts, pooling {pooling}; on "
                  f"{', '.join(place['devices'])}{f' ({gpus})' if gpus else ''}",
                  soft_wrap=True, highlight=False)
    if res["non_finite"]:
        console.print(f"[bold red]FAIL[/]: {res['non_finite']}", soft_wrap=True)
        raise typer.Exit(1)
    table = Table(title="fast hook path vs per-text output_hidden_states (eager)")
    for col in ("layer", "max |diff|", "rel diff", "min emotion cos", "RDM ρ"):
        table.add_column(col, justify="right")
    for r in res["layers"]:
        table.add_row(str(r["layer"]), f"{r['max_abs_diff']:.2e}", f"{r['rel_diff']:.2e}",
                      f"{r['min_emotion_cosine']:.6f}", f"{r['rdm_rho']:.6f}")
    console.print(table)
    if not res["last_layer_checked"]:
        console.print("note: no final norm found to strip; the last layer was not compared")
    console.print(f"TransformerLens: {res['transformer_lens']}", soft_wrap=True)
    colour = "green" if res["status"] == "PASS" else "bold red"
    console.print(f"[{colour}]{res['status']}[/] (rel diff ≤ {res['tolerance_rel']:g} and "
                  f"RDM ρ ≥ {res['min_rho']} on every layer)")
    if res["status"] != "PASS":
        raise typer.Exit(1)


@app.command()
def report(out: Path = typer.Argument(..., help="A study folder (`emogeom run` or "
                                                "`emogeom study run`).")) -> None:
    """Re-render report.html from the artefacts in OUT (no model is loaded)."""
    from emogeom.report.study import build_study_report
    from emogeom.study.lock import output_lock
    from emogeom.study.runner import verify_study, write_study_manifest

    if not (out / "study.json").is_file():
        fail(EmogeomError(f"{out} is not a study folder (no study.json); run `emogeom run` "
                          "or `emogeom study run` first"))
    try:
        verify_study(out)
        with output_lock(out):
            path = build_study_report(out)
            write_study_manifest(out)
    except EmogeomError as exc:
        fail(exc)
    except (KeyError, ValueError) as exc:
        fail(EmogeomError(f"cannot re-render {out}: {exc}"))
    console.print(f"report: {path}")


from emogeom.commands import behave, export, method, steer, study  # noqa: E402

for _room in (study, method, steer, behave, export):
    _room.register(app)


def main() -> None:
    """The ``emogeom`` command: the typer app behind the one-line error boundary."""
    from emogeom.commands.boundary import guarded

    guarded(app)


if __name__ == "__main__":  # pragma: no cover
    main()
