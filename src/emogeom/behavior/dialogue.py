"""Multi-turn dialogue with a loaded model: the tokenizer's chat template when it has one, a raw
"User: ... / Assistant: ..." transcript for base models without one.

Generation is greedy at temperature 0 (the default) and seeded sampling otherwise; each call
reseeds with the same seed, so a reply depends only on its dialogue so far and the settings.
A base model's continuation is cut where it starts writing the next "User:" turn.
"""

from __future__ import annotations

import re
from typing import Any

from emogeom.errors import EmogeomError
from emogeom.models.chat import Message, has_chat_template, render_chat
from emogeom.models.generate import encode, generate_ids
from emogeom.models.loading import LoadedModel

FORMATS = ("auto", "chat", "raw")
RAW_PREAMBLE = ("The following is a conversation between a user and a helpful assistant. "
                "The assistant answers the user's messages.\n\n")
_NEXT_TURN = re.compile(r"(?:^|\n)\s*(?:User|USER|user|Assistant|ASSISTANT)\s*:")


def choose_format(lm: LoadedModel, fmt: str = "auto") -> str:
    """"chat" or "raw": auto picks chat when the tokenizer has a template, raw otherwise."""
    if fmt not in FORMATS:
        raise EmogeomError(f"unknown dialogue format '{fmt}' (use one of: {', '.join(FORMATS)})")
    if fmt == "chat" and not has_chat_template(lm.tokenizer):
        raise EmogeomError(f"model '{lm.source.spec}' has no chat template; use --format raw "
                           "(or auto, which falls back to raw)")
    if fmt == "auto":
        return "chat" if has_chat_template(lm.tokenizer) else "raw"
    return fmt


def format_note(lm: LoadedModel, fmt: str) -> str:
    """One line for the profile saying which dialogue format was used and why."""
    if fmt == "chat":
        return "chat: the tokenizer's chat template"
    why = "the model has no chat template" if not has_chat_template(lm.tokenizer) else "asked for"
    return f"raw: 'User: ... / Assistant: ...' transcript ({why})"


def render_raw(messages: list[Message]) -> str:
    """Plain-text transcript ending with an open "Assistant:" turn for the model to continue."""
    names = {"user": "User", "assistant": "Assistant", "system": "System"}
    body = "".join(f"{names[m['role']]}: {m['content'].strip()}\n" for m in messages)
    return RAW_PREAMBLE + body + "Assistant:"


def render(lm: LoadedModel, messages: list[Message], fmt: str) -> tuple[str, bool]:
    """(prompt text, whether special tokens are already in it) for the dialogue so far."""
    if fmt == "chat":
        return render_chat(lm.tokenizer, messages), True
    return render_raw(messages), False


def cut_at_next_turn(text: str) -> str:
    """A raw continuation up to (not including) the next "User:" (or "Assistant:") turn."""
    m = _NEXT_TURN.search(text)
    return (text[:m.start()] if m else text).strip()


def _starts_next_turn(text: str) -> bool:
    return _NEXT_TURN.search(text) is not None


def reply(
    lm: LoadedModel, messages: list[Message], fmt: str, seed: int = 0,
    max_new_tokens: int = 80, temperature: float = 0.0, top_p: float = 0.95,
) -> tuple[str, str]:
    """(reply, prompt text) of the model to the dialogue so far in format ``fmt``; a raw
    continuation stops once it starts the next turn."""
    text, templated = render(lm, messages, fmt)
    [ids] = generate_ids(lm, [encode(lm.tokenizer, text, templated)], seed, max_new_tokens,
                         temperature, top_p, stop=_starts_next_turn if fmt == "raw" else None)
    new = lm.tokenizer.decode(ids, skip_special_tokens=True)
    return (cut_at_next_turn(new) if fmt == "raw" else new.strip()), text


def converse(
    lm: LoadedModel, user_turns: list[str], fmt: str, seed: int = 0, max_new_tokens: int = 80,
    temperature: float = 0.0, top_p: float = 0.95, on_reply: Any = None,
) -> tuple[list[dict[str, Any]], str]:
    """Play the user turns one after another, the model answering each with the whole dialogue
    so far; returns ([{turn, user, reply}], the last prompt text)."""
    messages: list[Message] = []
    turns: list[dict[str, Any]] = []
    prompt = ""
    for t, user in enumerate(user_turns):
        messages.append({"role": "user", "content": user})
        answer, prompt = reply(lm, messages, fmt, seed, max_new_tokens, temperature, top_p)
        messages.append({"role": "assistant", "content": answer})
        turns.append({"turn": t, "user": user, "reply": answer})
        if on_reply is not None:
            on_reply(t, answer)
    return turns, prompt
