"""llama.cpp control vectors from a geometry: file layout, layer indexing, values, CLI."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from emogeom.errors import EmogeomError
from emogeom.export.directions import measure_norms, steering_directions
from emogeom.export.llamacpp import (
    control_vector_tensors,
    model_hint_for,
    write_control_vector,
)

gguf = pytest.importorskip("gguf")

EMOTION = "calm"


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    """One tiny random llama (3 layers, d=32) with its tokenizer, in a folder."""
    from tests.conftest import build_tiny

    return build_tiny("llama", tmp_path_factory.mktemp("cvec") / "llama")


@pytest.fixture(scope="module")
def saved(tiny_llama, tmp_path_factory) -> Path:
    """A geometry of the tiny llama from ``emogeom.extract``, saved to a folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import emogeom

    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama), dtype="float32")
    tok = AutoTokenizer.from_pretrained(str(tiny_llama))
    g = emogeom.extract(model, tok, per_emotion=2, permutations=50, splits=2,
                        references=False, name="tiny-llama")
    folder = tmp_path_factory.mktemp("geometry") / "g"
    g.save(folder)
    return folder


@pytest.fixture(scope="module")
def geometry(saved):
    from emogeom.analysis import Geometry

    return Geometry.load(saved)


def _read(path: Path) -> tuple[dict, dict]:
    """(fields as Python values, {tensor name: (type name, float32 array)}) of a GGUF file."""
    reader = gguf.GGUFReader(str(path))
    fields = {k: f.contents() for k, f in reader.fields.items()}
    tensors = {t.name: (t.tensor_type.name, np.array(t.data, dtype=np.float32))
               for t in reader.tensors}
    return fields, tensors


def _app() -> typer.Typer:
    from emogeom.commands.export import register

    app = typer.Typer()
    register(app)
    return app


def test_file_layout_indexing_and_values(geometry, tmp_path):
    norms = {1: 2.0, 2: 3.5}
    out = tmp_path / "calm.gguf"
    old = os.umask(0o027)
    try:
        done = write_control_vector(out, geometry, EMOTION, "1-2", scale=0.7, norms=norms)
    finally:
        os.umask(old)
    assert (out.stat().st_mode & 0o777) == 0o640  # the umask is honoured
    assert not [p for p in tmp_path.iterdir() if p.name != "calm.gguf"]  # no temp file left
    fields, tensors = _read(out)
    assert fields["general.architecture"] == "controlvector"
    assert fields["controlvector.model_hint"] == "llama"
    assert fields["controlvector.layer_count"] == 2
    assert fields["emogeom.emotion"] == EMOTION and fields["emogeom.units"] == "residual-norm"
    # llama.cpp adds direction.N to the output of block N (0-based), as emogeom's layer N.
    assert sorted(tensors) == ["direction.1", "direction.2"] == done["tensors"]
    expected = steering_directions(geometry, EMOTION, [1, 2], 0.7, norms)
    for layer in (1, 2):
        kind, values = tensors[f"direction.{layer}"]
        assert kind == "F32" and values.shape == (geometry.vectors.shape[-1],)
        np.testing.assert_array_equal(values, expected[layer])
        assert np.linalg.norm(values) == pytest.approx(0.7 * norms[layer], rel=1e-5)
    # The two layers' vectors differ, so a shifted index would not pass the check above.
    assert not np.allclose(expected[1] / norms[1], expected[2] / norms[2])


def test_layer_zero_cannot_be_exported_and_all_means_from_one(geometry, tmp_path):
    with pytest.raises(EmogeomError, match="block 0"):
        write_control_vector(tmp_path / "a.gguf", geometry, EMOTION, [0, 1])
    with pytest.raises(EmogeomError, match="direction.0"):
        control_vector_tensors({0: np.ones(4, dtype=np.float32)})
    with pytest.raises(EmogeomError, match="lengths"):
        control_vector_tensors({1: np.ones(4), 2: np.ones(5)})
    assert not (tmp_path / "a.gguf").exists()
    done = write_control_vector(tmp_path / "all.gguf", geometry, EMOTION, "all", scale=2.0)
    assert done["layers"] == list(range(1, geometry.n_layers)) and done["units"] == "absolute"
    fields, tensors = _read(tmp_path / "all.gguf")
    assert sorted(tensors) == [f"direction.{i}" for i in range(1, geometry.n_layers)]
    assert fields["controlvector.layer_count"] == geometry.n_layers - 1
    expected = steering_directions(geometry, EMOTION, done["layers"], 2.0)
    for layer, vector in expected.items():
        np.testing.assert_array_equal(tensors[f"direction.{layer}"][1], vector)


def test_model_hint_is_llamacpps_architecture_name():
    assert model_hint_for("llama") == "llama"
    assert model_hint_for("gemma3_text") == "gemma3"
    assert model_hint_for("mistral") == "llama"
    assert model_hint_for("qwen2_moe") == "qwen2moe"
    assert model_hint_for("gpt_neox") == "gptneox"
    assert model_hint_for(None) is None


