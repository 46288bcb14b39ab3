"""Estimated GPU memory and extraction time for the 12 models of studies/paper-12.yaml, from
the shape configs shipped in the repository (parameters counted on the meta device, nothing
downloaded) and the shipped corpus's token counts. Prints a markdown table; every figure is an
estimate, by the formulas printed under it.

Token counts: the embedded SmolLM2 tokenizer (exact for SmolLM2-1.7B) and the embedded
Gemma-3 tokenizer (exact for gemma-3-1b); Qwen2.5, Llama-3.x and Mistral use the SmolLM2
counts (their tokenizers are not shipped; assumed within about +-15 %). Padded tokens are what
``token_budget_batches`` makes of them at ``max_batch_tokens`` 8192.

Usage: .venv/bin/python benchmarks/estimate_paper12.py [--fraction 0.4] [--disk-gbps 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _shapes import param_counts, shape_dict  # noqa: E402

GIB = 2**30
BUDGET = 8192          # padded tokens per batch (max_batch_tokens default)
CONTEXT_GIB = 0.5      # CUDA context + allocator slack
PEAK_FP16 = {"A100": 312e12, "H100 SXM": 989e12}   # dense fp16/bf16 tensor-core FLOP/s

# paper-12 hub id -> shipped shape
SHAPE_OF = {
    "Qwen/Qwen2.5-1.5B": "qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B-Instruct": "qwen2.5-1.5b",
    "HuggingFaceTB/SmolLM2-1.7B": "smollm2-1.7b",
    "HuggingFaceTB/SmolLM2-1.7B-Instruct": "smollm2-1.7b",
    "meta-llama/Llama-3.2-3B": "llama-3.2-3b", "meta-llama/Llama-3.2-3B-Instruct": "llama-3.2-3b",
    "google/gemma-3-1b-pt": "gemma-3-1b", "google/gemma-3-1b-it": "gemma-3-1b",
    "mistralai/Mistral-7B-v0.3": "mistral-7b-v0.3",
    "mistralai/Mistral-7B-Instruct-v0.3": "mistral-7b-v0.3",
    "meta-llama/Llama-3.1-8B": "llama-3.1-8b", "meta-llama/Llama-3.1-8B-Instruct": "llama-3.1-8b",
}
TOKENIZER_OF = {"gemma-3-1b": "gemma3-270m"}  # else smollm2-135m-instruct


def preset_tokens(model: str) -> dict[str, dict[str, int]]:
    """Real and padded tokens of each preset's texts (stories + neutral sentences)."""
    from emogeom.extraction.batching import token_budget_batches
    from emogeom.models import load_model
    from emogeom.stimuli import load_corpus, load_neutral_sentences

    try:
        tok = load_model(model, "fp32", device="cpu").tokenizer
    except TypeError:  # emogeom before the device argument
        tok = load_model(model, "fp32").tokenizer
    out = {}
    for preset, per_emotion, n_neutral in (("default", None, None), ("paper", 3, 20)):
        real = padded = 0
        for texts in (load_corpus(per_emotion=per_emotion).texts,
                      load_neutral_sentences(n=n_neutral).texts):
            lengths = [len(tok(t)["input_ids"]) for t in texts]
            real += sum(lengths)
            padded += sum(len(b) * max(lengths[i] for i in b)
                          for b in token_budget_batches(lengths, BUDGET))
        out[preset] = {"real": real, "padded": padded}
    return out


def main() -> None:
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fraction", type=float, default=0.4,
                        help="achieved fraction of the GPU's dense fp16 rate")
    parser.add_argument("--disk-gbps", type=float, default=2.0,
                        help="GB/s to read the weights from local disk")
    args = parser.parse_args()
    study = yaml.safe_load((ROOT / "studies" / "paper-12.yaml").read_text())
    tokens = {m: preset_tokens(m) for m in ("smollm2-135m-instruct", "gemma3-270m")}

    gpus = list(PEAK_FP16)
    print("| model | shape (layers, d, ffn, vocab) | params | weights fp16 GiB | "
          "peak GPU GiB | default: padded tokens | default: s "
          + " / ".join(gpus) + " | paper: padded tokens | paper: s " + " / ".join(gpus)
          + f" | load from disk s ({args.disk_gbps:g} GB/s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for m in study["models"]:
        shape = SHAPE_OF[m["id"]]
        d = shape_dict(shape)
        n = param_counts(shape)
        t = tokens[TOKENIZER_OF.get(shape, "smollm2-135m-instruct")]
        weights = 2 * n["total"]
        act = BUDGET * (3 * d["intermediate_size"] + 6 * d["hidden_size"]) * 2 \
            + BUDGET * d["hidden_size"] * 4
        peak = weights + act + CONTEXT_GIB * GIB

        def secs(preset: str, layers: int = n["layers"], tok: dict = t) -> str:
            flops = 2 * layers * tok[preset]["padded"]
            return " / ".join(f"{flops / (args.fraction * PEAK_FP16[g]):.2f}" for g in gpus)

        print(f"| {m['label']} | {d['num_hidden_layers']}, {d['hidden_size']}, "
              f"{d['intermediate_size']}, {d['vocab_size']:,} | {n['total'] / 1e9:.2f}B | "
              f"{weights / GIB:.1f} | {peak / GIB:.1f} | {t['default']['padded']:,} | "
              f"{secs('default')} | {t['paper']['padded']:,} | {secs('paper')} | "
              f"{weights / (args.disk_gbps * 1e9):.0f} |")
    print()
    print(f"Estimates, not measurements. weights = 2 B x parameters (tied embeddings once); "
          f"peak GPU = weights + activations + {CONTEXT_GIB} GiB (CUDA context), activations "
          f"= T x (3 x ffn + 6 x d) x 2 B + T x d x 4 B (fp32 pooling copy) at T = {BUDGET} "
          "padded tokens per batch (the LM head never runs, so no logits).")
    print(f"Time = 2 x decoder-layer parameters x padded tokens / ({args.fraction:.0%} of the "
          "dense fp16 rate: " + ", ".join(f"{g} {PEAK_FP16[g] / 1e12:.0f}" for g in gpus)
          + " TFLOP/s); attention-score FLOPs (< 1 % at ~65-token stories) are left out. "
          "Tokens: stories + neutral sentences (default: 420 + 60, paper: 63 + 20), SmolLM2 "
          "tokenizer (Gemma-3's for gemma-3-1b; Qwen/Llama/Mistral assumed equal to "
          "SmolLM2's, +-15 %), padded by token_budget_batches.")
    print("Extraction is seconds; a model's wall time is dominated by loading its weights "
          "(last column, local disk) or downloading them, and by the CPU-side statistics "
          "(permutations, bootstrap). With one pass per model (issue 16 part 5) a study "
          "extracts once for both presets: the default preset's figure.")


if __name__ == "__main__":
    main()
