"""TransformerLens timing helper, run inside .venv-tl (TransformerLens 4 needs transformers 5,
so it lives in its own environment). Prints one JSON line: tokens, seconds, peak RSS.

Usage: .venv-tl/bin/python benchmarks/_tl_extract.py MODEL_FOLDER TEXTS_JSON [OUT_NPY]
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformer_lens.model_bridge import TransformerBridge
from transformers import AutoTokenizer


def main() -> None:
    folder, texts_path = sys.argv[1], sys.argv[2]
    texts = json.loads(Path(texts_path).read_text())
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
    if len(sys.argv) > 3:
        np.save(sys.argv[3], np.array(pooled, dtype=np.float32).transpose(1, 0, 2))
    print(json.dumps({"tokens": int(sum(x.shape[1] for x in ids)), "seconds": seconds,
                      "rss_after_load_mb": load_rss,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
