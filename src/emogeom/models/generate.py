"""Seeded text generation with the model's chat template (when it has one)."""

from __future__ import annotations

import torch

from emogeom.models.loading import LoadedModel


def format_prompt(lm: LoadedModel, prompt: str, chat_template: bool = True) -> tuple[str, bool]:
    """(text to tokenise, whether it is already templated) for one user message."""
    tok = lm.tokenizer
    if chat_template and getattr(tok, "chat_template", None):
        messages = [{"role": "user", "content": prompt}]
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), True
    return prompt, False


def generate(
    lm: LoadedModel,
    prompt: str,
    seed: int,
    max_new_tokens: int = 120,
    temperature: float = 0.8,
    top_p: float = 0.95,
    chat_template: bool = True,
) -> str:
    """One completion of ``prompt``: greedy when temperature is 0, otherwise seeded sampling."""
    text, templated = format_prompt(lm, prompt, chat_template)
    enc = lm.tokenizer(text, return_tensors="pt", add_special_tokens=not templated,
                       return_token_type_ids=False)
    device = next(lm.model.parameters()).device
    torch.manual_seed(seed)
    sample = temperature > 0
    with torch.inference_mode():
        out = lm.model.generate(
            **{k: v.to(device) for k, v in enc.items()},
            max_new_tokens=max_new_tokens, do_sample=sample,
            temperature=temperature if sample else None, top_p=top_p if sample else None,
            top_k=None, pad_token_id=lm.tokenizer.pad_token_id,
        )
    return lm.tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
