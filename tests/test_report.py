"""The one report: every section from a study folder written here with the artefact helpers
(no model), text escaped, a pure function of the files, map labels that never overlap."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emogeom import artefacts as art
from emogeom.emotions import EMOTIONS
from emogeom.geometry import cosine_rdm, rdm_std, rowwise_spearman, upper
from emogeom.report import build_report, build_study_report, figures
from emogeom.report.study import SECTIONS

ROOT = Path(__file__).resolve().parents[1]
N_LAYERS, D = 6, 16
EVIL = "<b>x"  # a label that must come out escaped everywhere
# (label, family, variant, precision, preset)
JOBS = [(EVIL, "fam", "base", "fp32", "default"),
        ("smol", "fam", "instruct", "fp32", "default"),
        ("g&m", "other", "base", "fp32", "default"),
        ("smol", "fam", "instruct", "bf16", "default")]
COMPARISON = ["kind", "precision_a", "preset_a", "precision_b", "preset_b", "model_a",
              "model_b", "layer_a", "layer_b", "method", "rho", "ci_low", "ci_high", "p_perm",
              "p_holm", "p_bh", "ceiling", "rho_ceiled", "cka", "procrustes",
              "rho_max_layers", "layer_a_max", "layer_b_max", "p_max_layers",
              "rho_cross_text", "ci_cross_text_low", "ci_cross_text_high", "p_cross_text",
              "rho_within_a", "rho_within_b", "rho_partial_text", "p_partial_text",
              "rho_partial_tfidf", "rho_partial_minilm", "rho_human_a", "rho_human_b"]


def _job(out: Path, k: int, label: str, precision: str, rng) -> tuple[str, dict, np.ndarray]:
    """One job folder: metrics.json, manifest.json, rdm.csv, vectors.safetensors."""
    name = f"job{k}-{precision}"
    folder = out / "jobs" / name
    shared = rng.normal(size=(len(EMOTIONS), D))
    vectors = np.stack([shared + rng.normal(scale=0.5 + 0.2 * layer, size=shared.shape)
                        for layer in range(N_LAYERS)]).astype(np.float32)
    rdms = cosine_rdm(vectors)
    best = 2 + k % 3
    human = cosine_rdm(rng.normal(size=(len(EMOTIONS), 2)))
    metrics = {
        "n_layers": N_LAYERS, "best_layer": best, "best_layer_depth": best / (N_LAYERS - 1),
        "best_layer_criterion": "reliability",
        "anisotropy": np.linspace(0.9, 0.5, N_LAYERS), "anisotropy_at_best": 0.7,
        "rdm_std": rdm_std(rdms), "rdm_std_at_best": float(rdm_std(rdms[best])),
        "reliability": [None, *np.linspace(0.1, 0.8, N_LAYERS - 1)],
        "split_half_fixed": np.linspace(0.0, 0.6, N_LAYERS), "reliability_at_best": 0.6,
        "valence_within": 0.9, "valence_between": 1.1, "pc1_valence_abs_r": 0.5,
        "best_pc_valence": 2, "best_pc_valence_abs_r": 0.6,
        "layer_definition": "output of decoder block i (0-based), before any final norm",
        "rho_human": rowwise_spearman(upper(rdms), upper(human)[None]),
        "rho_human_at_best": 0.3, "p_human_at_best": 0.01,
        "rho_tfidf": np.linspace(0.2, 0.5, N_LAYERS), "rho_minilm": np.linspace(0.3, 0.1, 6),
    }
    art.write_json(folder / "metrics.json", metrics)
    art.write_json(folder / "manifest.json", {"model": {
        "architecture": "llama", "dtype_loaded": "float32", "d_model": D,
        "description": f"{label} <i>test</i> model",
        "note": "weights de-quantised from a 4-bit GGUF file: 'fp32' means de-quantised Q4"}})
    art.write_rdm_csv(folder / "rdm.csv", rdms[best], list(EMOTIONS))
    art.write_tensors(folder / "vectors.safetensors", {"vectors": vectors}, {"label": label})
    return name, metrics, rdms


def write_study(out: Path, profiles: bool = True, behaviour: bool = True) -> Path:
    """A study folder as the runner writes it, with made-up numbers."""
    rng = np.random.default_rng(0)
    desc, jobs, info = [], [], {}
    for k, (label, family, variant, precision, preset) in enumerate(JOBS):
        name, metrics, rdms = _job(out, k, label, precision, rng)
        info[(label, precision)] = (metrics["best_layer"], rdms)
        jobs.append({"label": label, "family": family, "variant": variant,
                     "precision": precision, "preset": preset, "folder": name, "hash": name})
        desc.append([label, family, variant, precision, preset, "llama", N_LAYERS,
                     metrics["best_layer"], metrics["best_layer_depth"], 0.7, 0.2, 0.6,
                     0.3, 0.01, "surgical" if k else "", "explosive" if k else "", name])
    jobs.append({"label": "late", "family": None, "variant": None, "precision": "fp32",
                 "preset": "default", "folder": "job-late", "hash": "late"})
    art.write_json(out / "study.json", {
        "spec": {"name": "synthetic <study>", "description": "Checks & <escapes>",
                 "statistics": {"method": "spearman", "seed": 0}},
        "jobs": jobs, "references_skipped": {"surface": "package <missing>"},
        "norms": "NRC VAD norms"})
    art.write_csv(out / "descriptors.csv", [
        "label", "family", "variant", "precision", "preset", "architecture", "n_layers",
        "best_layer", "best_layer_depth", "anisotropy", "rdm_std", "reliability", "rho_human",
        "p_human", "steering_regime_reference", "steering_regime_perplexity", "job"],
        [[art.csv_cell(v) for v in row] for row in desc])
    rows, profile_rows = [], []
    fp32 = [label for label, *_, precision, _ in JOBS if precision == "fp32"]
    for i, a in enumerate(fp32):
        for b in fp32[i + 1:]:
            (la, ra), (lb, rb) = info[(a, "fp32")], info[(b, "fp32")]
            rho = float(rowwise_spearman(upper(ra[la])[None], upper(rb[lb])[None])[0])
            rows.append({"kind": "models", "precision_a": "fp32", "preset_a": "default",
                         "precision_b": "fp32", "preset_b": "default", "model_a": a,
                         "model_b": b, "layer_a": la, "layer_b": lb, "method": "spearman",
                         "rho": rho, "ci_low": rho - 0.1, "ci_high": rho + 0.05,
                         "p_perm": 0.001, "p_holm": 0.003, "ceiling": 0.7, "cka": 0.5,
                         "rho_cross_text": rho / 2, "ci_cross_text_low": 0.0,
                         "ci_cross_text_high": 0.4, "p_cross_text": 0.02,
                         "rho_within_a": 0.5, "rho_within_b": 0.4, "rho_partial_text": 0.2,
                         "p_partial_text": 0.04, "rho_partial_tfidf": 0.25})
            same = rowwise_spearman(upper(ra), upper(rb[lb])[None])
            profile_rows.append({"model_a": a, "model_b": b, "precision": "fp32",
                                 "preset": "default", "layer_b": lb, "same_text": same,
                                 "cross_text": same / 2})
    rows.append({"kind": "precision", "precision_a": "fp32", "preset_a": "default",
                 "precision_b": "bf16", "preset_b": "default", "model_a": "smol",
                 "model_b": "smol", "layer_a": 3, "layer_b": 3, "rho": 0.99, "p_perm": 1e-4})
    art.write_csv(out / "comparisons.csv", COMPARISON,
                  [[art.csv_cell(r.get(c)) for c in COMPARISON] for r in rows])
    art.write_csv(out / "base_instruct.csv", [
        "family", "precision", "preset", "base", "instruct", "layer_base", "layer_instruct",
        "rho", "ci_low", "ci_high", "p_perm", "p_holm"],
        [["fam", "fp32", "default", EVIL, "smol", 2, 3, 0.4, 0.3, 0.5, 0.01, 0.02]])
    if profiles:
        art.write_json(out / "profiles.json", profile_rows)
    if behaviour:
        art.write_json(out / "behaviour_link.json", [{
            "precision": "fp32", "preset": "default", "n_models": 3, "rho": 0.5, "p": 0.3,
            "p_exact": 0.33, "dropped": {}, "caveat": "only 3 models <small n>",
            "facets_by_model": {EVIL: {"formal_compliance": 0.5, "stance_hold": None},
                                "smol": {"formal_compliance": 0.7, "stance_hold": 0.2}}}])
    for name in ("human", "tfidf", "minilm"):
        art.write_rdm_csv(out / "references" / "default" / f"{name}_rdm.csv",
                          cosine_rdm(rng.normal(size=(len(EMOTIONS), 4))), list(EMOTIONS))
    return out


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """The synthetic study folder with its report built once."""
    out = write_study(tmp_path_factory.mktemp("report") / "study")
    build_study_report(out)
    return out


def test_report_has_every_section(study):
    html = (study / "report.html").read_text()
    for key, heading in SECTIONS.items():
        assert f"<h2 id='{key}'>" in html, heading
    # Layer, reference and same/cross-text profiles: one figure per job / per pair, on disk
    # as PNG and PDF too.
    figdir = study / "figures"
    for job in ("job0-fp32", "job1-fp32", "job2-fp32", "job3-bf16"):
        for kind in ("layers", "references", "map", "rdm"):
            assert (figdir / f"{job}_{kind}.png").stat().st_size > 1000
            assert (figdir / f"{job}_{kind}.pdf").read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in figdir.glob("text_profile_*.png")) == [
        "text_profile_0.png", "text_profile_1.png", "text_profile_2.png"]
    assert (figdir / "rho_fp32-default.png").exists()
    assert (figdir / "model_map_fp32-default.png").exists()
    assert (figdir / "reference_default_human.png").exists()
    assert html.count("<img") == 4 * 4 + 3 + 2 + 3  # jobs × 4, profiles, matrix+map, refs
    # ρ matrix with CI and p; factor and base↔instruct rows; behaviour link; notes.
    assert "p 0.001" in html and "[" in html
    assert "fp32 default" in html and "bf16 default" in html
    assert "exact p = 0.33" in html
    assert "de-quantised from a 4-bit GGUF file" in html
    assert "Jobs not finished (left out): job-late" in html
    assert "surgical / explosive" in html


def test_report_escapes_every_text(study):
    html = (study / "report.html").read_text()
    assert "&lt;b&gt;x" in html and "<b>" not in html
    assert "g&amp;m" in html and "g&m" not in html
    assert "&lt;i&gt;test&lt;/i&gt;" in html and "<i>" not in html
    assert "synthetic &lt;study&gt;" in html and "Checks &amp; &lt;escapes&gt;" in html
    assert "&lt;small n&gt;" in html and "package &lt;missing&gt;" in html


def test_report_is_a_pure_function_of_the_folder(study, tmp_path):
    first = (study / "report.html").read_bytes()
    other = write_study(tmp_path / "again")
    assert build_report(other).read_bytes() == first


def test_study_run_report_rerenders_identically(tiny_models, tmp_path):
    """A study run by the runner (two tiny models) reports every section, and re-rendering
    from its folder alone gives the same page."""
    from emogeom.study.runner import run_study_spec
    from emogeom.study.spec import parse_study

    out = tmp_path / "out"
    text = (f"name: tiny\nout: {out}\nmodels:\n"
            f"  - {{id: {tiny_models['llama']}, label: llama, family: f, variant: base}}\n"
            f"  - {{id: {tiny_models['gpt2']}, label: gpt2, family: f, variant: instruct}}\n"
            "statistics: {permutations: 100, bootstrap: 20}\nanalysis: {splits: 2}\n")
    run_study_spec(parse_study(text))
    written = (out / "report.html").read_bytes()
    html = written.decode()
    for key in SECTIONS:
        assert f"<h2 id='{key}'>" in html, key
    assert "llama vs gpt2" in html and "f</td>" in html  # model-or-texts and base↔instruct
    (out / "report.html").unlink()
    assert build_study_report(out).read_bytes() == written


def test_optional_artefacts_are_skipped(tmp_path):
    out = write_study(tmp_path / "bare", profiles=False, behaviour=False)
    html = build_study_report(out).read_text()
    assert "<h2 id='text-profiles'>" not in html and not list(
        (out / "figures").glob("text_profile_*"))
    assert "Behaviour was not measured" in html
    assert "<h2 id='layers'>" in html and "<h2 id='references'>" in html


def test_report_imports_no_model_room():
    banned = ("torch", "transformers", "accelerate", "emogeom.models", "emogeom.extraction",
              "emogeom.study", "emogeom.steering", "emogeom.behavior", "emogeom.cli")
    for path in (ROOT / "src" / "emogeom" / "report").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(banned), f"{path.name} imports {name}"
    code = ("import sys, emogeom.report; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'transformers') or m.startswith(('emogeom.models', 'emogeom.extraction', "
            "'emogeom.study'))]; print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _crowded() -> np.ndarray:
    """21 points: 15 inside a speck (a hundredth of the spread), 6 far out, 3 coincident."""
    rng = np.random.default_rng(3)
    coords = np.concatenate([rng.normal(scale=0.01, size=(15, 2)),
                             rng.uniform(-1, 1, size=(6, 2))])
    coords[1] = coords[2] = coords[0]
    return coords


def test_map_labels_do_not_overlap_on_a_crowded_layout():
    coords = _crowded()
    fig = figures.scatter_map(coords, list(EMOTIONS), "crowded")
    boxes = figures.label_boxes(fig)
    assert len(boxes) == len(EMOTIONS)
    assert figures.boxes_overlap(boxes) == []
    ax = fig.axes[0].get_window_extent().extents
    assert (boxes[:, :2] >= ax[:2] - 0.5).all() and (boxes[:, 2:] <= ax[2:] + 0.5).all()
    # The same labels at their points' offsets (no repulsion) collide: the test can fail.
    anchors = fig.axes[0].transData.transform(coords)
    naive = np.hstack([anchors + 4, anchors + 4 + boxes[:, 2:] - boxes[:, :2]])
    assert len(figures.boxes_overlap(naive)) > 20


def test_emotion_map_labels_do_not_overlap():
    vectors = np.zeros((len(EMOTIONS), 8))
    vectors[:, 0] = np.arange(len(EMOTIONS)) * 1e-3  # all on a line, packed at one end
    vectors[-1, 1] = 1.0
    vectors[-2, 2] = 1.0
    boxes = figures.label_boxes(figures.emotion_map(vectors, list(EMOTIONS), "packed"))
    assert figures.boxes_overlap(boxes) == []


def test_repel_labels_is_deterministic_and_separates_coincident_boxes():
    anchors = np.zeros((12, 2))
    sizes = np.tile([40.0, 10.0], (12, 1))
    first = figures.repel_labels(anchors, sizes, bounds=(-200, -200, 200, 200))
    second = figures.repel_labels(anchors, sizes, bounds=(-200, -200, 200, 200))
    assert np.array_equal(first, second)
    boxes = np.hstack([first - sizes / 2, first + sizes / 2])
    assert figures.boxes_overlap(boxes) == []
    start = np.hstack([anchors - sizes / 2, anchors + sizes / 2])
    assert len(figures.boxes_overlap(start)) == 12 * 11 // 2


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_emotion_map_names_the_valence_axis(axis):
    """Planted: human valence along one of three orthogonal directions of decreasing spread;
    the map shows PC1 and the valence PC, names it, and orients it so valence rises."""
    from emogeom.emotions import NEUTRAL, valence

    rng = np.random.default_rng(axis)
    emotions = list(EMOTIONS)
    feel = [e for e in emotions if e != NEUTRAL]
    import matplotlib.pyplot as plt

    spread = np.array([6.0, 3.0, 1.5])
    coords = rng.normal(size=(len(emotions), 3))
    v = np.array([valence(e) if e != NEUTRAL else 0.5 for e in emotions])
    coords[:, axis] = (v - v.mean()) / v.std()
    coords = (coords - coords.mean(axis=0)) / coords.std(axis=0) * spread
    basis = np.linalg.qr(rng.normal(size=(16, 3)))[0]
    fig = figures.emotion_map(coords @ basis.T, emotions, "planted")
    ax = fig.axes[0]
    shown = ax.get_ylabel() if axis else ax.get_xlabel()
    assert "valence axis" in shown and ("valence axis" not in ax.get_xlabel()) == bool(axis)
    x, y = ax.collections[0].get_offsets().T
    along = np.asarray(y if axis else x)[[emotions.index(e) for e in feel]]
    assert np.corrcoef(along, [valence(e) for e in feel])[0, 1] > 0.8  # shown, rising
    plt.close(fig)
