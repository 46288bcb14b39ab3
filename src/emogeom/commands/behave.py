"""CLI commands for the behave room: `emogeom behave` prints and saves a model's MTI Compliance
facet profile (formal compliance, stance under pressure).

The study runner calls ``behaviour_profile(lm, ...)`` per model and
``link_behaviour_geometry(profiles, rho)`` across models (both re-exported here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from emogeom.behavior.link import link_behaviour_geometry
from emogeom.commands import device_option, fail, max_memory_option
from emogeom.config import Behaviour, default
from emogeom.errors import EmogeomError

__all__ = ["behaviour_profile", "link_behaviour_geometry", "print_link", "print_profile",
           "register"]

console = Console(stderr=False)
err = Console(stderr=True)


def _d(name: str) -> Any:
    return default(Behaviour, name)


def behaviour_profile(lm: Any, **settings: Any) -> dict:
    """Facet profile of a loaded model (see emogeom.behavior.profile.behaviour_profile)."""
    from emogeom.behavior.profile import behaviour_profile as run

    return run(lm, **settings)


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "n/a" if x is None else format(x, fmt)


def print_profile(profile: dict, out: Console = console) -> None:
    """The facet profile as three rich tables: formal scenarios, stance questions, summary."""
    t = Table(title=f"formal compliance: {profile['slug']}")
    for col in ("constraint", "capability", "compliance", "reason (compliance, else capability)"):
        t.add_column(col, justify="right" if col in ("capability", "compliance") else "left")
    for r in profile["formal"]["scenarios"]:
        reason = r["compliance_reason"] if r["included"] else r["capability_reason"]
        comp = _num(r["compliance_score"], ".2f") if r["included"] else "excluded"
        t.add_row(r["constraint"], f"{r['capability_score']:.2f}", comp, reason)
    out.print(t)
    t = Table(title=f"stance under pressure: {profile['slug']}")
    t.add_column("question")
    t.add_column("base")
    for k in range(1, 6):
        t.add_column(f"t{k}")
    t.add_column("first flip", justify="right")
    for r in profile["stance"]["questions"]:
        t.add_row(f"{r['question']} ({r['correct']} / pushed {r['pushed']})", *r["stances"],
                  str(r["first_flip_turn"] or "-"))
    out.print(t)
    f, s = profile["formal"], profile["stance"]
    t = Table(title=f"facet profile: {profile['slug']} ({profile['format_note']})")
    t.add_column("facet")
    t.add_column("value", justify="right")
    t.add_row("formal compliance score", _num(f["score"]))
    t.add_row("  scenarios included / excluded (capability < "
              f"{f['capability_threshold']})", f"{f['n_included']} / {f['n_excluded']}")
    t.add_row("  fully compliant", f"{f['n_fully_compliant']} / {f['n_included']}")
    t.add_row("stance flip rate", f"{_num(s['flip_rate'])} ({s['n_flipped']} / {s['n_valid']})")
    t.add_row("  questions with correct baseline", f"{s['n_valid']} / {s['n_questions']}")
    t.add_row("  mean turn of first flip", _num(s["mean_first_flip_turn"], ".2f"))
    t.add_row("  final stance (valid questions)",
              ", ".join(f"{k} {v}" for k, v in s["final_stance_counts"].items()) or "-")
    t.add_row("  baseline stance (all questions)",
              ", ".join(f"{k} {v}" for k, v in s["baseline_counts"].items()))
    t.add_row("stance hold (1 − flip rate)", _num(profile["facets"]["stance_hold"]))
    out.print(t)


def print_link(link: dict, out: Console = console) -> None:
    """The behaviour ↔ geometry Mantel result, with the small-n caveat when there is one."""
    if link["rho"] is not None:
        exact = f", exact p = {link['p_exact']:.4g}" if link["p_exact"] is not None else ""
        out.print(f"behaviour ↔ geometry ({link['n_models']} models, {link['method']} Mantel): "
                  f"ρ = {link['rho']:.3f}, p = {link['p']:.4g}{exact}", soft_wrap=True)
    for name, why in link["dropped"].items():
        out.print(f"[yellow]dropped:[/] {name}: {why}", soft_wrap=True)
    if link["caveat"]:
        out.print(f"[yellow]caveat:[/] {link['caveat']}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add this room's commands to app."""

    @app.command()
    def behave(
        model: str = typer.Option(..., "--model", "-m",
                                  help="Embedded name, local folder, .gguf file or hub id."),
        temperature: float = typer.Option(_d("temperature"),
                                          help="0 = greedy; > 0 = seeded sampling."),
        seed: int = typer.Option(_d("seed"), help="Seed for sampling (recorded either way)."),
        max_new_tokens: int = typer.Option(_d("max_new_tokens"),
                                           help="Tokens per reply at most."),
        fmt: str = typer.Option(_d("format"), "--format",
                                help="auto | chat | raw (raw: 'User:/Assistant:' text)."),
        out: Path | None = typer.Option(None, help="Output folder; default "
                                                   "out/behave/<model-slug>/."),
        dtype: str = typer.Option("fp32", help="fp32 | bf16 | fp16"),
        trust_remote_code: bool = typer.Option(False, help="Allow model code from the hub."),
        device: str = device_option(),
        max_memory: str | None = max_memory_option(),
    ) -> None:
        """Probe MTI Compliance facets: formal constraints and stance under pressure."""
        from emogeom.behavior.profile import (
            behaviour_estimate,
            check_behaviour,
            n_steps,
            save_profile,
        )
        from emogeom.commands.progress import cli_progress
        from emogeom.config import checked
        from emogeom.models import load_model
        from emogeom.progress import counter

        try:
            settings = check_behaviour(checked(Behaviour, {
                "temperature": temperature, "seed": seed, "max_new_tokens": max_new_tokens,
                "format": fmt}))
            lm = load_model(model, dtype=dtype, trust_remote_code=trust_remote_code,
                            device=device, max_memory=max_memory)
            console.print(behaviour_estimate(lm, settings).line(), soft_wrap=True,
                          highlight=False)
            with cli_progress(console) as progress:
                step = counter(progress, f"probing {lm.source.slug}", n_steps(settings))
                profile = behaviour_profile(lm, settings=settings, on_step=step)
            folder = out or Path("out") / "behave" / lm.source.slug
            files = save_profile(profile, folder, lm.info)
        except EmogeomError as exc:
            fail(exc)
        print_profile(profile)
        console.print(f"saved: {', '.join(str(p) for p in files.values())} "
                      f"({profile['seconds']:.0f} s)", soft_wrap=True)
