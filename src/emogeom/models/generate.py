"""The one call to ``model.generate``: seeded, greedy or sampling, batched, on the model's
input device; every generating room (steering, behaviour, generation mode, corpus generation)
goes through ``generate_ids``. ``generate`` is its one-prompt text form."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from emogeom.models.chat import has_chat_template, render_chat
from emogeom.models.loading import LoadedModel, input_device, pad_token_id


def prompt_text(tokenizer: Any, prompt: str, chat_template: bool = True) -> tuple[str, bool]:
    """(text to tokenise, whether it is already templated) for one user message: in the chat
    template when asked for and the tokenizer has one, else as written."""
    if chat_template and has_chat_template(tokenizer):
        return render_chat(tokenizer, [{"role": "user", "content": prompt}]), True
    return prompt, False


def encode(tokenizer: Any, text: str, templated: bool) -> list[int]:
    """Token ids of ``text``; a templated text already holds its special tokens."""
    return tokenizer(text, add_special_tokens=not templated)["input_ids"]


class _StopWhen(StoppingCriteria):
    """Stop a row once ``stop`` holds for its decoded new text."""

    def __init__(self, tokenizer: Any, start: int, stop: Callable[[str], bool]) -> None:
        self.tokenizer, self.start, self.stop = tokenizer, start, stop

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        done = [self.stop(self.tokenizer.decode(row[self.start:], skip_special_tokens=True))
                for row in input_ids]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def generate_ids(
    lm: LoadedModel,
    prompts: Sequence[Sequence[int]],
    seed: int,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 0.95,
    stop: Callable[[str], bool] | None = None,
    min_new_tokens: int = 0,
) -> list[list[int]]:
    """New token ids after each prompt (token id lists, left-padded into one batch): greedy
    when ``temperature`` is 0, else nucleus sampling seeded by ``seed`` (torch's global seed,
    set just before, so one seed gives one output). ``stop(new_text)`` ends a row early.
    Rows are as long as the longest: a row that stopped is padded after its end token.
    ``min_new_tokens`` forbids ending earlier (the timing warm-up uses it)."""
    tok = lm.tokenizer
    pad = pad_token_id(tok, lm.model)
    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    device = input_device(lm.model)
    stops = StoppingCriteriaList([_StopWhen(tok, width, stop)] if stop is not None else [])
    sample = temperature > 0
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = lm.model.generate(
            input_ids=input_ids.to(device), attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens, do_sample=sample,
            temperature=temperature if sample else None, top_p=top_p if sample else None,
            top_k=None, pad_token_id=pad, stopping_criteria=stops,
            **({"min_new_tokens": min_new_tokens} if min_new_tokens > 0 else {}),
        )
    return out[:, width:].tolist()


def generate(
    lm: LoadedModel,
    prompt: str,
    seed: int,
    max_new_tokens: int = 120,
    temperature: float = 0.8,
    top_p: float = 0.95,
    chat_template: bool = True,
) -> str:
    """One completion of ``prompt`` as text (chat template when the model has one): greedy when
    temperature is 0, otherwise seeded sampling."""
    text, templated = prompt_text(lm.tokenizer, prompt, chat_template)
    [new] = generate_ids(lm, [encode(lm.tokenizer, text, templated)], seed, max_new_tokens,
                         temperature, top_p)
    return lm.tokenizer.decode(new, skip_special_tokens=True)
