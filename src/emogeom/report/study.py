"""The report: one self-contained ``report.html`` built from a study folder's artefacts only.

Reads ``study.json``, ``descriptors.csv``, ``comparisons.csv``, ``base_instruct.csv``,
``profiles.json`` and ``behaviour_link.json`` (where present), ``references/<preset>/`` and
each finished job's ``metrics.json``, ``manifest.json``, ``rdm.csv`` and
``vectors.safetensors``. Never runs a model: a study can be re-reported anywhere."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from emogeom import artefacts as art
from emogeom.emotions import NORMS_CITATION
from emogeom.report import figures
from emogeom.report.html import CSS, ci, figs, figure, fmt, note, num, table

REFERENCE_FILES = ("human", "tfidf", "surface", "minilm")
SECTIONS = {  # id → heading, in page order
    "models": "Models",
    "descriptors": "Descriptors at the chosen layer",
    "agreement": "Model × model RDM agreement",
    "texts": "Model or texts? Same- vs cross-text agreement",
    "layers": "Layer profiles",
    "references": "Reference and text-baseline profiles",
    "text-profiles": "Same- vs cross-text profiles",
    "base-instruct": "Base ↔ instruct",
    "factors": "Precision and preset",
    "behaviour": "Behaviour and geometry",
    "maps": "Emotion maps",
    "rdms": "RDMs",
    "notes": "Notes",
}


@dataclass
class Job:
    """One finished job as the report sees it: its descriptor row and artefacts."""
    row: dict[str, str]
    name: str          # how the page names it
    folder: Path
    metrics: dict[str, Any]
    model: dict[str, Any]

    @property
    def best(self) -> int:
        return int(self.metrics["best_layer"])


def _csv(path: Path) -> list[dict[str, str]]:
    return art.read_csv(path) if path.exists() else []


def _h2(key: str) -> str:
    return f"<h2 id='{key}'>{escape(SECTIONS[key])}</h2>"


def _load_jobs(out: Path, desc: list[dict[str, str]]) -> list[Job]:
    settings = {(d["precision"], d["preset"]) for d in desc}
    jobs = []
    for d in desc:
        folder = out / "jobs" / d["job"]
        name = d["label"] if len(settings) == 1 else \
            f"{d['label']} ({d['precision']}, {d['preset']})"
        jobs.append(Job(d, name, folder, art.read_json(folder / "metrics.json"),
                        art.read_json(folder / "manifest.json").get("model", {})))
    return jobs


def _models(jobs: list[Job]) -> str:
    rows = [[j.row["label"], j.row.get("family") or "–", j.row.get("variant") or "–",
             j.row["precision"], j.row["preset"],
             j.model.get("architecture") or j.row.get("architecture") or "?",
             j.model.get("dtype_loaded") or j.model.get("dtype") or "?",
             j.metrics["n_layers"], j.model.get("d_model", "?"),
             j.model.get("description") or j.model.get("model") or "–"] for j in jobs]
    return _h2("models") + table(
        ["model", "family", "variant", "precision", "preset", "arch", "dtype loaded", "layers",
         "d", "source"], rows)


def _descriptors(jobs: list[Job]) -> str:
    rows = []
    for j in jobs:
        m, d = j.metrics, j.row
        regime = (f"{d['steering_regime_reference']} / {d['steering_regime_perplexity']}"
                  if d.get("steering_regime_reference") else "–")
        pc = (f"{fmt(m.get('pc1_valence_abs_r'), '.2f')} (best: PC{m['best_pc_valence']} "
              f"{fmt(m.get('best_pc_valence_abs_r'), '.2f')})"
              if "best_pc_valence" in m else "–")
        rows.append([
            j.name, f"{j.best} ({float(m['best_layer_depth']):.0%}, "
                    f"{m.get('best_layer_criterion', '?')})",
            num(m.get("anisotropy_at_best", d.get("anisotropy"))),
            num(m.get("rdm_std_at_best", d.get("rdm_std"))),
            num(m.get("reliability_at_best", d.get("reliability"))),
            (f"{num(m.get('cross_style_at_best'))} ({num(m.get('cross_style_normalised_at_best'))})"
             f"{' halves' if m.get('cross_style_split') == 'halves' else ''}; layers: "
             f"reliability {m.get('best_layer_reliability', '–')}, general "
             f"{m.get('best_layer_general', '–')}") if "cross_style_at_best" in m else "–",
            f"{num(d.get('rho_human'))} (p {num(d.get('p_human'), '.3g')})", pc,
            f"{num(m.get('valence_within'))} / {num(m.get('valence_between'))}", regime])
    return _h2("descriptors") + table(
        ["model", "chosen layer (depth, rule)", "anisotropy", "RDM std", "reliability",
         "cross-style ρ (÷ ceiling); layer by rule", "ρ human VA (p)", "|r| PC~valence",
         "dist within / between valence",
         "steering regime (text / ppl)"], rows) + note(
        "Chosen layer: index of the decoder block output (0-based) and its depth "
        "(index / (layers − 1)), by the preset's rule or the study's layer policy. "
        "Anisotropy: mean pairwise cosine of neutral sentences' pooled states. Reliability: "
        "split-half RDM reliability (Spearman–Brown). Cross-style ρ: the model's RDM from "
        "each style of writing against its RDM from the other styles, averaged (÷ its noise "
        "ceiling); the layers each rule picks: 'reliability' (most reliable RDM) and "
        "'general' (highest cross-style ρ). ρ human VA: the model's RDM against "
        "the RDM of human valence–arousal ratings, Mantel p. |r| PC~valence: correlation of "
        "the principal components of the chosen-layer emotion vectors (neutral left out) "
        "with human valence. Distances within / between: mean 1 − cos within the positive "
        "and negative valence groups and between them.")


def _group_matrix(labels: list[str], rows: list[dict[str, str]]) -> tuple[np.ndarray, ...]:
    """ρ, CI bounds and p as label × label matrices from ``models`` comparison rows."""
    index = {s: i for i, s in enumerate(labels)}
    n = len(labels)
    rho, lo, hi, p = np.eye(n), np.full((n, n), np.nan), np.full((n, n), np.nan), \
        np.zeros((n, n))
    for r in rows:
        if r["model_a"] not in index or r["model_b"] not in index:
            continue
        i, j = index[r["model_a"]], index[r["model_b"]]
        for mat, key in ((rho, "rho"), (lo, "ci_low"), (hi, "ci_high"), (p, "p_perm")):
            value = float(r[key]) if r.get(key) else np.nan
            mat[i, j] = mat[j, i] = value
    return rho, lo, hi, p


def _matrix_table(labels: list[str], rho, lo, hi, p) -> str:
    cells = []
    for i, a in enumerate(labels):
        row: list[object] = [a]
        for j in range(len(labels)):
            row.append("1" if i == j else
                       f"{fmt(rho[i, j])} [{fmt(lo[i, j])}, {fmt(hi[i, j])}] "
                       f"p {fmt(p[i, j], '.2g')}")
        cells.append(row)
    return table(["ρ [CI] p", *labels], cells)


def _groups(comps: list[dict[str, str]]) -> dict[tuple[str, str], list[dict[str, str]]]:
    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for r in comps:
        if r.get("kind", "models") == "models":
            groups.setdefault((r.get("precision_a", ""), r.get("preset_a", "")), []).append(r)
    return groups


def _group_title(precision: str, preset: str) -> str:
    return f"<h3>{escape(precision)}, preset {escape(preset)}</h3>"


def _agreement(jobs: list[Job], groups, figdir: Path, seed: int, method: str) -> str:
    parts = []
    for (precision, preset), rows in groups.items():
        labels = [j.row["label"] for j in jobs
                  if j.row["precision"] == precision and j.row["preset"] == preset]
        labels += sorted({r[k] for r in rows for k in ("model_a", "model_b")} - set(labels))
        rho, lo, hi, p = _group_matrix(labels, rows)
        tag = f"{precision}-{preset}"
        imgs = [figure(figures.rho_matrix(labels, rho, p, f"RDM {method} ρ ({precision}, "
                                          f"{preset})"), figdir, f"rho_{tag}",
                       f"rho matrix {tag}"),
                figure(figures.model_map(labels, rho, f"model map ({precision}, {preset})",
                                         seed), figdir, f"model_map_{tag}",
                       f"model map {tag}")]
        pairs = table(
            ["model A (layer)", "model B (layer)", "ρ [CI]", "p perm", "p Holm", "ceiling",
             "ρ / ceiling", "CKA", "Procrustes", "max over layers at A/B (p)"],
            [[f"{r['model_a']} ({r.get('layer_a') or '–'})",
              f"{r['model_b']} ({r.get('layer_b') or '–'})",
              ci(r, "rho", "ci_low", "ci_high"), num(r.get("p_perm"), ".3g"),
              num(r.get("p_holm"), ".3g"), num(r.get("ceiling")), num(r.get("rho_ceiled")),
              num(r.get("cka")), num(r.get("procrustes")),
              f"{num(r.get('rho_max_layers'))} at {r.get('layer_a_max') or '–'}/"
              f"{r.get('layer_b_max') or '–'} ({num(r.get('p_max_layers'), '.3g')})"]
             for r in rows])
        parts.append(_group_title(precision, preset) + _matrix_table(labels, rho, lo, hi, p)
                     + figs(imgs) + pairs)
    if not parts:
        return _h2("agreement") + note("Fewer than two models per precision and preset: no "
                                       "model comparison.")
    return _h2("agreement") + "".join(parts) + note(
        f"ρ: {method} correlation of the RDMs at each model's chosen layer. CI: stimulus "
        "bootstrap (stories resampled within each emotion, the same draws for both models). "
        "p perm: Mantel test, emotion labels permuted; p Holm: corrected over all pairs of the "
        "group. Ceiling: sqrt(reliability A · reliability B). Max over layers: the highest ρ "
        "over all layer pairs, with a max-statistic permutation p that pays for the search. "
        "Model map: dendrogram (average linkage) and metric MDS of 1 − ρ.")


def _texts(groups) -> str:
    parts = []
    for (precision, preset), rows in groups.items():
        if not any(r.get("rho_cross_text") for r in rows):
            continue
        table_rows, sentences = [], []
        for r in rows:
            table_rows.append([
                f"{r['model_a']} vs {r['model_b']}",
                f"{ci(r, 'rho', 'ci_low', 'ci_high')} p {num(r.get('p_perm'), '.3g')}",
                f"{num(r.get('rho_cross_style'))} ({num(r.get('rho_cross_style_ceiled'))}) "
                f"p {num(r.get('p_cross_style'), '.3g')}"
                + (" (halves)" if r.get("cross_split") == "halves" else ""),
                f"{ci(r, 'rho_cross_text', 'ci_cross_text_low', 'ci_cross_text_high')} "
                f"p {num(r.get('p_cross_text'), '.3g')}",
                f"{num(r.get('rho_within_a'))} / {num(r.get('rho_within_b'))}",
                f"{num(r.get('rho_partial_text'))} (p {num(r.get('p_partial_text'), '.3g')})",
                " · ".join(f"{n} {num(r.get(f'rho_partial_{n}'))}"
                           for n in ("tfidf", "surface", "minilm")
                           if r.get(f"rho_partial_{n}")) or "–",
                f"{num(r.get('rho_human_a'))} / {num(r.get('rho_human_b'))}"])
            if r.get("rho") and r.get("rho_cross_text"):
                same, cross = float(r["rho"]), float(r["rho_cross_text"])
                share = (f", i.e. {cross / same:.0%} of the same-text agreement survives a "
                         "change of texts." if same > 0 else ".")
                sentences.append(
                    f"{r['model_a']} vs {r['model_b']}: same texts ρ = {same:.3f}; with each "
                    f"model reading different stories ρ = {cross:.3f}{share}")
            if r.get("rho_cross_style") and r.get("cross_split") == "style":
                sentences.append(
                    f"{r['model_a']} vs {r['model_b']}: each model on one style of writing "
                    f"against the other on the other styles ρ = "
                    f"{float(r['rho_cross_style']):.3f}, {num(r.get('rho_cross_style_ceiled'))}"
                    " of its noise ceiling.")
        parts.append(
            _group_title(precision, preset) + table(
                ["pair", "same texts ρ [CI] p", "other styles ρ (÷ ceiling) p",
                 "different texts ρ [CI] p",
                 "own cross-half A / B", "partial ρ | all text baselines (p)",
                 "partial ρ | each baseline", "ρ human VA A / B"], table_rows)
            + "<ul>" + "".join(f"<li>{escape(t)}</li>" for t in sentences) + "</ul>")
    if not parts:
        return ""
    return _h2("texts") + "".join(parts) + note(
        "Other styles: for every style of writing, model A's RDM from the texts in that style "
        "against model B's from the texts in all other styles, and the reverse, averaged over "
        "styles (leave-one-style-out); in brackets divided by its noise ceiling (the mean of "
        "sqrt(reliability · reliability) of the sets compared, each Spearman–Brown split-half); "
        "p from permuting B's emotion labels. A corpus without styles uses its fixed halves "
        "instead (marked 'halves'), which changes the texts but not the style. "
        "Different texts: model A's RDM from one fixed half of every emotion's stories against "
        "model B's from the other half, both ways, averaged. Own cross-half: each model "
        "against itself across the two halves. Partial ρ: Spearman on the upper triangles "
        "after regressing the text-baseline RDMs (TF-IDF, surface statistics, MiniLM sentence "
        "embeddings) out of both; p from permuting emotion labels. Intervals are "
        "stimulus-bootstrap percentiles: resampling stories adds noise, so they lean below "
        "the point estimate, more so for the half-corpus numbers.")


def _layer_profiles(jobs: list[Job], figdir: Path) -> str:
    imgs = [figure(figures.layer_profile(j.metrics, f"{j.name}: layer profile"), figdir,
                   f"{j.row['job']}_layers", f"{j.name} layer profile") for j in jobs]
    return _h2("layers") + figs(imgs) + note(
        "Top: split-half RDM reliability (Spearman–Brown), cross-style ρ (the RDM from each "
        "style of writing against the RDM from the other styles, averaged; the fixed halves "
        "when the corpus has no styles) and anisotropy (mean pairwise cosine "
        "of neutral sentences' pooled states) at every layer. Bottom: RDM spread, the standard "
        "deviation of the 1 − cos entries. Dashed line: the chosen layer.")


def _reference_profiles(jobs: list[Job], figdir: Path) -> str:
    imgs = [figure(figures.reference_profile(j.metrics, f"{j.name}: references by layer"),
                   figdir, f"{j.row['job']}_references", f"{j.name} reference profile")
            for j in jobs if figures.has_reference_profile(j.metrics)]
    if not imgs:
        return _h2("references") + note("No reference profiles in these jobs' metrics.")
    return _h2("references") + figs(imgs) + note(
        "Spearman ρ between the model's RDM at each layer and the reference RDMs: human "
        "valence–arousal ratings, and text-only baselines computed from the stories themselves "
        "(TF-IDF, surface statistics, MiniLM sentence embeddings; a baseline whose package is "
        "missing is skipped). High ρ with a text baseline means the geometry could come from "
        "the texts alone. Own cross-half ρ: the model's RDM from one half of the stories "
        "against its RDM from the other half.")


def _text_profiles(out: Path, figdir: Path) -> str:
    path = out / "profiles.json"
    if not path.exists():
        return ""
    profiles = art.read_json(path) or []
    imgs = [figure(figures.text_profile(prof), figdir, f"text_profile_{k}",
                   f"{prof['model_a']} vs {prof['model_b']} same vs cross text profile")
            for k, prof in enumerate(profiles)]
    if not imgs:
        return ""
    return _h2("text-profiles") + figs(imgs) + note(
        "ρ between model A's RDM at each of its layers and model B's at its chosen layer: "
        "both from the same stories, from disjoint halves of the stories (cross-text), and, "
        "when the corpus has styles, each model on one style against the other on the other "
        "styles (averaged over styles and both ways). "
        "A gap between the two lines is agreement that comes from sharing the texts.")


def _base_instruct(bi: list[dict[str, str]]) -> str:
    if not bi:
        return _h2("base-instruct") + note(
            "No family has both a base and an instruct model here.")
    return _h2("base-instruct") + table(
        ["family", "precision", "preset", "base (layer)", "instruct (layer)", "ρ [CI]",
         "p perm", "p Holm"],
        [[r["family"], r["precision"], r["preset"], f"{r['base']} ({r['layer_base']})",
          f"{r['instruct']} ({r['layer_instruct']})", ci(r, "rho", "ci_low", "ci_high"),
          num(r.get("p_perm"), ".3g"), num(r.get("p_holm"), ".3g")] for r in bi])


def _factors(comps: list[dict[str, str]]) -> str:
    rows = [r for r in comps if r.get("kind") in ("precision", "preset")]
    if not rows:
        return _h2("factors") + note("One precision and one preset: no factor rows.")
    return _h2("factors") + table(
        ["model", "factor", "A", "B", "layers A/B", "ρ [CI]", "p perm", "p Holm"],
        [[r["model_a"], r["kind"], f"{r['precision_a']} {r['preset_a']}",
          f"{r['precision_b']} {r['preset_b']}", f"{r['layer_a']}/{r['layer_b']}",
          ci(r, "rho", "ci_low", "ci_high"), num(r.get("p_perm"), ".3g"),
          num(r.get("p_holm"), ".3g")] for r in rows]) + note(
        "The same model under two precisions, or under two presets. Presets that read "
        "different stories get ρ and the Mantel p only (no stimulus bootstrap is possible).")


def _behaviour(out: Path) -> str:
    path = out / "behaviour_link.json"
    if not path.exists():
        return _h2("behaviour") + note("Behaviour was not measured in this study "
                                       "(behaviour: true in the study file).")
    parts = []
    for link in art.read_json(path):
        facets = link.get("facets_by_model", {})
        dropped = link.get("dropped") or {}
        parts.append(
            _group_title(str(link.get("precision", "?")), str(link.get("preset", "?")))
            + table(["model", "formal compliance", "stance hold (1 − flip rate)"],
                    [[m, num(f.get("formal_compliance")), num(f.get("stance_hold"))]
                     for m, f in facets.items()])
            + f"<p>Mantel (behaviour distance vs 1 − ρ), {escape(str(link.get('n_models')))} "
              f"models: r = {escape(num(link.get('rho')))}, p = "
              f"{escape(num(link.get('p'), '.3g'))}, exact p = "
              f"{escape(num(link.get('p_exact'), '.3g'))}</p>"
            + (note("Left out: " + "; ".join(f"{m}: {why}" for m, why in dropped.items()))
               if isinstance(dropped, dict) and dropped else "")
            + (note(str(link["caveat"])) if link.get("caveat") else ""))
    return _h2("behaviour") + "".join(parts)


def _maps(jobs: list[Job], figdir: Path) -> str:
    imgs = []
    for j in jobs:
        tensors, _ = art.read_tensors(j.folder / "vectors.safetensors")
        _, emotions = art.read_rdm_csv(j.folder / "rdm.csv")
        imgs.append(figure(figures.emotion_map(tensors["vectors"][j.best], emotions,
                                               f"{j.name}, layer {j.best}"),
                           figdir, f"{j.row['job']}_map", f"{j.name} emotion map"))
    return _h2("maps") + figs(imgs) + note(
        "PCA of the emotion vectors at the chosen layer (fitted on the 20 emotions, neutral "
        "projected onto the same axes), coloured by human valence. The axes are PC1 and the "
        "component that correlates best with human valence (marked 'valence axis'; PC2 when "
        "that is PC1), oriented so that valence rises along them. Labels are moved apart so "
        "that none overlaps another; a thin line joins a moved label to its point.")


def _rdms(out: Path, jobs: list[Job], figdir: Path) -> str:
    imgs = []
    for j in jobs:
        rdm, emotions = art.read_rdm_csv(j.folder / "rdm.csv")
        imgs.append(figure(figures.rdm_heatmap(rdm, emotions, f"{j.name}: RDM, layer {j.best}"),
                           figdir, f"{j.row['job']}_rdm", f"{j.name} RDM"))
    refs = []
    for folder in sorted(p for p in (out / "references").glob("*") if p.is_dir()):
        for name in REFERENCE_FILES:
            path = folder / f"{name}_rdm.csv"
            if path.exists():
                rdm, emotions = art.read_rdm_csv(path)
                title = f"reference: {figures.REFERENCE_NAMES[name]} ({folder.name})"
                refs.append(figure(figures.rdm_heatmap(rdm, emotions, title), figdir,
                                   f"reference_{folder.name}_{name}", title))
    html = _h2("rdms") + figs(imgs)
    if refs:
        html += "<h3>Reference RDMs</h3>" + figs(refs)
    return html + note("1 − cosine between emotion vectors, emotions ordered from positive to "
                       "negative valence.")


def _notes(index: dict[str, Any], jobs: list[Job]) -> str:
    notes = []
    for j in jobs:
        text = j.model.get("note")
        if text and f"{j.row['label']}: {text}." not in notes:
            notes.append(f"{j.row['label']}: {text}.")
    skipped = index.get("references_skipped") or {}
    for key, value in (skipped.items() if isinstance(skipped, dict) else []):
        # {baseline: reason}, or per preset {preset: {baseline: reason}}
        for name, why in (value.items() if isinstance(value, dict) else [(key, value)]):
            where = f" (preset {key})" if isinstance(value, dict) else ""
            notes.append(f"Text baseline {name} skipped{where}: {why}")
    notes.append(index.get("norms") or NORMS_CITATION)
    layer_defs = {j.metrics.get("layer_definition") for j in jobs} - {None}
    notes += [f"Layer i: {d}." for d in sorted(layer_defs)]
    notes.append("Every number traces to a job folder under jobs/ (manifest.json: inputs, "
                 "settings, hashes) and to the CSV files beside this report; figures are "
                 "under figures/ as PNG and PDF.")
    return _h2("notes") + "<ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>"


def build_study_report(out: str | Path) -> Path:
    """Render figures (``figures/*.png`` and ``.pdf``) and ``report.html`` for a study folder
    from its artefacts on disk; returns the report's path."""
    out = Path(out)
    index = art.read_json(out / "study.json")
    spec = index.get("spec", {})
    statistics = spec.get("statistics") or {}
    figdir = out / "figures"
    desc = _csv(out / "descriptors.csv")
    comps = _csv(out / "comparisons.csv")
    done = {d["job"] for d in desc}
    missing = [j["folder"] for j in index.get("jobs", []) if j["folder"] not in done]
    jobs = _load_jobs(out, desc)
    groups = _groups(comps)

    body = [
        _models(jobs), _descriptors(jobs),
        _agreement(jobs, groups, figdir, int(statistics.get("seed", 0)),
                   str(statistics.get("method", "spearman"))),
        _texts(groups), _layer_profiles(jobs, figdir), _reference_profiles(jobs, figdir),
        _text_profiles(out, figdir), _base_instruct(_csv(out / "base_instruct.csv")),
        _factors(comps), _behaviour(out), _maps(jobs, figdir), _rdms(out, jobs, figdir),
        _notes(index, jobs)]
    present = [k for k in SECTIONS if f"<h2 id='{k}'>" in "".join(body)]
    nav = "<nav>" + "".join(f"<div><a href='#{k}'>{escape(SECTIONS[k])}</a></div>"
                            for k in present) + "</nav>"
    missing_html = note("Jobs not finished (left out): " + ", ".join(missing)) \
        if missing else ""
    title = f"emogeom study: {spec.get('name', out.name)}"
    html = f"""<!doctype html><html><head><meta charset="utf-8">
<title>{escape(title)}</title><style>{CSS}</style></head><body>
<h1>{escape(title)}</h1>
<p>{escape(spec.get('description') or '')}</p>{missing_html}
{nav}
{''.join(body)}
</body></html>"""
    path = out / "report.html"
    art.atomic_write_bytes(path, html.encode())
    return path
