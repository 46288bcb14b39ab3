"""Study files: validation, provenance-hashed jobs, skip/resume/repair, executors, report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emogeom import artefacts
from emogeom.cli import app
from emogeom.errors import EmogeomError
from emogeom.study.runner import PAUSE_ENV, run_study_spec, study_status
from emogeom.study.spec import load_study, parse_study

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
STATS = "statistics: {permutations: 200, bootstrap: 40}\nanalysis: {splits: 3}\n"


def _yaml(tiny_models, out: Path, archs=("llama", "gpt2"), extra: str = "") -> str:
    lines = [f"name: t\nout: {out}\nmodels:"]
    for i, arch in enumerate(archs):
        lines.append(f"  - id: {tiny_models[arch]}\n    label: {arch}\n    family: fam\n"
                     f"    variant: {'base' if i == 0 else 'instruct'}")
    return "\n".join(lines) + "\n" + STATS + extra


def _write(tmp_path: Path, text: str, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _numbers(out: Path) -> dict[str, str]:
    """Every computed number of a study folder (manifests hold times, so they are left out)."""
    files = {"comparisons.csv", "descriptors.csv", "base_instruct.csv"}
    found = {p.name: p.read_text() for p in out.iterdir() if p.name in files}
    for job in sorted((out / "jobs").iterdir()):
        found[job.name] = (job / "metrics.json").read_text()
        for name in ("activations.safetensors", "vectors.safetensors",
                     "analysis.safetensors"):
            found[f"{job.name}/{name}"] = artefacts.file_sha256(job / name)
    return found


@pytest.mark.parametrize("text, message", [
    ("name: x\nmodels:\n  - id: a\n    variant: chat\n", ":4: models[0].variant: Input should"),
    ("name: x\nmodels: [{id: a}]\nprecisions: [fp8]\n", ":3: precisions: unknown precision"),
    ("name: x\nmodels: [{id: a}]\npresets: [fancy]\n", ":3: presets: unknown preset 'fancy'"),
    ("name: x\nmodels:\n  - {id: a}\n  - {id: b/a}\n", "two models share the label 'a'"),
    ("name: x\nmodels: [{id: a}]\nstatistics: {permutations: 0}\n",
     ":3: statistics.permutations: Input should be greater than or equal to 1"),
    ("name: x\nmodels: [{id: a}]\ncolour: red\n", ":3: colour: Extra inputs are not permitted"),
    ("name: x\nmodels: [{id: a}\n", "not valid YAML"),
    ("- just a list\n", "a study file is a YAML mapping"),
])
def test_spec_errors_name_line_and_key(text, message):
    with pytest.raises(EmogeomError, match=None) as info:
        parse_study(text, "s.yaml")
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_shipped_studies_validate():
    quick = load_study(ROOT / "studies/quickstart.yaml")
    assert [m.id for m in quick.models] == ["smollm2-135m-instruct", "gemma3-270m"]
    paper = load_study(ROOT / "studies/paper-12.yaml")
    assert len(paper.models) == 12 and paper.precisions == ["fp16"]
    assert set(paper.presets) == {"paper", "default"}
    families = {}
    for m in paper.models:
        families.setdefault(m.family, set()).add(m.variant)
    assert len(families) == 6 and all(v == {"base", "instruct"} for v in families.values())
    result = runner.invoke(app, ["study", "check", str(ROOT / "studies/paper-12.yaml")])
    assert result.exit_code == 0 and "24 jobs" in result.output


def test_study_runs_skips_and_repairs(tiny_models, tmp_path):
    out = tmp_path / "out"
    spec = parse_study(_yaml(tiny_models, out, extra="precisions: [fp32, bf16]\n"))
    first = run_study_spec(spec)
    assert len(first["computed"]) == 4 and not first["failed"]
    index = json.loads((out / "study.json").read_text())
    folders = {j["folder"] for j in index["jobs"]}
    assert len(folders) == 4 and all((out / "jobs" / f / "manifest.json").exists()
                                     for f in folders)
    manifest = json.loads((out / "jobs" / sorted(folders)[0] / "manifest.json").read_text())
    assert manifest["job"]["key"]["model"]["folder_sha256"]
    assert set(manifest["artefacts"]) >= {"activations.safetensors", "metrics.json"}
    rows = artefacts.read_csv(out / "comparisons.csv")
    assert sorted(r["kind"] for r in rows) == ["models", "models", "precision", "precision"]
    bi = artefacts.read_csv(out / "base_instruct.csv")
    assert [(r["base"], r["instruct"]) for r in bi] == [("llama", "gpt2")] * 2
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "<script" not in html
    assert (out / "figures" / "model_map_fp32-default.png").exists()
    before = _numbers(out)

    again = run_study_spec(spec)
    assert again["computed"] == [] and again["skipped"] == 4
    assert _numbers(out) == before

    # A damaged artefact is found by its checksum and only that job is recomputed.
    victim = out / "jobs" / sorted(folders)[1] / "vectors.safetensors"
    data = bytearray(victim.read_bytes())
    data[-5] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert {r["state"] for r in study_status(spec)} == {"done", "damaged"}
    repaired = run_study_spec(spec)
    assert repaired["computed"] == [sorted(folders)[1]]
    assert _numbers(out) == before


def test_job_hash_follows_inputs(tiny_models, tmp_path):
    from emogeom.baselines.references import reference_names
    from emogeom.study.jobs import load_inputs, plan_jobs

    def hashes(text):
        spec = parse_study(text)
        inputs = load_inputs(spec)
        return [j.hash for j in plan_jobs(spec, inputs, {p: reference_names() for p in inputs})]

    base = _yaml(tiny_models, tmp_path / "o", archs=("llama",))
    assert hashes(base) == hashes(base)
    assert hashes(base) != hashes(base.replace("permutations: 200", "permutations: 100"))
    assert hashes(base) != hashes(base + "extraction: {per_emotion: 5}\n")
    assert hashes(base) != hashes(base.replace("{splits: 3}",
                                               "{splits: 3, layer_criterion: reference}"))
    # The output folder and the statistics used only between models do not change a job.
    assert hashes(base) == hashes(base.replace(str(tmp_path / "o"), str(tmp_path / "p")))
    assert hashes(base) == hashes(base.replace("bootstrap: 40", "bootstrap: 10"))
    # The same corpus at two paths: same job; another corpus: another job.
    from emogeom.stimuli.corpus import default_corpus_path

    for name in ("a.jsonl", "b.jsonl"):
        (tmp_path / name).write_bytes(default_corpus_path().read_bytes())
    assert hashes(base + f"corpus: {tmp_path / 'a.jsonl'}\n") == \
        hashes(base + f"corpus: {tmp_path / 'b.jsonl'}\n")
    (tmp_path / "b.jsonl").write_text((tmp_path / "b.jsonl").read_text().replace(
        "The ", "A ", 1))
    assert hashes(base + f"corpus: {tmp_path / 'a.jsonl'}\n") != \
        hashes(base + f"corpus: {tmp_path / 'b.jsonl'}\n")
    # Same weights at another path: same job; changed weights: another job.
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_models["llama"], copy)
    moved = base.replace(str(tiny_models["llama"]), str(copy))
    assert hashes(moved) == hashes(base)
    (copy / "config.json").write_text((copy / "config.json").read_text() + "\n")
    assert hashes(moved) != hashes(base)


def _cli(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "emogeom.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_kill_and_resume_equals_uninterrupted(tiny_models, tmp_path):
    archs = ("llama", "gpt2", "qwen2")
    killed_out, clean_out = tmp_path / "killed", tmp_path / "clean"
    killed = _write(tmp_path, _yaml(tiny_models, killed_out, archs), "k.yaml")
    clean = _write(tmp_path, _yaml(tiny_models, clean_out, archs), "c.yaml")
    env = dict(os.environ, HF_HUB_OFFLINE="1", **{PAUSE_ENV: "30"})
    proc = _cli(["study", "run", str(killed)], env)
    deadline = time.time() + 300
    while not list(killed_out.glob("jobs/*/manifest.json")):
        assert proc.poll() is None and time.time() < deadline, "study ended before a job"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(list(killed_out.glob("jobs/*/manifest.json")))
    assert finished == 1
    # What a kill inside the next job leaves: some artefacts written, no manifest.
    # Top-level outputs come only at the end of a fully successful run.
    assert not (killed_out / "study.json").exists()
    jobs = study_status(load_study(killed))
    done_job = next(killed_out.glob("jobs/*/manifest.json")).parent
    partial = killed_out / "jobs" / next(j["folder"] for j in jobs
                                         if j["folder"] != done_job.name)
    partial.mkdir(parents=True, exist_ok=True)
    (partial / "activations.safetensors").write_bytes(
        (done_job / "activations.safetensors").read_bytes())
    env.pop(PAUSE_ENV)
    result = subprocess.run([sys.executable, "-m", "emogeom.cli", "study", "run",
                             str(killed)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 already done, 2 computed" in result.stdout
    subprocess.run([sys.executable, "-m", "emogeom.cli", "study", "run", str(clean)],
                   env=env, check=True, capture_output=True)
    a, b = _numbers(killed_out), _numbers(clean_out)
    assert a == b


def test_ray_executor_equals_local(tiny_models, tmp_path):
    pytest.importorskip("ray")
    local = parse_study(_yaml(tiny_models, tmp_path / "local"))
    ray_spec = parse_study(_yaml(tiny_models, tmp_path / "ray",
                                 extra="executor: {kind: ray, num_cpus: 1}\n"))
    run_study_spec(local)
    res = run_study_spec(ray_spec)
    assert len(res["computed"]) == 2 and not res["failed"]
    assert _numbers(tmp_path / "local") == _numbers(tmp_path / "ray")


def test_failed_job_is_recorded_and_study_goes_on(tiny_models, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text('{"model_type": "llama"}')  # no weights, no tokenizer
    text = _yaml(tiny_models, tmp_path / "out", archs=("llama",))
    text = text.replace("models:\n", f"models:\n  - {{id: {bad}, label: broken}}\n")
    path = _write(tmp_path, text)
    result = runner.invoke(app, ["study", "run", str(path)])
    assert result.exit_code == 1
    rows = {r["label"]: r for r in study_status(load_study(path))}
    assert rows["broken"]["state"] == "failed" and rows["llama"]["state"] == "done"
    # No top-level outputs from a study with a failed job.
    assert not (tmp_path / "out" / "report.html").exists()
    status = runner.invoke(app, ["study", "status", str(path)])
    assert status.exit_code == 1 and "failed" in status.output


def test_report_rerenders_a_study_without_models(tiny_models, tmp_path):
    out = tmp_path / "out"
    run_study_spec(parse_study(_yaml(tiny_models, out)))
    (out / "report.html").unlink()
    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 0 and (out / "report.html").exists()


def test_bad_study_changes_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    path = _write(tmp_path, f"name: x\nout: {out}\nmodels: [{{id: no-such-model}}]\n")
    result = runner.invoke(app, ["study", "run", str(path)])
    assert result.exit_code == 2
    assert "unknown model 'no-such-model'" in (result.stderr or result.output)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    good = _write(tmp_path, f"name: x\nout: {out}\nmodels: [{{id: smollm2-135m-instruct}}]\n",
                  "good.yaml")
    result = runner.invoke(app, ["study", "run", str(good), "--executor", "slurm"])
    assert result.exit_code == 2 and "unknown executor 'slurm'" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    missing = runner.invoke(app, ["study", "run", str(tmp_path / "absent.yaml")])
    assert missing.exit_code == 2 and "study file not found" in missing.output


def test_model_map_coordinates_recover_distances():
    from scipy.spatial.distance import cdist

    from emogeom.geometry import mds_coords

    points = np.random.default_rng(1).normal(size=(6, 2))
    d = cdist(points, points)
    coords = mds_coords(d, seed=0)
    assert np.abs(cdist(coords, coords) - d).max() < 0.05


def test_study_adds_steering_and_behaviour(tiny_models, tmp_path):
    out = tmp_path / "out"
    spec = parse_study(_yaml(tiny_models, out, archs=("llama", "qwen2", "mistral"),
                             extra="steering: true\nbehaviour: true\n"))
    res = run_study_spec(spec)
    assert not res["failed"]
    desc = artefacts.read_csv(out / "descriptors.csv")
    regimes = {"surgical", "repetitive collapse", "explosive"}
    assert all(d["steering_regime_reference"] in regimes for d in desc)
    job = out / "jobs" / desc[0]["job"]
    manifest = json.loads((job / "manifest.json").read_text())
    assert {"steering.json", "behaviour/profile.json"} <= set(manifest["artefacts"])
    [link] = json.loads((out / "behaviour_link.json").read_text())
    # Random tiny models answer nothing right, so facets may be undefined: then they are
    # dropped with a reason and the caveat says no test was run.
    assert set(link["facets_by_model"]) == {"llama", "qwen2", "mistral"}
    assert link["n_models"] + len(link["dropped"]) == 3 and link["caveat"]
    if link["n_models"] == 3:
        assert link["min_p"] == pytest.approx(1 / 6) and link["p_exact"] is not None
    html = (out / "report.html").read_text()
    assert "Behaviour and geometry" in html and "steering regime" in html
    printed = runner.invoke(app, ["study", "run", str(_write(tmp_path, _yaml(
        tiny_models, out, archs=("llama", "qwen2", "mistral"),
        extra="steering: true\nbehaviour: true\n")))])
    assert printed.exit_code == 0 and "caveat:" in printed.output, printed.output


def test_run_steering_flag(tiny_models, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", "--model", str(tiny_models["llama"]), "--out", str(out),
                                 "--steering", "--permutations", "50", "--bootstrap", "20"])
    assert result.exit_code == 0, result.output
    [job] = list((out / "jobs").iterdir())
    metrics = json.loads((job / "metrics.json").read_text())
    assert metrics["steering_regime_perplexity"] in {"surgical", "repetitive collapse",
                                                     "explosive"}
    assert (job / "steering.json").exists()
    assert "steering regime" in (out / "report.html").read_text()


def test_chat_template_policy_wraps_stories(tiny_models):
    from transformers import AutoTokenizer

    from emogeom.models.chat import as_read

    tok = AutoTokenizer.from_pretrained(str(tiny_models["llama"]))
    assert as_read(tok, ["A story."], "raw") == (["A story."], True)
    with pytest.raises(EmogeomError, match="has no chat template; use chat_template: raw"):
        as_read(tok, ["A story."], "chat", "tiny-llama")
    tok.chat_template = ("{% for m in messages %}<s>[{{ m['role'] }}] {{ m['content'] }}"
                         "{% endfor %}{% if add_generation_prompt %} [assistant]{% endif %}")
    texts, special = as_read(tok, ["A story."], "chat")
    assert texts == ["<s>[user] A story. [assistant]"] and special is False


def test_two_presets_load_and_read_each_model_once(tiny_models, tmp_path, monkeypatch):
    import emogeom.extraction.pooled as pooled
    import emogeom.models as models

    loads, passes = [], []
    real_load, real_extract = models.load_model, pooled.extract_pooled

    def counting_load(*args, **kwargs):
        loads.append(args[0])
        return real_load(*args, **kwargs)

    def counting_extract(model, tokenizer, texts, pooling, *args, **kwargs):
        passes.append((len(texts), pooling))
        return real_extract(model, tokenizer, texts, pooling, *args, **kwargs)

    monkeypatch.setattr(models, "load_model", counting_load)
    monkeypatch.setattr("emogeom.extraction.read.extract_pooled", counting_extract)
    both = parse_study(_yaml(tiny_models, tmp_path / "both", archs=("llama",),
                             extra="presets: [default, paper]\n"))
    res = run_study_spec(both)
    assert len(res["computed"]) == 2 and len(loads) == 1
    # Stories and neutral sentences, each read once with both poolings.
    assert sorted(passes) == [(60, ("mean", "last")), (1260, ("mean", "last"))]
    loads.clear()
    for preset in ("default", "paper"):
        run_study_spec(parse_study(_yaml(tiny_models, tmp_path / preset, archs=("llama",),
                                         extra=f"presets: [{preset}]\n")))
    assert len(loads) == 2
    for preset in ("default", "paper"):
        [shared] = (tmp_path / "both" / "jobs").glob(f"llama-fp32-{preset}-*")
        [alone] = (tmp_path / preset / "jobs").glob(f"llama-fp32-{preset}-*")
        assert shared.name == alone.name  # same job, same hash
        a, b = emogeom_geometry(shared), emogeom_geometry(alone)
        assert a.best_layer == b.best_layer
        # The paper preset's 63 texts are batched with the other 1,197 in the shared pass,
        # so float rounding may differ in the last bits; the numbers agree to that.
        np.testing.assert_allclose(a.vectors, b.vectors, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(a.rdms, b.rdms, atol=1e-5)
        np.testing.assert_allclose(a.reliability, b.reliability, atol=1e-4)
        manifest = json.loads((shared / "manifest.json").read_text())
        assert manifest["read"]["texts"] == 1320 and len(manifest["read"]["shared_with"]) == 2


def emogeom_geometry(folder: Path):
    from emogeom.analysis import Geometry

    return Geometry.load(folder)
