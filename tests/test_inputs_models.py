"""Bad inputs around models: damaged GGUF files, custom code, texts longer than the context,
and numbers out of range; each is one clear line, before any work is done."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emogeom.errors import EmogeomError

# ---- corrupt GGUF files ----------------------------------------------------------------------


def _small_gguf(path: Path) -> Path:
    """A small valid GGUF file (llama metadata, one fp32 tensor)."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(256)
    writer.add_tensor("token_embd.weight", np.zeros((64, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _corrupt(kind: str, folder: Path) -> Path:
    """A damaged ``x.gguf``: empty, random bytes, or a valid file cut short."""
    path = folder / "x.gguf"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    else:
        data = _small_gguf(folder / "whole.gguf").read_bytes()
        path.write_bytes(data[: len(data) - 4000])
    return path


@pytest.mark.parametrize("kind", ["empty", "random", "truncated"])
def test_corrupt_gguf_is_one_line_error_and_leaves_no_cache(kind, tmp_path, monkeypatch):
    from emogeom.models.loading import load_model

    monkeypatch.setenv("EMOGEOM_CACHE", str(tmp_path / "cache"))
    path = _corrupt(kind, tmp_path)
    with pytest.raises(EmogeomError) as info:
        load_model(str(path))
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(str(path.resolve()))
    assert "not a readable GGUF file" in msg and "re-download" in msg
    converted = tmp_path / "cache" / "converted"
    assert not converted.exists() or not any(converted.iterdir())


def test_corrupt_gguf_through_the_cli(tmp_path, monkeypatch):
    from emogeom.cli import app

    monkeypatch.setenv("EMOGEOM_CACHE", str(tmp_path / "cache"))
    path = _corrupt("random", tmp_path)
    result = CliRunner().invoke(app, ["doctor", "-m", str(path)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: {path.resolve()}: not a readable GGUF file (it does not start with the GGUF "
        "magic bytes); re-download it or convert it again"]


# ---- custom code (auto_map) ------------------------------------------------------------------


def _with_auto_map(src: Path, dst: Path, model_type: str) -> Path:
    """A copy of a tiny model folder whose config asks for its own code."""
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config["model_type"] = model_type
    config["auto_map"] = {"AutoConfig": "configuration_x.XConfig",
                          "AutoModelForCausalLM": "modeling_x.XForCausalLM"}
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_auto_map_is_refused_naming_the_flag(tiny_models, tmp_path):
    from emogeom.models.loading import load_model, load_tokenizer_config

    folder = _with_auto_map(tiny_models["llama"], tmp_path / "custom", "emogeom_custom")
    for load in (load_model, load_tokenizer_config):
        with pytest.raises(EmogeomError) as info:
            load(str(folder))
        msg = str(info.value)
        assert "\n" not in msg
        assert msg == (f"{folder}: this model ships its own code (auto_map); rerun with "
                       "--trust-remote-code (study file: trust_remote_code: true) only if you "
                       "trust it")


def test_auto_map_of_a_known_type_loads_without_remote_code(tiny_models, tmp_path):
    from emogeom.models.loading import load_model, needs_remote_code

    folder = _with_auto_map(tiny_models["llama"], tmp_path / "known", "llama")
    assert not needs_remote_code(folder)
    lm = load_model(str(folder), device="cpu")
    assert lm.info["trust_remote_code"] is False


# ---- context length --------------------------------------------------------------------------


def _long_corpus(repeat: int = 3):
    """Two stories per emotion of the shipped corpus, the first story repeated ``repeat``
    times (longer than a tiny model's 256 positions)."""
    from emogeom.stimuli import load_corpus

    corpus = load_corpus(per_emotion=2)
    first = corpus.stimuli[0]
    long = dataclasses.replace(first, text=" ".join([first.text] * repeat))
    return dataclasses.replace(corpus, stimuli=(long, *corpus.stimuli[1:])), first


def test_context_limit_from_config(tiny_models):
    from transformers import AutoConfig

    from emogeom.extraction.context import context_limit

    assert context_limit(AutoConfig.from_pretrained(tiny_models["llama"])) == (
        256, "max_position_embeddings")
    assert context_limit(AutoConfig.from_pretrained(tiny_models["gpt2"])) == (256, "n_positions")
    assert context_limit(object()) is None


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_over_long_story_fails_before_any_forward(arch, tiny_models, monkeypatch):
    from emogeom.config import make_settings
    from emogeom.extraction.pooled import backbone
    from emogeom.extraction.read import read_poolings
    from emogeom.models.loading import load_model
    from emogeom.stimuli import load_neutral_sentences

    lm = load_model(str(tiny_models[arch]), device="cpu")
    base = backbone(lm.model)

    def no_forward(*_a, **_k):
        raise AssertionError("a forward pass ran")

    monkeypatch.setattr(base, "forward", no_forward)
    corpus, first = _long_corpus()
    n = len(lm.tokenizer(corpus.stimuli[0].text)["input_ids"])
    field = "n_positions" if arch == "gpt2" else "max_position_embeddings"
    with pytest.raises(EmogeomError) as info:
        read_poolings(lm.model, lm.tokenizer, corpus, load_neutral_sentences(n=4),
                      make_settings().extraction, ("mean",), name="tiny")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"story '{first.id}' ({first.emotion}) has {n} tokens; tiny reads at "
                          f"most 256 ({field}); shorten it or pass --truncate")


def test_truncate_reads_over_long_story_and_counts_it(tiny_models):
    from emogeom.config import make_settings
    from emogeom.extraction.pooled import extract_pooled
    from emogeom.extraction.read import read_poolings
    from emogeom.models.loading import load_model
    from emogeom.stimuli import load_neutral_sentences

    lm = load_model(str(tiny_models["llama"]), device="cpu")
    corpus, _ = _long_corpus()
    stats: dict[str, int] = {}
    settings = make_settings(truncate=True)
    states = read_poolings(lm.model, lm.tokenizer, corpus, load_neutral_sentences(n=4),
                           settings.extraction, ("mean", "last"), name="tiny", stats=stats)
    assert stats["truncated"] == 1
    stories = states["mean"]["stories"]
    assert stories.shape[1] == len(corpus.stimuli) and np.isfinite(stories).all()
    # The long story reads as its first 256 tokens, alone or in a batch.
    direct = extract_pooled(lm.model, lm.tokenizer, [corpus.stimuli[0].text], "last",
                            truncate=True)
    np.testing.assert_allclose(direct[:, 0], states["last"]["stories"][:, 0], rtol=1e-5,
                               atol=1e-5)


def test_extract_pooled_refuses_over_long_text(tiny_models):
    from emogeom.extraction.pooled import extract_pooled
    from emogeom.models.loading import load_model

    lm = load_model(str(tiny_models["qwen2"]), device="cpu")
    corpus, first = _long_corpus()
    with pytest.raises(EmogeomError, match=r"^text 1 \(of 2\) has \d+ tokens; .* reads at "
                                           r"most 256 \(max_position_embeddings\)"):
        extract_pooled(lm.model, lm.tokenizer, ["Short one.", corpus.stimuli[0].text])


def test_truncate_setting_enters_the_key_only_when_on():
    from emogeom.config import make_settings, settings_key

    off, on = make_settings(), make_settings(truncate=True)
    assert on.extraction.truncate and not off.extraction.truncate
    assert "truncate" not in settings_key(off)["extraction"]
    assert settings_key(on)["extraction"]["truncate"] is True


def test_corpus_check_with_model_flags_over_long_stories(tiny_models, tmp_path):
    from emogeom.cli import app

    corpus, first = _long_corpus()
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"emotion": s.emotion, "id": s.id, "text": s.text})
                            + "\n" for s in corpus.stimuli))
    result = CliRunner().invoke(app, ["corpus", "check", str(path), "-m",
                                      str(tiny_models["llama"])])
    assert result.exit_code == 1, result.output
    assert "256 (max_position_embeddings)" in result.output
    assert first.id in result.output and "1 story is longer" in result.output
    ok = CliRunner().invoke(app, ["corpus", "check", "-m", str(tiny_models["gpt2"])])
    assert ok.exit_code == 0, ok.output
    assert "every story fits" in ok.output


# ---- numeric ranges --------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [{"mean_start": -1}, {"ci_level": 1.5}, {"seed": -1},
                                       {"max_batch_tokens": 0}, {"denoise": 1.0}])
def test_settings_out_of_range_raise(overrides):
    from emogeom.config import make_settings

    with pytest.raises(EmogeomError) as info:
        make_settings(**overrides)
    assert "\n" not in str(info.value) and next(iter(overrides)) in str(info.value)


def test_other_sections_out_of_range_raise():
    from pydantic import ValidationError

    from emogeom.config import Behaviour, Executor, checked, generation

    with pytest.raises(ValidationError):
        Executor(jobs=0)
    with pytest.raises(EmogeomError, match="capability_threshold"):
        checked(Behaviour, {"capability_threshold": 2})
    with pytest.raises(EmogeomError, match="temperature"):
        generation(temperature=float("inf"))
    with pytest.raises(EmogeomError, match="seed"):
        generation(seed=-3)


def test_run_flag_out_of_range_is_one_line(tmp_path):
    from emogeom.cli import app

    result = CliRunner().invoke(app, ["run", "--mean-start", "-1", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --mean-start: Input should be greater than or " \
                                    "equal to 0"
