"""End to end on tiny models: artefacts, comparisons, report, determinism, CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emogeom import artefacts
from emogeom.cli import app
from emogeom.errors import EmogeomError
from emogeom.extraction import NonFiniteActivations, extract_pooled
from emogeom.models import load_model

runner = CliRunner()
STATS = ["--permutations", "200", "--splits", "3", "--bootstrap", "50"]


def _run(tiny_models, out: Path, *args: str, archs=("llama", "gpt2")) -> None:
    models = [a for arch in archs for a in ("-m", str(tiny_models[arch]))]
    result = runner.invoke(app, ["run", *models, "--out", str(out), *STATS, *args])
    assert result.exit_code == 0, result.output


def _job(out: Path, label: str) -> Path:
    [folder] = [p for p in (out / "jobs").iterdir() if p.name.startswith(f"{label}-")]
    return folder


@pytest.fixture(scope="module")
def full_run(tiny_models, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pipeline") / "out"
    _run(tiny_models, out)
    return out


def test_run_writes_everything(full_run):
    out = full_run
    for label in ("llama", "gpt2"):
        folder = _job(out, label)
        for name in ("manifest.json", "activations.safetensors", "vectors.safetensors",
                     "metrics.json", "rdm.csv", "geometry.json", "analysis.safetensors"):
            assert (folder / name).exists(), name
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["n_layers"] == 3 and 0 <= metrics["best_layer"] < 3
        assert len(metrics["anisotropy"]) == 3 and len(metrics["reliability"]) == 3
        assert len(metrics["rho_human"]) == 3 and len(metrics["rho_tfidf"]) == 3
        tensors, meta = artefacts.read_tensors(folder / "activations.safetensors")
        assert tensors["stories"].shape == (3, 1260, 32) and len(meta["labels"]) == 1260
        vec, _ = artefacts.read_tensors(folder / "vectors.safetensors")
        assert vec["vectors"].shape == (3, 21, 32)
        rdm, emotions = artefacts.read_rdm_csv(folder / "rdm.csv")
        assert rdm.shape == (21, 21) and emotions[0] == "happy"
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["model"]["dtype"] == "fp32"
        assert manifest["corpus"]["sha256"]
        assert manifest["settings"]["extraction"]["pooling"] == "mean"
        assert set(manifest["corpus"]["styles"].values()) == {210}
        choice = manifest["layer_choice"]  # both rules recorded, with what each would pick
        assert choice["criterion"] == "reliability" and choice["chosen"] == metrics["best_layer"]
        assert choice["by_rule"]["general"]["layer"] == metrics["best_layer_general"]
        assert choice["by_rule"]["reliability"]["cross_style"] == \
            metrics["cross_style"][metrics["best_layer_reliability"]]
    rows = artefacts.read_csv(out / "comparisons.csv")
    assert list(rows[0])[:6] == ["kind", "precision_a", "preset_a", "precision_b", "preset_b",
                                 "model_a"]
    for col in ("ci_low", "ci_high", "p_perm", "p_holm", "ceiling", "rho_ceiled", "cka",
                "procrustes"):
        assert col in rows[0]
    row = rows[0]
    assert len(rows) == 1 and -1 <= float(row["rho"]) <= 1
    assert 0 < float(row["p_perm"]) <= 1 and float(row["p_holm"]) == float(row["p_perm"])
    assert float(row["ci_low"]) <= float(row["ci_high"])
    assert 0 <= float(row["cka"]) <= 1 and 0 <= float(row["procrustes"]) <= 1
    assert float(row["rho_max_layers"]) >= float(row["rho"]) - 1e-9
    assert row["cross_split"] == "style" and 0 < float(row["p_cross_style"]) <= 1
    assert -1 <= float(row["rho_cross_style"]) <= 1
    for col in ("rho_cross_text", "p_cross_text", "rho_within_a", "ci_within_b_high",
                "rho_partial_text",
                "rho_partial_tfidf", "rho_partial_surface", "rho_human_a", "rho_human_b"):
        assert row[col] != "", col
    refs = {p.name for p in (out / "references" / "default").iterdir()}
    assert {"human_rdm.csv", "tfidf_rdm.csv", "surface_rdm.csv"} <= refs
    profiles = json.loads((out / "profiles.json").read_text())
    assert len(profiles[0]["same_text"]) == 3 and len(profiles[0]["cross_text"]) == 3
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "<script" not in html
    assert not (out / ".staging").exists()


def test_same_inputs_same_numbers(full_run, tiny_models, tmp_path):
    _run(tiny_models, tmp_path / "b")
    for name in ("comparisons.csv", "profiles.json", "references/default/tfidf_rdm.csv",
                 "descriptors.csv"):
        assert (full_run / name).read_text() == (tmp_path / "b" / name).read_text()
    for label in ("llama", "gpt2"):
        for name in ("metrics.json", "vectors.safetensors", "analysis.safetensors"):
            assert (_job(full_run, label) / name).read_bytes() == \
                (_job(tmp_path / "b", label) / name).read_bytes()


def test_fp16_overflow_is_named(tiny_models, tmp_path):
    lm = load_model(str(tiny_models["llama"]), dtype="fp16")
    import torch

    with torch.no_grad():
        for p in lm.model.parameters():
            p.mul_(300.0)
    with pytest.raises(NonFiniteActivations, match=r"layer \d+ .*bf16 or fp32"):
        extract_pooled(lm.model, lm.tokenizer, ["A plain sentence about tables."], "mean")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture()
def existing_out(tmp_path) -> Path:
    out = tmp_path / "out"
    (out / "jobs" / "model").mkdir(parents=True)
    (out / "jobs" / "model" / "metrics.json").write_text('{"keep": true}')
    (out / "comparisons.csv").write_text("model_a,model_b\n")
    (out / "report.html").write_text("<p>old</p>")
    return out


def _bad_corpus(tmp_path: Path, kind: str) -> Path:
    from emogeom.emotions import EMOTIONS

    path = tmp_path / f"{kind}.jsonl"
    lines = [json.dumps({"emotion": e, "id": f"{e}{i}", "text": "Some words."})
             for e in EMOTIONS for i in range(2)]
    if kind == "empty":
        lines = []
    elif kind == "label":
        lines.append(json.dumps({"emotion": "joyous", "id": "z", "text": "Hi."}))
    elif kind == "few":
        lines = lines[:-1]
    path.write_text("\n".join(lines))
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("unknown-model", "unknown model 'no-such-model'"),
        ("missing-gguf", "model file not found"),
        ("missing-corpus", "corpus file not found"),
        ("label", "unknown emotion label 'joyous'"),
        ("empty", "is empty"),
        ("few", "fewer than 2 stories"),
        ("dtype", "--dtype: unknown precision 'fp8'"),
    ],
)
def test_cli_bad_input(tiny_models, tmp_path, existing_out, case, message):
    before = _snapshot(existing_out)
    args = ["run", "--out", str(existing_out), "--model", str(tiny_models["llama"])]
    if case == "unknown-model":
        args += ["--model", "no-such-model"]
    elif case == "missing-gguf":
        args += ["--model", str(tmp_path / "absent.gguf")]
    elif case == "missing-corpus":
        args += ["--corpus", str(tmp_path / "absent.jsonl")]
    elif case == "dtype":
        args += ["--dtype", "fp8"]
    else:
        args += ["--corpus", str(_bad_corpus(tmp_path, case))]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    text = (result.stderr or result.output).strip()
    assert message in text and len(text.splitlines()) == 1, text
    assert _snapshot(existing_out) == before


def test_report_command_needs_results(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "is not a study folder" in (result.stderr or result.output)


def test_load_model_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmogeomError, match="neither a .gguf file nor a model folder"):
        load_model(str(tmp_path / "empty"))
    with pytest.raises(EmogeomError, match="unknown model"):
        load_model("definitely not a model")


def test_loader_sets_pad_and_records_provenance(tiny_models):
    lm = load_model(str(tiny_models["gpt2"]))
    assert lm.tokenizer.pad_token is not None
    assert lm.info["dtype"] == "fp32" and lm.info["n_layers"] == 3
    assert lm.info["trust_remote_code"] is False
    assert np.isfinite(extract_pooled(lm.model, lm.tokenizer, ["x y z."], "last")).all()


def test_paper_preset(tiny_models, tmp_path):
    from emogeom.config import make_settings

    paper = make_settings("paper")
    assert (paper.extraction.per_emotion, paper.extraction.pooling, paper.analysis.denoise,
            paper.analysis.layer_criterion, paper.extraction.n_neutral) == (
        3, "last", 0.0, "reference", 20)
    _run(tiny_models, tmp_path / "p", "--preset", "paper", archs=("llama",))
    job = _job(tmp_path / "p", "llama")
    manifest = json.loads((job / "manifest.json").read_text())
    assert manifest["settings"]["preset"] == "paper"
    assert manifest["corpus"]["n_stimuli"] == 63 and manifest["neutral"]["n"] == 20
    metrics = json.loads((job / "metrics.json").read_text())
    assert metrics["best_layer"] == metrics["best_layer_reference"]
    result = runner.invoke(app, ["run", "--preset", "nope", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "unknown preset 'nope'" in (result.stderr or result.output)
    assert not (tmp_path / "x").exists()


def test_emotion_subset_corpus_runs(tiny_models, tmp_path):
    import csv

    from emogeom.stimuli import load_corpus

    source = load_corpus()
    path = tmp_path / "subset.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["emotion", "id", "text", "topic"])
        for s in source.stimuli:
            if s.emotion in ("happy", "sad", "afraid", "neutral"):
                w.writerow([s.emotion, s.id, s.text, s.topic])
    out = tmp_path / "out"
    _run(tiny_models, out, "--corpus", str(path), archs=("llama", "qwen2"))
    rdm, emotions = artefacts.read_rdm_csv(_job(out, "llama") / "rdm.csv")
    assert rdm.shape == (4, 4) and set(emotions) == {"happy", "sad", "afraid", "neutral"}
    metrics = json.loads((_job(out, "llama") / "metrics.json").read_text())  # strict JSON
    assert metrics["valence_within"] is not None
    assert "report.html" in {p.name for p in out.iterdir()}