def test_cli_absolute_units_needs_no_model(saved, geometry, tmp_path):
    out = tmp_path / "cli.gguf"
    result = CliRunner().invoke(_app(), [
        "export", str(saved), "--format", "gguf-control-vector", "--out", str(out),
        "--emotion", EMOTION, "--layers", "1,2", "--scale", "0.5", "--units", "absolute"])
    assert result.exit_code == 0, result.output
    assert "direction.1, direction.2" in result.output and "absolute" in result.output
    fields, tensors = _read(out)
    assert fields["emogeom.units"] == "absolute"
    expected = steering_directions(geometry, EMOTION, [1, 2], 0.5)
    for layer, vector in expected.items():
        np.testing.assert_array_equal(tensors[f"direction.{layer}"][1], vector)


def test_cli_measures_norms_on_the_model(saved, geometry, tiny_llama, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "norm.gguf"
    result = CliRunner().invoke(_app(), [
        "export", str(saved), "--format", "gguf-control-vector", "--out", str(out),
        "--emotion", EMOTION, "--layers", "2", "--scale", "0.4", "--model", str(tiny_llama),
        "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "mean residual norm" in result.output
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama), dtype="float32")
    tok = AutoTokenizer.from_pretrained(str(tiny_llama))
    norms = measure_norms(model, tok, [2])
    fields, tensors = _read(out)
    assert list(tensors) == ["direction.2"]
    np.testing.assert_allclose(fields["emogeom.residual_norms"], [norms[2]], rtol=1e-6)
    np.testing.assert_allclose(tensors["direction.2"][1],
                               steering_directions(geometry, EMOTION, [2], 0.4, norms)[2],
                               rtol=1e-5, atol=1e-6)


def test_cli_errors_are_one_line(saved, tmp_path):
    runner = CliRunner()
    base = ["export", str(saved), "--out", str(tmp_path / "x.gguf")]
    cases = {
        "emotion": [*base, "--format", "gguf-control-vector", "--units", "absolute"],
        "unknown --format": [*base, "--format", "onnx"],
        "block 0": [*base, "--format", "gguf-control-vector", "--emotion", EMOTION,
                    "--layers", "0", "--units", "absolute"],
        # The geometry came from a model in memory: its recorded name cannot be loaded.
        "--units absolute": [*base, "--format", "gguf-control-vector", "--emotion", EMOTION,
                             "--layers", "1"],
        "no saved geometry": ["export", str(tmp_path), "--format", "rsatoolbox", "--out",
                              str(tmp_path / "r")],
    }
    for needle, args in cases.items():
        result = runner.invoke(_app(), args)
        assert result.exit_code == 2, (needle, result.output)
        lines = [x for x in result.output.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), (needle, result.output)
        assert needle in " ".join(result.output.split()), (needle, result.output)
    assert not (tmp_path / "x.gguf").exists()


def test_cli_rsatoolbox_calls_the_rsa_writer(saved, tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("emogeom.export.rsa")
    fake.save_rsatoolbox = lambda geometry, out: calls.append((geometry.name, Path(out)))
    monkeypatch.setitem(sys.modules, "emogeom.export.rsa", fake)
    out = tmp_path / "rdms.hdf5"
    result = CliRunner().invoke(_app(), ["export", str(saved), "--format", "rsatoolbox",
                                         "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert calls == [("tiny-llama", out)] and "rsatoolbox" in result.output


def test_inspect_gguf_and_safetensors(saved, geometry, tmp_path):
    out = tmp_path / "c.gguf"
    write_control_vector(out, geometry, EMOTION, [1, 2], scale=0.25)
    runner = CliRunner()
    result = runner.invoke(_app(), ["inspect", str(out)])
    assert result.exit_code == 0, result.output
    for text in ("control vector", "controlvector.model_hint", "llama",
                 "controlvector.layer_count", "direction.1", "direction.2", "F32",
                 f"[{geometry.vectors.shape[-1]}]", "emogeom.scale [float32]: 0.25"):
        assert text in result.output, (text, result.output)
    result = runner.invoke(_app(), ["inspect", str(saved / "vectors.safetensors")])
    assert result.exit_code == 0, result.output
    shape = str(list(geometry.vectors.shape))
    assert f"vectors  shape {shape}  float32" in result.output
    assert "layer_definition: output of decoder block" in result.output
    assert "corpus_sha256" in result.output and "preset: default" in result.output
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(out.read_bytes()[:40])
    for path in (bad, tmp_path / "missing.safetensors", saved / "rdm.csv"):
        result = runner.invoke(_app(), ["inspect", str(path)])
        lines = [x for x in result.output.splitlines() if x.strip()]
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert lines[0].startswith("error:"), result.output
