"""Which layer rule picks geometry that carries over to texts nobody tuned on?

For each model: the shipped corpus (or ``--corpus``) gives the geometry at every layer and the
layer each rule picks (``reliability``: most reliable RDM; ``general``: highest cross-style
ρ; ``reference``: the reference study's argmin of mean pairwise cosine). The held-out set
(``benchmarks/data/heldout.jsonl``: texts written after the corpus was fixed, in other
forms, never used for any other choice) gives its own RDM at every layer. Printed per rule:
the layer, its reliability and cross-style ρ on the corpus, and the held-out ρ (Spearman
between the corpus RDM and the held-out RDM at that layer), beside the best held-out ρ over
all layers as a yardstick. Also the PC–valence |r| at each pick.

Usage: .venv/bin/python benchmarks/layer_criteria.py [--model NAME ...] [--corpus FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RULES = ("reliability", "general", "reference")


def main() -> None:
    import emogeom
    from emogeom.geometry import rowwise_spearman, upper

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append",
                    help="embedded name or model path (repeat); default: both embedded models")
    ap.add_argument("--corpus", default=None, help="corpus file (default: the shipped one)")
    ap.add_argument("--heldout", default=str(HERE / "data" / "heldout.jsonl"))
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    corpus = emogeom.load_corpus(args.corpus)
    heldout = emogeom.load_corpus(args.heldout)
    print(f"corpus: {corpus.source} ({len(corpus.stimuli)} texts, styles: "
          f"{', '.join(corpus.styles) or 'none'}); held-out: {heldout.source} "
          f"({len(heldout.stimuli)} texts)")
    results = {}
    for name in args.model or ["smollm2-135m-instruct", "gemma3-270m"]:
        start = time.perf_counter()
        model, tok = emogeom.load_model(name, device="cpu")
        g = emogeom.extract(model, tok, corpus, references=False, name=name)
        h = emogeom.extract(model, tok, heldout, references=False, name=f"{name} held-out")
        held = rowwise_spearman(upper(g.rdms), upper(h.rdms))
        m = g.metrics
        rows = {}
        print(f"\n{name}: {g.n_layers} layers; cross-style split: {m['cross_style_split']}; "
              f"{time.perf_counter() - start:.0f} s")
        print(f"{'rule':<12}{'layer':>6}{'reliability':>13}{'cross-style':>13}"
              f"{'normalised':>12}{'held-out ρ':>12}")
        for rule in RULES:
            layer = int(m[f"best_layer_{rule}"])
            rows[rule] = {"layer": layer, "reliability": m["reliability"][layer],
                          "cross_style": m["cross_style"][layer],
                          "cross_style_normalised": m["cross_style_normalised"][layer],
                          "heldout_rho": float(held[layer])}
            r = rows[rule]
            print(f"{rule:<12}{layer:>6}{r['reliability']:>13.3f}{r['cross_style']:>13.3f}"
                  f"{r['cross_style_normalised']:>12.3f}{r['heldout_rho']:>12.3f}")
        top = int(np.nanargmax(held))
        print(f"{'(best held-out layer)':<22}{top:>6} held-out ρ {held[top]:.3f}")
        print("held-out ρ by layer: " + " ".join(f"{x:.2f}" for x in held))
        print(f"PC1–valence |r| at the chosen layer ({m['best_layer_criterion']}, "
              f"L{g.best_layer}): {m['pc1_valence_abs_r']:.3f}; valence on PC"
              f"{m['best_pc_valence']} (|r| {m['best_pc_valence_abs_r']:.3f})")
        results[name] = {"rules": rows, "heldout_by_layer": [float(x) for x in held],
                         "best_heldout_layer": top,
                         "chosen": {"criterion": m["best_layer_criterion"],
                                    "layer": g.best_layer,
                                    "pc1_valence_abs_r": m["pc1_valence_abs_r"],
                                    "best_pc_valence": m["best_pc_valence"],
                                    "best_pc_valence_abs_r": m["best_pc_valence_abs_r"]}}
        del model, tok
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
