"""The one chat-template renderer: messages → the text a model reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from emogeom.errors import EmogeomError

Message = dict[str, str]


def has_chat_template(tokenizer: Any) -> bool:
    """Whether the tokenizer carries a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def render_chat(tokenizer: Any, messages: Sequence[Message],
                add_generation_prompt: bool = True) -> str:
    """The conversation as text in the tokenizer's chat template (special tokens included:
    tokenise it with ``add_special_tokens=False``). transformers 5 may hand back a
    BatchEncoding or a list where 4.x gave a string; both are handled."""
    if not has_chat_template(tokenizer):
        raise EmogeomError("this tokenizer has no chat template; read the texts raw instead")
    out = tokenizer.apply_chat_template(list(messages), tokenize=False,
                                        add_generation_prompt=add_generation_prompt)
    if isinstance(out, str):
        return out
    if isinstance(out, list) and out and isinstance(out[0], str):
        return out[0]
    ids = out["input_ids"] if hasattr(out, "keys") else out
    if ids and isinstance(ids[0], list):
        ids = ids[0]
    return tokenizer.decode(ids)


def as_read(tokenizer: Any, texts: Sequence[str], policy: str = "raw",
            model_name: str = "this model") -> tuple[list[str], bool]:
    """Texts as the model reads them, and whether the tokenizer should add its special tokens:
    ``raw`` (as written) or ``chat`` (each text as one user message in the chat template)."""
    if policy == "raw":
        return list(texts), True
    if policy != "chat":
        raise EmogeomError(f"unknown chat-template policy '{policy}' (use raw or chat)")
    if not has_chat_template(tokenizer):
        raise EmogeomError(f"model '{model_name}' has no chat template; "
                           "use chat_template: raw for it")
    return [render_chat(tokenizer, [{"role": "user", "content": t}]) for t in texts], False
