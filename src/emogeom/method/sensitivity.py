"""Sensitivity grid: vary one generation sub-parameter at a time from a base protocol and
report each variant's RDM ρ to the base, so one sees which knobs move the geometry most.

Knobs that only change how states become vectors (token position, layer, baseline, unit norm,
fewer samples) re-use the base run's texts and states; the others (chat template, decoding,
max_new_tokens, templates, seed when sampling) generate again.
"""

from __future__ import annotations

import gc
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import emogeom
from emogeom import artefacts as io
from emogeom.config import Generation, profile_value, run_profile
from emogeom.errors import EmogeomError
from emogeom.extraction.generation import (
    TEMPLATES,
    TOKEN_POSITIONS,
    GenerationRun,
    gen_preset,
    parse_layer_rule,
    resolve_layer,
)
from emogeom.method.decompose import (
    BOOTSTRAP,
    PERMUTATIONS,
    VectorSet,
    bootstrap_replicates,
    compare_sets,
    comprehension_set,
    corpus_tokens,
    generate_texts,
    generation_estimate,
    output_folder,
    readable_records,
    write_jsonl,
)
from emogeom.models import load_model
from emogeom.models.devices import resolve_device
from emogeom.progress import Progress

COLUMNS = ["knob", "value", "base_value", "regenerated", "n_emotions", "rho", "ci_low",
           "ci_high", "p_perm", "layer"]


