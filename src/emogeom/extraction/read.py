"""Read a corpus through a model: pooled states of the stories and the neutral sentences."""

from __future__ import annotations

from typing import Any

import numpy as np

from emogeom.config import Extraction
from emogeom.extraction.context import check_context, context_limit, describe_text, token_ids
from emogeom.extraction.pooled import extract_pooled
from emogeom.models.chat import as_read
from emogeom.progress import Progress, counter


def read_states(
    model: Any, tokenizer: Any, corpus: Any, neutral: Any, extraction: Extraction,
    progress: Progress | None = None, name: str = "model",
) -> dict[str, np.ndarray]:
    """Pooled block outputs {``stories``, ``neutral``} float32 [L, N, d], the texts read as
    the extraction's chat-template policy says (raw, or each as one user message); texts
    longer than the model's context are refused, or cut with ``extraction.truncate``."""
    return read_poolings(model, tokenizer, corpus, neutral, extraction, (extraction.pooling,),
                         progress, name)[extraction.pooling]


def read_poolings(
    model: Any, tokenizer: Any, corpus: Any, neutral: Any, extraction: Extraction,
    poolings: tuple[str, ...], progress: Progress | None = None, name: str = "model",
    stats: dict[str, int] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """``read_states`` for several poolings in one pass: {pooling: {stories, neutral}}
    (``extraction.pooling`` itself is not used). Every text is checked against the model's
    context before any forward pass (``check_read_lengths``). ``stats`` receives the token
    budget that worked (``max_batch_tokens_used``, the smallest over the parts),
    ``oom_halvings`` and ``truncated`` (texts cut to the context with
    ``extraction.truncate``)."""
    parts = {part: as_read(tokenizer, list(data.texts), extraction.chat_template, name)
             for part, data in (("stories", corpus), ("neutral", neutral))}
    truncated = check_read_lengths(model, tokenizer, {"stories": corpus, "neutral": neutral},
                                   parts, extraction.truncate, name)
    if truncated and progress is not None:
        limit = context_limit(model)
        progress(f"{name}: {truncated} text(s) cut to their first {limit[0]} tokens "
                 "(truncate on)")
    states: dict[str, dict[str, np.ndarray]] = {p: {} for p in poolings}
    for part, (texts, special) in parts.items():
        step = counter(progress, f"{name}: {part}", len(texts))
        part_stats: dict[str, int] = {}
        pooled = extract_pooled(
            model, tokenizer, texts, poolings, extraction.mean_start,
            max_batch_tokens=extraction.max_batch_tokens, add_special_tokens=special,
            on_batch=step, on_note=progress, stats=part_stats, truncate=extraction.truncate)
        if stats is not None:
            stats["max_batch_tokens_used"] = min(
                stats.get("max_batch_tokens_used", part_stats["max_batch_tokens_used"]),
                part_stats["max_batch_tokens_used"])
            stats["oom_halvings"] = stats.get("oom_halvings", 0) + part_stats["oom_halvings"]
        for p in poolings:
            states[p][part] = pooled[p]
    if stats is not None:
        stats["truncated"] = truncated
    return states


def check_read_lengths(model: Any, tokenizer: Any, data: dict[str, Any],
                       parts: dict[str, tuple[list[str], bool]], truncate: bool = False,
                       name: str = "model") -> int:
    """How many texts of every part (``data[part]`` its stimuli, ``parts[part]`` the texts as
    read and whether special tokens are added) exceed the model's context; without
    ``truncate`` the first one is a one-line error naming it. Nothing is run."""
    limit = context_limit(model)
    if limit is None:
        return 0
    named = [(describe_text(s, part), len(ids))
             for part, (texts, special) in parts.items()
             for s, ids in zip(data[part].stimuli, token_ids(tokenizer, texts, special))]
    return check_context(named, limit, name, truncate)
