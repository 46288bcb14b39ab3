"""Read a corpus through a model: pooled states of the stories and the neutral sentences."""

from __future__ import annotations

from typing import Any

import numpy as np

from emogeom.config import Extraction
from emogeom.extraction.pooled import extract_pooled
from emogeom.models.chat import as_read
from emogeom.progress import Progress, counter


def read_states(
    model: Any, tokenizer: Any, corpus: Any, neutral: Any, extraction: Extraction,
    progress: Progress | None = None, name: str = "model",
) -> dict[str, np.ndarray]:
    """Pooled block outputs {``stories``, ``neutral``} float32 [L, N, d], the texts read as
    the extraction's chat-template policy says (raw, or each as one user message)."""
    return read_poolings(model, tokenizer, corpus, neutral, extraction, (extraction.pooling,),
                         progress, name)[extraction.pooling]


def read_poolings(
    model: Any, tokenizer: Any, corpus: Any, neutral: Any, extraction: Extraction,
    poolings: tuple[str, ...], progress: Progress | None = None, name: str = "model",
    stats: dict[str, int] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """``read_states`` for several poolings in one pass: {pooling: {stories, neutral}}
    (``extraction.pooling`` itself is not used). ``stats`` receives the token budget that
    worked (``max_batch_tokens_used``, the smallest over the parts) and ``oom_halvings``."""
    states: dict[str, dict[str, np.ndarray]] = {p: {} for p in poolings}
    for part, data in (("stories", corpus), ("neutral", neutral)):
        texts, special = as_read(tokenizer, list(data.texts), extraction.chat_template, name)
        step = counter(progress, f"{name}: {part}", len(texts))
        part_stats: dict[str, int] = {}
        pooled = extract_pooled(
            model, tokenizer, texts, poolings, extraction.mean_start,
            max_batch_tokens=extraction.max_batch_tokens, add_special_tokens=special,
            on_batch=step, on_note=progress, stats=part_stats)
        if stats is not None:
            stats["max_batch_tokens_used"] = min(
                stats.get("max_batch_tokens_used", part_stats["max_batch_tokens_used"]),
                part_stats["max_batch_tokens_used"])
            stats["oom_halvings"] = stats.get("oom_halvings", 0) + part_stats["oom_halvings"]
        for p in poolings:
            states[p][part] = pooled[p]
    return states