def generation_variants(base: Generation) -> list[tuple[str, str, Generation]]:
    """(knob, value, protocol) for each knob that needs new texts."""
    def variant(**changes: Any) -> Generation:
        return base.model_copy(update=changes)

    out = [("chat_template", str(not base.chat_template),
            variant(chat_template=not base.chat_template))]
    if base.greedy:
        out.append(("decoding", "sample T=0.7 top-p=0.9", variant(temperature=0.7, top_p=0.9)))
    else:
        out.append(("decoding", "greedy", variant(temperature=0.0, top_p=1.0,
                                                  stories=min(base.stories, 12))))
        out.append(("seed", str(base.seed + 1), variant(seed=base.seed + 1)))
    shorter = max(base.max_new_tokens // 2, 4)
    out.append(("max_new_tokens", str(shorter), variant(max_new_tokens=shorter)))
    offset = base.template_offset + base.n_templates
    if offset + base.n_templates <= len(TEMPLATES):
        out.append(("templates", f"{offset}..{offset + base.n_templates - 1}",
                    variant(template_offset=offset)))
    return out


def analysis_variants(base: Generation) -> list[tuple[str, str, dict[str, Any]]]:
    """(knob, value, changes) for each knob that re-uses the base texts."""
    out: list[tuple[str, str, dict[str, Any]]] = [
        ("position", p, {"position": p}) for p in TOKEN_POSITIONS if p != base.position]
    kind, value = parse_layer_rule(base.layer)
    for f in (0.25, 0.5, 0.75):
        if not (kind == "fraction" and value == f):
            out.append(("layer", f"fraction:{f}", {"layer": f"fraction:{f}"}))
    other = "emotion-mean" if base.baseline == "neutral" else "neutral"
    out.append(("baseline", other, {"baseline": other}))
    out.append(("unit_norm", str(not base.unit_norm), {"unit_norm": not base.unit_norm}))
    if base.stories >= 2:
        out.append(("samples", f"{base.stories // 2} per template",
                    {"stories": base.stories // 2}))
    return out


def _base_value(base: Generation, knob: str) -> str:
    return {"chat_template": str(base.chat_template),
            "decoding": "greedy" if base.greedy else f"sample T={base.temperature} "
                                                     f"top-p={base.top_p}",
            "seed": str(base.seed), "max_new_tokens": str(base.max_new_tokens),
            "templates": f"{base.template_offset}..{base.template_offset + base.n_templates - 1}",
            "position": base.position, "layer": base.layer, "baseline": base.baseline,
            "unit_norm": str(base.unit_norm), "samples": f"{base.stories} per template"}[knob]


def set_from_run(name: str, run: GenerationRun, p: Generation, layer: int) -> VectorSet:
    """The VectorSet of ``run`` read with protocol ``p`` (position, baseline, unit norm,
    stories) at ``layer``."""
    keep = [i for i, r in enumerate(run.ids) if int(r.rsplit("-s", 1)[1]) < p.stories]
    return VectorSet(name, run.states[p.position][layer][keep], [run.labels[i] for i in keep],
                     [run.ids[i] for i in keep], run.conditions, p.baseline, p.unit_norm, layer,
                     name)


def run_sensitivity(
    model: str, base_preset: str = "gen-reference", templates: int | None = None,
    samples: int | None = None, max_new_tokens: int | None = None, per_emotion: int | None = None,
    seed: int = 0, n_perm: int | None = None, n_boot: int | None = None,
    out: str | Path | None = None, progress: Progress | None = None, regenerate: bool = True,
    device: str | None = "auto", max_memory: str | dict | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    """Generate the base protocol and every one-knob variant; write sensitivity.csv, the texts
    and a manifest; return the rows sorted as run. Sizes left None come from the run profile
    (``config.PROFILES``; default quick on a CPU, full on a GPU); ``progress`` gets the profile
    and an estimate of the time before the long work."""
    started = time.time()
    resolved = resolve_device(device)
    profile, why = run_profile(profile, resolved.split(":")[0])
    sized = base_preset == "gen-reference"  # the profile sizes gen-reference; others keep theirs

    def size(name: str, given: int | None) -> int | None:
        return profile_value(profile, name, given) if sized else given

    base = gen_preset(base_preset, n_templates=size("templates", templates),
                      stories=size("samples", samples),
                      max_new_tokens=size("max_new_tokens", max_new_tokens), seed=seed)
    per_emotion = profile_value(profile, "per_emotion", per_emotion)
    n_perm = profile_value(profile, "permutations", n_perm, PERMUTATIONS)
    n_boot = profile_value(profile, "bootstrap", n_boot, BOOTSTRAP)
    if n_perm < 1 or n_boot < 0:
        raise EmogeomError("--permutations must be ≥ 1 and --bootstrap ≥ 0")
    folder = output_folder(out, "sensitivity", model)
    say = progress or (lambda _m: None)
    say(f"profile: {profile} ({why})")
    lm = load_model(model, "fp32", device=device, max_memory=max_memory)
    info = lm.info
    n_layers = info["n_layers"]
    comp_best, comp_info = None, None
    needs_comp = base.layer == "best-comprehension"
    protocols = [("base", base)] + ([(k, p) for k, _, p in generation_variants(base)]
                                    if regenerate else [])
    est = generation_estimate(
        lm, protocols, corpus_tokens(lm, per_emotion) if needs_comp else None,
        ([] if profile == "quick" else ["--profile quick"])
        + ["--samples", "--templates", "--max-new-tokens", "--no-regenerate"])
    say(est.line())
    if needs_comp:
        set_a, comp_info = comprehension_set(lm, per_emotion, seed, progress)
        comp_best = set_a.layer
    base_layer = resolve_layer(base.layer, n_layers, comp_best)
    base_run = generate_texts(lm, base, "base", progress)
    base_set = set_from_run("base", base_run, base, base_layer)
    variants: list[tuple[str, str, bool, VectorSet]] = []
    runs = {"base": base_run}
    for knob, value, changes in analysis_variants(base):
        p = base.model_copy(update=changes)
        layer = resolve_layer(p.layer, n_layers, comp_best)
        variants.append((knob, value, False, set_from_run(f"{knob}={value}", base_run, p, layer)))
    if regenerate:
        for knob, value, p in generation_variants(base):
            run = generate_texts(lm, p, f"{knob}={value}", progress)
            runs[f"{knob}={value}"] = run
            variants.append((knob, value, True,
                             set_from_run(f"{knob}={value}", run, p, base_layer)))
    del lm
    gc.collect()
    boot = (bootstrap_replicates([base_set] + [v[3] for v in variants], n_boot, seed)
            if n_boot > 0 else None)
    rows = []
    for knob, value, regen, vs in variants:
        r = compare_sets(vs, base_set, n_perm, seed, boot)
        rows.append({"knob": knob, "value": value, "base_value": _base_value(base, knob),
                     "regenerated": regen, "n_emotions": r["n_emotions"], "rho": r["rho"],
                     "ci_low": r["ci_low"], "ci_high": r["ci_high"], "p_perm": r["p_perm"],
                     "layer": vs.layer})
    cells = [[f"{r[c]:.6g}" if isinstance(r[c], float) and r[c] == r[c] else
              ("" if isinstance(r[c], float) else str(r[c])) for c in COLUMNS] for r in rows]
    io.write_csv(folder / "sensitivity.csv", COLUMNS, cells)
    for name, run in runs.items():
        safe = name.replace("=", "_").replace(" ", "_").replace(".", "-")
        write_jsonl(folder / "texts" / f"{safe}.jsonl", readable_records(run))
    io.write_json(folder / "manifest.json", {
        "emogeom": emogeom.__version__, "command": "sensitivity", "profile": profile,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "estimate": {"seconds": round(est.seconds, 1), "line": est.line()},
        "model": info, "base_preset": base_preset, "base": base.model_dump(),
        "base_layer": base_layer, "comprehension": comp_info,
        "variants": [{"knob": k, "value": v, "regenerated": g} for k, v, g, _ in variants],
        "statistics": {"method": "spearman", "n_perm": n_perm, "n_boot": n_boot,
                       "seed": seed, "bootstrap": "within-emotion resampling of samples; "
                       "variants over the base samples resampled jointly with it"},
        "rows": rows, "seconds": round(time.time() - started, 1),
        "python": platform.python_version(), "numpy": np.__version__,
    })
    return {"rows": rows, "folder": folder, "base": base, "base_layer": base_layer,
            "seconds": round(time.time() - started, 1), "profile": profile, "estimate": est}

