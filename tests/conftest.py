"""Shared fixtures: tiny random causal LMs built from configs, saved to a temp folder with a
small BPE tokenizer trained on the shipped corpus (no hub needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

ARCHS = ("llama", "qwen2", "gemma3", "mistral", "gpt2")


def _tokenizer(with_bos: bool):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from emogeom.stimuli import load_corpus, load_neutral_sentences

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    texts = load_corpus().texts + load_neutral_sentences().texts
    tok.train_from_iterator(texts, trainer)
    if with_bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    # No pad token on purpose: the loader must supply one.
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")


def _config(arch: str, vocab: int):
    from transformers import Gemma3TextConfig, GPT2Config, LlamaConfig, MistralConfig, Qwen2Config

    common = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    if arch == "llama":
        return LlamaConfig(**common)
    if arch == "mistral":
        return MistralConfig(**common, sliding_window=None)
    if arch == "qwen2":
        return Qwen2Config(**common)
    if arch == "gemma3":
        return Gemma3TextConfig(**common, head_dim=8, sliding_window=16,
                                layer_types=["sliding_attention", "sliding_attention",
                                             "full_attention"])
    if arch == "gpt2":
        return GPT2Config(vocab_size=vocab, n_embd=32, n_layer=3, n_head=4, n_positions=256)
    raise ValueError(arch)


def build_tiny(arch: str, folder: Path, seed: int = 0) -> Path:
    """Save a tiny random model of ``arch`` with a tokenizer into ``folder``."""
    import torch
    from transformers import AutoModelForCausalLM

    tok = _tokenizer(with_bos=arch in ("llama", "gemma3"))
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(_config(arch, len(tok)), dtype=torch.float32)
    # Larger weights than the default init so that layers change the stream visibly.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(5.0)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {arch: build_tiny(arch, root / arch) for arch in ARCHS}


@pytest.fixture(scope="session")
def sample_texts() -> list[str]:
    from emogeom.stimuli import load_corpus

    corpus = load_corpus()
    return [corpus.texts[i] for i in (0, 25, 50, 77, 130, 201, 333, 419)] + ["Short one."]
