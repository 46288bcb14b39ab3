"""Where the time of emogeom's extraction goes: torch.profiler over the shipped stories,
top operators by self CPU time, and the share spent in matrix multiplies.

Usage: .venv/bin/python benchmarks/profile_extract.py [--model smollm2-135m-instruct] [--n 140]
"""

from __future__ import annotations

import argparse

from torch.profiler import ProfilerActivity, profile

from emogeom.extraction import extract_pooled
from emogeom.models import load_model
from emogeom.stimuli import load_corpus


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--n", type=int, default=140)
    args = parser.parse_args()
    lm = load_model(args.model)
    texts = load_corpus().texts[: args.n]
    extract_pooled(lm.model, lm.tokenizer, texts[:8])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        extract_pooled(lm.model, lm.tokenizer, texts)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    mm = sum(e.self_cpu_time_total for e in events
             if any(k in e.key for k in ("aten::mm", "aten::addmm", "aten::bmm", "matmul")))
    print(events.table(sort_by="self_cpu_time_total", row_limit=12))
    print(f"matrix multiplies: {mm / total:.0%} of self CPU time")


if __name__ == "__main__":
    main()
