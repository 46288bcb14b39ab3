"""Helpers for benchmarks/gpu_check.sh (each prints one ``RESULT <name> PASS|FAIL <detail>``
line per check for the script's summary table).

  compare --model M --dtypes fp32,bf16,fp16 [--per-emotion 3] [--device cuda]
      emogeom's pooled states on the GPU at each dtype against the same extraction on the CPU
      at fp32, with ``emogeom doctor``'s tolerances (max rel diff and RDM rho per layer).
  speed --model M --dtypes bf16,fp16 [--device cuda]
      extraction tokens/s on the whole shipped corpus (420 texts), after a warm-up.

The model goes onto the GPU through ``load_model(..., device=...)`` (issue 16); with an older
emogeom whose ``load_model`` has no ``device`` argument it is loaded on the CPU and moved with
``.to(device)``, and the line says so.
"""

from __future__ import annotations

import argparse
import time


def _load(model: str, dtype: str, device: str):
    from emogeom.models import load_model

    try:
        return load_model(model, dtype, device=device), "load_model(device=)"
    except TypeError:  # emogeom without the device argument
        lm = load_model(model, dtype)
        lm.model.to(device)
        return lm, "loaded on CPU then .to(device)"


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def compare(args: argparse.Namespace) -> int:
    import numpy as np

    from emogeom.extraction import NonFiniteActivations, extract_pooled
    from emogeom.extraction.doctor import MIN_RHO, TOLERANCE, layer_agreement
    from emogeom.stimuli import load_corpus

    corpus = load_corpus(per_emotion=args.per_emotion)
    emotions = list(corpus.emotions)
    cpu, _ = _load(args.model, "fp32", "cpu")
    ref = extract_pooled(cpu.model, cpu.tokenizer, corpus.texts, "mean", 1)
    del cpu
    failed = 0
    for dtype in args.dtypes.split(","):
        name = f"gpu-vs-cpu-fp32 {args.model} {dtype}"
        try:
            lm, how = _load(args.model, dtype, args.device)
            ours = extract_pooled(lm.model, lm.tokenizer, corpus.texts, "mean", 1)
        except NonFiniteActivations as exc:
            print(f"RESULT {name} FAIL non-finite: {exc}")
            failed += 1
            continue
        except Exception as exc:  # report and go on to the next dtype
            print(f"RESULT {name} FAIL {type(exc).__name__}: {str(exc)[:160]}")
            failed += 1
            continue
        rows = layer_agreement(ours, ref, corpus.labels, emotions)
        rel = max(r["rel_diff"] for r in rows)
        rho = min(r["rdm_rho"] for r in rows)
        ok = rel <= TOLERANCE[dtype] and rho >= MIN_RHO[dtype]
        failed += not ok
        print(f"RESULT {name} {'PASS' if ok else 'FAIL'} max_rel_diff={rel:.2e} "
              f"(tol {TOLERANCE[dtype]:g}) min_rdm_rho={rho:.5f} (min {MIN_RHO[dtype]}) "
              f"layers={len(rows)} finite={bool(np.isfinite(ours).all())} via {how}")
        del lm
    return 1 if failed else 0


def speed(args: argparse.Namespace) -> int:
    import torch

    from emogeom.extraction import extract_pooled
    from emogeom.stimuli import load_corpus

    texts = load_corpus().texts
    failed = 0
    for dtype in args.dtypes.split(","):
        name = f"speed {args.model} {dtype}"
        try:
            lm, how = _load(args.model, dtype, args.device)
            tokens = sum(len(lm.tokenizer(t)["input_ids"]) for t in texts)
            extract_pooled(lm.model, lm.tokenizer, texts[:16], "mean", 1)  # warm-up
            _sync(args.device)
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            extract_pooled(lm.model, lm.tokenizer, texts, "mean", 1)
            _sync(args.device)
            seconds = time.perf_counter() - start
        except Exception as exc:
            print(f"RESULT {name} FAIL {type(exc).__name__}: {str(exc)[:160]}")
            failed += 1
            continue
        peak = (f" gpu_peak_GiB={torch.cuda.max_memory_allocated() / 2**30:.2f}"
                if args.device.startswith("cuda") else "")
        print(f"RESULT {name} PASS tokens_per_s={tokens / seconds:.0f} tokens={tokens} "
              f"seconds={seconds:.2f}{peak} via {how}")
        del lm
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["compare", "speed"])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--dtypes", default="fp32,bf16,fp16")
    parser.add_argument("--per-emotion", type=int, default=3)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    raise SystemExit(compare(args) if args.what == "compare" else speed(args))


if __name__ == "__main__":
    main()
