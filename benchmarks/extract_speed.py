"""Extraction speed on the shipped corpus, three ways in one run, each in its own process:

(a) emogeom's extraction (batched, pooled in hooks, stops at the deepest layer, no LM head),
(b) a plain per-text HF loop with ``output_hidden_states=True``,
(c) TransformerLens 4 ``TransformerBridge.run_with_cache`` with a resid_post names filter (in the
    same .venv: ``transformer-lens`` is in the dev extra; skipped with a message when absent).

Prints tokens/s, peak RSS, ratios a/b and a/c, and the achieved FLOP/s of (a) against this
machine's dense-matmul rate measured in the same run at the model's shapes.

Usage: .venv/bin/python benchmarks/extract_speed.py [--model smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _child(method: str, model: str, save: str | None = None) -> None:
    """Run one method in this process and print a JSON line."""
    import torch

    from emogeom.extraction import extract_pooled
    from emogeom.extraction.reference import per_text_hidden_states
    from emogeom.models import load_model
    from emogeom.stimuli import load_corpus

    texts = load_corpus().texts
    lm = load_model(model, "fp32")
    load_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tokens = sum(len(lm.tokenizer(t)["input_ids"]) for t in texts)
    if method == "ours":
        extract_pooled(lm.model, lm.tokenizer, texts[:8])  # warm-up
        start = time.perf_counter()
        states = extract_pooled(lm.model, lm.tokenizer, texts)
        if save:
            import numpy as np

            np.save(save, states)
    else:
        per_text_hidden_states(lm.model, lm.tokenizer, texts[:8])
        start = time.perf_counter()
        per_text_hidden_states(lm.model, lm.tokenizer, texts)
    seconds = time.perf_counter() - start
    cfg = lm.model.config.get_text_config()
    from emogeom.extraction import decoder_layers

    layer_params = sum(p.numel() for p in decoder_layers(lm.model).parameters())
    weights_mb = sum(p.numel() * p.element_size() for p in lm.model.parameters()) / 2**20
    print(json.dumps({
        "tokens": tokens, "seconds": seconds, "rss_after_load_mb": load_rss,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "layer_params": layer_params, "weights_mb": weights_mb, "d": cfg.hidden_size,
        "ffn": cfg.intermediate_size, "threads": torch.get_num_threads(),
        "folder": lm.info.get("loaded_from"),
    }))


def _child_tl(folder: str, save: str | None = None) -> None:
    """TransformerLens in this process (its own, so its RSS is its own): per-text
    ``run_with_cache`` on every block's hook_resid_post, mean-pooled from the second token."""
    import numpy as np
    import torch
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer

    from emogeom.stimuli import load_corpus

    texts = load_corpus().texts
    tok = AutoTokenizer.from_pretrained(folder)
    bridge = TransformerBridge.boot_transformers(folder, device="cpu", dtype=torch.float32,
                                                 tokenizer=tok)
    load_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ids = [torch.tensor([tok(t)["input_ids"]]) for t in texts]
    names = lambda n: n.endswith("hook_resid_post")  # noqa: E731
    with torch.inference_mode():
        bridge.run_with_cache(ids[0], names_filter=names)  # warm-up
        start = time.perf_counter()
        pooled = []
        for x in ids:
            _, cache = bridge.run_with_cache(x, names_filter=names)
            layers = sorted(cache.keys(), key=lambda k: int(k.split(".")[1]))
            pooled.append([cache[k][0, 1:].mean(0).numpy() for k in layers])
        seconds = time.perf_counter() - start
    if save:
        np.save(save, np.array(pooled, dtype=np.float32).transpose(1, 0, 2))
    print(json.dumps({"tokens": int(sum(x.shape[1] for x in ids)), "seconds": seconds,
                      "rss_after_load_mb": load_rss,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _run(cmd: list[str]) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def matmul_gflops(d: int, ffn: int, rows: int = 2048, trials: int = 5) -> float:
    """Best dense fp32 matmul rate over the model's layer shapes ([rows, d] x [d, ffn],
    [rows, ffn] x [ffn, d], [rows, d] x [d, d]), best of ``trials`` timed blocks each."""
    import torch

    best = 0.0
    for k, n in ((d, ffn), (ffn, d), (d, d)):
        a, b = torch.randn(rows, k), torch.randn(k, n)
        for _ in range(3):
            a @ b
        repeats = max(5, int(2e10 / (2 * rows * k * n)))
        for _ in range(trials):
            start = time.perf_counter()
            for _ in range(repeats):
                a @ b
            best = max(best, 2 * rows * k * n * repeats / (time.perf_counter() - start) / 1e9)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--child", choices=["ours", "loop", "tl"])
    parser.add_argument("--folder", default=None)
    parser.add_argument("--save", default=None)
    args = parser.parse_args()
    if args.child == "tl":
        _child_tl(args.folder, args.save)
        return
    if args.child:
        _child(args.child, args.model, args.save)
        return
    me = [sys.executable, str(Path(__file__).resolve())]
    tmp = Path(tempfile.mkdtemp())
    res = {"ours": _run([*me, "--child", "ours", "--model", args.model, "--save",
                         str(tmp / "ours.npy")]),
           "loop": _run([*me, "--child", "loop", "--model", args.model])}
    has_tl = importlib.util.find_spec("transformer_lens") is not None
    if has_tl and res["ours"]["folder"]:
        res["tl"] = _run([*me, "--child", "tl", "--folder", res["ours"]["folder"], "--save",
                          str(tmp / "tl.npy")])
    else:
        print("(c) TransformerLens: not installed (pip install -e '.[dev]'), or the model "
              "is not a local folder")
    ours = res["ours"]
    gflops = matmul_gflops(ours["d"], ours["ffn"])
    print(f"model {args.model}: {ours['tokens']} tokens in 420 texts, weights "
          f"{ours['weights_mb']:.0f} MiB, {ours['threads']} threads")
    print(f"{'method':28s} {'tokens/s':>10s} {'seconds':>8s} {'peak RSS MiB':>13s}")
    names = {"ours": "(a) emogeom", "loop": "(b) HF per-text loop", "tl": "(c) TransformerLens"}
    for key, r in res.items():
        print(f"{names[key]:28s} {r['tokens'] / r['seconds']:10.0f} {r['seconds']:8.2f} "
              f"{r['peak_rss_mb']:13.0f}")
    speed = {k: r["tokens"] / r["seconds"] for k, r in res.items()}
    print(f"a/b = {speed['ours'] / speed['loop']:.2f}x", end="")
    print(f", a/c = {speed['ours'] / speed['tl']:.2f}x" if "tl" in speed else "")
    achieved = 2 * ours["layer_params"] * ours["tokens"] / ours["seconds"] / 1e9
    print(f"matmul rate here (fp32, best over the layer shapes, d={ours['d']}, "
          f"ffn={ours['ffn']}): "
          f"{gflops:.0f} GFLOP/s; emogeom achieved {achieved:.0f} GFLOP/s "
          f"(2 x layer params x tokens) = {achieved / gflops:.0%}")
    ceiling = gflops * 1e9 / (2 * ours["layer_params"])
    print(f"bound: at 100 % of that matmul rate the decoder layers alone allow "
          f"{ceiling:.0f} tokens/s, i.e. at most {ceiling / speed['loop']:.2f}x the per-text "
          "loop" + (f" and {ceiling / speed['tl']:.2f}x TransformerLens" if "tl" in speed
                    else ""))
    if "tl" in res:
        import numpy as np

        from emogeom.extraction.doctor import layer_agreement
        from emogeom.stimuli import load_corpus

        corpus = load_corpus()
        rows = layer_agreement(np.load(tmp / "ours.npy"), np.load(tmp / "tl.npy"),
                               corpus.labels, list(corpus.emotions))
        print("parity (a) vs (c) TransformerLens, all 420 texts: max rel diff "
              f"{max(r['rel_diff'] for r in rows):.2e}, min RDM rho "
              f"{min(r['rdm_rho'] for r in rows):.6f}, min emotion cosine "
              f"{min(r['min_emotion_cosine'] for r in rows):.6f} over {len(rows)} layers")
    print(f"peak RSS of (a) {ours['peak_rss_mb']:.0f} MiB vs weights {ours['weights_mb']:.0f} "
          f"MiB + 1024 = {ours['weights_mb'] + 1024:.0f} MiB")


if __name__ == "__main__":
    main()
