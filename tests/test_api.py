"""One pipeline, one API: `run` = `study run`, `emogeom.extract` = a study job, Geometry
round-trips, a failed run leaves the previous outputs alone, and the rooms' import rules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import emogeom
from emogeom import artefacts
from emogeom.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "emogeom"
FAST = ["--per-emotion", "6", "--permutations", "200", "--bootstrap", "40", "--splits", "3"]


def _job_files(out: Path) -> dict[str, str]:
    """sha256 of every job artefact but the manifest (it holds times), and comparisons.csv."""
    found = {"comparisons.csv": artefacts.file_sha256(out / "comparisons.csv")}
    for path in sorted((out / "jobs").rglob("*")):
        if path.is_file() and path.name != "manifest.json":
            found[str(path.relative_to(out))] = artefacts.file_sha256(path)
    return found


@pytest.fixture(scope="module")
def run_out(tiny_models, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("api") / "run"
    result = runner.invoke(app, ["run", "-m", str(tiny_models["llama"]), "-m",
                                 str(tiny_models["gpt2"]), "--out", str(out), *FAST])
    assert result.exit_code == 0, result.output
    return out


def test_run_equals_study_run(run_out, tiny_models, tmp_path):
    out = tmp_path / "study"
    study = tmp_path / "s.yaml"
    study.write_text(
        f"name: s\nout: {out}\nmodels:\n  - {{id: {tiny_models['llama']}}}\n"
        f"  - {{id: {tiny_models['gpt2']}}}\nextraction: {{per_emotion: 6}}\n"
        "analysis: {splits: 3}\nstatistics: {permutations: 200, bootstrap: 40}\n")
    result = runner.invoke(app, ["study", "run", str(study)])
    assert result.exit_code == 0, result.output
    a, b = _job_files(run_out), _job_files(out)
    assert len(a) > 10 and a == b
    # Both are study folders with the same tables and a report.
    for name in ("study.json", "descriptors.csv", "profiles.json", "report.html"):
        assert (run_out / name).exists() and (out / name).exists(), name
    study_api = emogeom.Study.from_file(study)
    assert {r["state"] for r in study_api.status()} == {"done"}
    assert sorted(g.name for g in study_api.geometries().values()) == ["gpt2", "llama"]


def test_steer_on_a_plain_model(run_out, tiny_models):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from emogeom.models import wrap
    from emogeom.steering.hooks import steer as steer_hooks
    from emogeom.steering.vectors import residual_norms

    model = AutoModelForCausalLM.from_pretrained(str(tiny_models["llama"]), dtype="float32")
    tok = AutoTokenizer.from_pretrained(str(tiny_models["llama"]))
    g = emogeom.Geometry.load(next((run_out / "jobs").glob("llama-*")))
    ids = torch.tensor([tok("A quiet morning at the station.")["input_ids"]])
    with torch.no_grad():
        plain = model(ids).logits
        with emogeom.steer(model, tok, g, "calm", alpha=0.5) as layers:
            steered = model(ids).logits
        assert layers == [g.best_layer]
        after = model(ids).logits
        norms = residual_norms(wrap(model, tok), layers)
        vector = g.vectors[g.best_layer, g.emotions.index("calm")]
        with steer_hooks(model, vector, layers, 0.5, norms):
            by_hand = model(ids).logits
    assert not torch.allclose(plain, steered)
    torch.testing.assert_close(steered, by_hand)
    torch.testing.assert_close(plain, after)  # hooks gone on exit
    with pytest.raises(emogeom.errors.EmogeomError, match="unknown emotion 'smug'"), \
            emogeom.steer(model, tok, g, "smug", alpha=0.5):
        pass


def test_extract_on_a_plain_model_equals_the_job(run_out, tiny_models, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_models["llama"]), dtype="float32")
    tok = AutoTokenizer.from_pretrained(str(tiny_models["llama"]))
    assert tok.pad_token is None
    g = emogeom.extract(model, tok, per_emotion=6, permutations=200, splits=3, name="llama")
    assert tok.pad_token is None  # the user's tokenizer is not changed
    [job] = [p for p in (run_out / "jobs").iterdir() if p.name.startswith("llama-")]
    stored = emogeom.Geometry.load(job)
    assert g.best_layer == stored.best_layer and g.emotions == stored.emotions
    np.testing.assert_array_equal(g.vectors, stored.vectors)
    np.testing.assert_array_equal(g.rdms, stored.rdms)
    np.testing.assert_array_equal(g.acts, stored.acts)
    assert g.metrics == stored.metrics
    assert g.rdm().shape == (21, 21) and g.reliability.shape == (3,)
    # save → load gives back exactly the same geometry.
    g.save(tmp_path / "g")
    back = emogeom.Geometry.load(tmp_path / "g")
    for field in ("name", "emotions", "best_layer", "metrics", "settings", "model_info",
                  "labels", "stimulus_ids", "corpus_sha256"):
        assert getattr(back, field) == getattr(g, field), field
    for field in ("vectors", "rdms", "reliability", "acts", "half_rdms"):
        np.testing.assert_array_equal(getattr(back, field), getattr(g, field))
    assert sorted(back.references) == sorted(g.references)
    # A vector file found alone says what it is.
    _, meta = artefacts.read_tensors(tmp_path / "g" / "vectors.safetensors")
    assert meta["corpus_sha256"] == g.corpus_sha256 and meta["emogeom"] == emogeom.__version__
    assert meta["pooling"] == g.settings["extraction"]["pooling"]
    assert meta["preset"] == g.settings["preset"] and meta["emotions"] == g.emotions
    assert meta["architecture"] == "llama" and meta["d_model"] == g.vectors.shape[-1]
    assert "block" in meta["layer_definition"] and meta["n_layers"] == g.n_layers
    _, job_meta = artefacts.read_tensors(job / "vectors.safetensors")
    assert job_meta["model"] == str(tiny_models["llama"]) and job_meta["model_kind"] == "local"
    # compare on the API equals the row the study wrote.
    other = emogeom.Geometry.load(next(p for p in (run_out / "jobs").iterdir()
                                       if p.name.startswith("gpt2-")))
    c = emogeom.compare(back, other, permutations=200, bootstrap=40)
    [row] = artefacts.read_csv(run_out / "comparisons.csv")
    assert artefacts.csv_cell(c.rho) == row["rho"] and artefacts.csv_cell(c.p) == row["p_perm"]
    assert artefacts.csv_cell(c.ci[0]) == row["ci_low"]
    assert artefacts.csv_cell(c.rho_cross_text) == row["rho_cross_text"]


def test_failed_run_leaves_previous_outputs_untouched(run_out, tiny_models, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(run_out, out)
    before = {str(p.relative_to(out)): artefacts.file_sha256(p)
              for p in out.rglob("*") if p.is_file() and "jobs" not in p.parts}
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "config.json").write_text('{"model_type": "llama"}')  # no weights, no tokenizer
    result = runner.invoke(app, ["run", "-m", str(tiny_models["llama"]), "-m", str(bad),
                                 "--out", str(out), "--seed", "1", *FAST])
    assert result.exit_code == 1
    assert "left as they were" in result.output
    after = {str(p.relative_to(out)): artefacts.file_sha256(p)
             for p in out.rglob("*") if p.is_file() and "jobs" not in p.parts}
    assert after == before
    # The model that worked is kept as a finished job, for the next run to reuse.
    assert len(list(out.glob("jobs/llama-*/manifest.json"))) == 2


def test_run_flags_are_checked(tmp_path):
    out = tmp_path / "o"
    for args, message in ((["--pooling", "max"], "--pooling"), (["--denoise", "1.5"],
                          "--denoise"), (["--preset", "fancy"], "unknown preset"),
                          (["--permutations", "0"], "--permutations")):
        result = runner.invoke(app, ["run", "-m", "smollm2-135m-instruct", "--out", str(out),
                                     *args])
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    assert not out.exists()


def test_settings_presets_are_data():
    from emogeom.config import PRESETS, make_settings

    paper = make_settings("paper")
    assert paper.extraction.pooling == "last" and paper.analysis.denoise == 0
    assert make_settings("default").extraction.pooling == "mean"
    assert make_settings("paper", pooling="mean").extraction.pooling == "mean"
    assert set(PRESETS) == {"default", "paper"}
    with pytest.raises(emogeom.errors.EmogeomError, match="unknown setting 'colour'"):
        make_settings(colour="red")


# ---- rooms ----------------------------------------------------------------------------------

NUMPY_ROOMS = ("geometry", "stats", "analysis")
MODEL_ROOMS = ("models", "extraction", "study", "steering", "behavior", "method", "baselines")


def _imports(folder: Path) -> set[str]:
    return set().union(*(_imports_of(p) for p in folder.rglob("*.py")))


@pytest.mark.parametrize("room", NUMPY_ROOMS)
def test_numpy_rooms_never_import_torch(room):
    bad = {n for n in _imports(SRC / room)
           if n.split(".")[0] in ("torch", "transformers", "rich")
           or any(n.startswith(f"emogeom.{m}") for m in MODEL_ROOMS)}
    assert not bad, f"{room}/ imports {sorted(bad)}"


def test_report_imports_no_model_room():
    bad = {n for n in _imports(SRC / "report")
           if n.split(".")[0] in ("torch", "transformers")
           or any(n.startswith(f"emogeom.{m}") for m in MODEL_ROOMS)}
    assert not bad, f"report/ imports {sorted(bad)}"


def test_only_the_cli_imports_rich():
    users = [p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py")
             if any(n.split(".")[0] == "rich" for n in _imports_of(p))]
    assert all(u == "cli.py" or u.startswith("commands/") for u in users), users


def _imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_importing_the_numpy_rooms_loads_no_torch():
    code = ("import sys, emogeom, emogeom.analysis, emogeom.geometry, emogeom.stats, "
            "emogeom.report, emogeom.config; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
