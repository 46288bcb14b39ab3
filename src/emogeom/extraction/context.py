"""Context length: the longest input a model reads, and the texts longer than that.

Texts are counted as the model reads them (special tokens and the chat template included) and
checked before any forward pass: an over-long text is a one-line error naming it, or, with
``truncate``, cut to its first tokens (the count goes into the read stats).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from emogeom.errors import EmogeomError

# Config fields that give the longest input, in the order they are looked for.
CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "seq_length", "max_sequence_length")
TRUNCATE_HINT = "pass --truncate (study file: extraction: {truncate: true})"

Limit = tuple[int, str]  # (tokens, the config field that says so)


def context_limit(model_or_config: Any) -> Limit | None:
    """(tokens, config field) of the longest input a model reads, from its (text) config;
    None when the config names no limit."""
    config = getattr(model_or_config, "config", model_or_config)
    configs = [config]
    get_text = getattr(config, "get_text_config", None)
    text = get_text() if callable(get_text) else None
    if text is not None and text is not config:
        configs.insert(0, text)
    for cfg in configs:
        aliases = getattr(cfg, "attribute_map", None) or {}  # GPT-2: n_positions
        for name in CONTEXT_FIELDS:
            value = getattr(cfg, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value, aliases.get(name, name)
    return None


def token_ids(tokenizer: Any, texts: Sequence[str],
              add_special_tokens: bool = True) -> list[list[int]]:
    """Token ids of each text as the model reads it (the tokenizer's special tokens unless
    ``add_special_tokens`` is off, for texts already in a chat template)."""
    return [list(tokenizer(t, add_special_tokens=add_special_tokens)["input_ids"])
            for t in texts]


def over_long(lengths: Sequence[int], limit: Limit | None) -> list[int]:
    """Indices of the lengths above the limit (none without a limit)."""
    if limit is None:
        return []
    return [i for i, n in enumerate(lengths) if n > limit[0]]


def truncate_ids(ids: list[list[int]], limit: Limit | None) -> int:
    """Cut every token list longer than the limit to its first tokens, in place; returns how
    many were cut."""
    cut = over_long([len(x) for x in ids], limit)
    for i in cut:
        ids[i] = ids[i][: limit[0]]
    return len(cut)


def describe_text(stimulus: Any, part: str = "stories") -> str:
    """How an error names a text: ``story 'happy-07' (happy)`` or ``neutral sentence 'n3'``."""
    if part == "neutral":
        return f"neutral sentence '{stimulus.id}'"
    return f"story '{stimulus.id}' ({stimulus.emotion})"


def too_long(what: str, n_tokens: int, model: str, limit: Limit, others: int = 0
             ) -> EmogeomError:
    """The one-line error for a text longer than the model's context."""
    more = f" ({others} more text{'s' if others != 1 else ''} too)" if others else ""
    return EmogeomError(f"{what} has {n_tokens} tokens; {model} reads at most {limit[0]} "
                        f"({limit[1]}){more}; shorten it or {TRUNCATE_HINT}")


def check_context(named: Sequence[tuple[str, int]], limit: Limit | None, model: str,
                  truncate: bool = False) -> int:
    """How many of the texts ``(name, tokens)`` exceed the limit; without ``truncate`` the
    first of them raises ``too_long``."""
    over = over_long([n for _, n in named], limit)
    if over and not truncate:
        what, n = named[over[0]]
        raise too_long(what, n, model, limit, len(over) - 1)
    return len(over)


def model_name(model: Any) -> str:
    """A model's name for messages: its ``_name_or_path``, else its class name."""
    config = getattr(model, "config", None)
    return str(getattr(config, "_name_or_path", "") or type(model).__name__)


def story_lengths(tokenizer: Any, config: Any, corpus: Any, chat_template: str = "raw",
                  name: str = "model") -> dict[str, Any]:
    """Token lengths of a corpus's stories as a model reads them, per emotion (``n``, ``min``,
    ``mean``, ``max`` and the ids ``over`` the context), with the model's ``limit``."""
    from emogeom.models.chat import as_read

    texts, special = as_read(tokenizer, list(corpus.texts), chat_template, name)
    lengths = [len(x) for x in token_ids(tokenizer, texts, special)]
    limit = context_limit(config)
    over = set(over_long(lengths, limit))
    rows = []
    for emotion in corpus.emotions:
        mine = [i for i, s in enumerate(corpus.stimuli) if s.emotion == emotion]
        ns = [lengths[i] for i in mine]
        rows.append({"emotion": emotion, "n": len(ns), "min": min(ns), "mean": sum(ns) / len(ns),
                     "max": max(ns), "over": [corpus.stimuli[i].id for i in mine if i in over]})
    return {"model": name, "limit": limit, "chat_template": chat_template, "rows": rows,
            "n_over": len(over)}


def model_story_lengths(spec: str, corpus: Any, chat_template: str = "raw",
                        trust_remote_code: bool = False) -> dict[str, Any]:
    """``story_lengths`` for a model spec, reading only its tokenizer and config."""
    from emogeom.models.loading import load_tokenizer_config

    tokenizer, config, _ = load_tokenizer_config(spec, trust_remote_code=trust_remote_code)
    return story_lengths(tokenizer, config, corpus, chat_template, spec)
