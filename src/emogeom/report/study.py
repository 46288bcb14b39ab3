"""The study report: one self-contained HTML page built from a study folder's artefacts only."""

from __future__ import annotations

from html import escape
from pathlib import Path

import numpy as np

from emogeom import artefacts as art
from emogeom.report import figures
from emogeom.report.html import _CSS, _img, _num, _png, _table


def _text(value: object) -> str | None:
    """A JSON number as the text ``_num`` formats (None stays None)."""
    return None if value is None else str(value)


def _group_matrix(labels: list[str], rows: list[dict[str, str]]) -> tuple[np.ndarray, ...]:
    """ρ, CI bounds and p as label × label matrices from ``models`` comparison rows."""
    index = {s: i for i, s in enumerate(labels)}
    n = len(labels)
    rho, lo, hi, p = np.eye(n), np.eye(n), np.eye(n), np.zeros((n, n))
    for r in rows:
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
                       f"{rho[i, j]:.3f} [{lo[i, j]:.3f}, {hi[i, j]:.3f}] p {p[i, j]:.2g}")
        cells.append(row)
    return _table(["ρ [CI] p", *labels], cells)


def build_study_report(out: str | Path) -> Path:
    """Render figures and ``report.html`` for a study folder (``study.json`` and the CSVs)."""
    out = Path(out)
    index = art.read_json(out / "study.json")
    spec = index["spec"]
    figdir = out / "figures"
    desc = art.read_csv(out / "descriptors.csv") if (out / "descriptors.csv").exists() else []
    comps = art.read_csv(out / "comparisons.csv") if (out / "comparisons.csv").exists() else []
    bi = art.read_csv(out / "base_instruct.csv") if (out / "base_instruct.csv").exists() else []
    done = {d["job"] for d in desc}
    missing = [j["folder"] for j in index["jobs"] if j["folder"] not in done]
    seed = int(spec.get("statistics", {}).get("seed", 0))

    desc_html = _table(
        ["model", "family", "variant", "precision", "preset", "arch", "layers",
         "best layer (depth)", "anisotropy", "RDM std", "reliability", "ρ human VA (p)",
         "steering regime (text / ppl)"],
        [[d["label"], d["family"] or "–", d["variant"] or "–", d["precision"], d["preset"],
          d["architecture"], d["n_layers"],
          f"{d['best_layer']} ({float(d['best_layer_depth']):.0%})", _num(d["anisotropy"]),
          _num(d["rdm_std"]), _num(d["reliability"]),
          f"{_num(d['rho_human'])} (p {_num(d['p_human'], '.3g')})",
          f"{d['steering_regime_reference']} / {d['steering_regime_perplexity']}"
          if d.get("steering_regime_reference") else "–"] for d in desc])

    group_html = []
    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for r in comps:
        if r["kind"] == "models":
            groups.setdefault((r["precision_a"], r["preset_a"]), []).append(r)
    for (precision, preset), rows in groups.items():
        labels = [d["label"] for d in desc
                  if d["precision"] == precision and d["preset"] == preset]
        rho, lo, hi, p = _group_matrix(labels, rows)
        tag = f"{precision}-{preset}"
        imgs = [_img(_png(figures.rho_matrix(labels, rho, p), figdir / f"rho_{tag}.png"),
                     f"rho matrix {tag}"),
                _img(_png(figures.model_map(labels, rho, f"model map ({precision}, {preset})",
                                            seed), figdir / f"model_map_{tag}.png"),
                     f"model map {tag}")]
        controls = _table(
            ["model A", "model B", "cross-text ρ [CI]", "ρ partial text baselines (p)",
             "ρ human VA A / B"],
            [[r["model_a"], r["model_b"],
              f"{_num(r['rho_cross_text'])} [{_num(r['ci_cross_text_low'])}, "
              f"{_num(r['ci_cross_text_high'])}]",
              f"{_num(r['rho_partial_text'])} ({_num(r['p_partial_text'], '.3g')})",
              f"{_num(r['rho_human_a'])} / {_num(r['rho_human_b'])}"] for r in rows])
        group_html.append(
            f"<h3>{escape(precision)}, preset {escape(preset)}</h3>"
            + _matrix_table(labels, rho, lo, hi, p)
            + f"<div class='figs'>{''.join(imgs)}</div>"
            + "<p class='note'>Model or texts? Cross-text ρ compares RDMs built from disjoint "
              "halves of the stories; partial ρ removes the text-only baselines' RDMs.</p>"
            + controls)

    bi_html = _table(
        ["family", "precision", "preset", "base (layer)", "instruct (layer)", "ρ [CI]",
         "p perm", "p Holm"],
        [[r["family"], r["precision"], r["preset"], f"{r['base']} ({r['layer_base']})",
          f"{r['instruct']} ({r['layer_instruct']})",
          f"{_num(r['rho'])} [{_num(r['ci_low'])}, {_num(r['ci_high'])}]",
          _num(r["p_perm"], ".3g"), _num(r["p_holm"], ".3g")] for r in bi]
    ) if bi else "<p class='note'>No family has both a base and an instruct model here.</p>"

    factor_rows = [r for r in comps if r["kind"] in ("precision", "preset")]
    factor_html = _table(
        ["model", "factor", "A", "B", "layers A/B", "ρ [CI]", "p perm"],
        [[r["model_a"], r["kind"], f"{r['precision_a']} {r['preset_a']}",
          f"{r['precision_b']} {r['preset_b']}", f"{r['layer_a']}/{r['layer_b']}",
          f"{_num(r['rho'])} [{_num(r['ci_low'])}, {_num(r['ci_high'])}]",
          _num(r["p_perm"], ".3g")] for r in factor_rows]
    ) if factor_rows else "<p class='note'>One precision and one preset: no factor rows.</p>"

    behaviour_html = ""
    if (out / "behaviour_link.json").exists():
        parts = []
        for link in art.read_json(out / "behaviour_link.json"):
            facets = link.get("facets_by_model", {})
            parts.append(
                f"<h3>{escape(link['precision'])}, preset {escape(link['preset'])}</h3>"
                + _table(["model", "formal compliance", "stance hold (1 − flip rate)"],
                         [[m, _num(_text(f.get("formal_compliance"))),
                           _num(_text(f.get("stance_hold")))] for m, f in facets.items()])
                + f"<p>Mantel (behaviour distance vs 1 − ρ), {link['n_models']} models: "
                  f"r = {_num(_text(link.get('rho')))}, p = {_num(_text(link.get('p')), '.3g')}"
                  f", exact p = {_num(_text(link.get('p_exact')), '.3g')}</p>"
                + (f"<p class='note'>{escape(link['caveat'])}</p>" if link.get("caveat")
                   else ""))
        behaviour_html = "<h2>Behaviour and geometry</h2>" + "".join(parts)

    maps, notes = [], []
    for d in desc:
        folder = out / "jobs" / d["job"]
        note = art.read_json(folder / "manifest.json")["model"].get("note")
        if note and f"{d['label']}: {note}." not in notes:
            notes.append(f"{d['label']}: {note}.")
        tensors, meta = art.read_tensors(folder / "vectors.safetensors")
        best = int(d["best_layer"])
        rdm, emotions = art.read_rdm_csv(folder / "rdm.csv")
        name = f"{d['label']} ({d['precision']}, {d['preset']})"
        imgs = [_img(_png(figures.emotion_map(tensors["vectors"][best], emotions,
                                              f"{name}, layer {best}"),
                          figdir / f"{d['job']}_map.png"), f"{name} map"),
                _img(_png(figures.rdm_heatmap(rdm, emotions, f"{name} RDM, layer {best}"),
                          figdir / f"{d['job']}_rdm.png"), f"{name} RDM")]
        maps.append(f"<h3>{escape(name)}</h3><div class='figs'>{''.join(imgs)}</div>")

    missing_html = "" if not missing else (
        "<p class='note'>Jobs not finished (left out): "
        + escape(", ".join(missing)) + "</p>")
    title = f"emogeom study: {spec['name']}"
    html = f"""<!doctype html><html><head><meta charset="utf-8">
<title>{escape(title)}</title><style>{_CSS}</style></head><body>
<h1>{escape(title)}</h1>
<p>{escape(spec.get('description') or '')}</p>{missing_html}
<h2>Models</h2>{desc_html}
<p class="note">Best layer: index of the decoder block output and its depth (index / (layers −
1)), chosen by the preset's criterion (or the study's layer policy). Anisotropy: mean pairwise
cosine of neutral sentences' pooled states at the best layer. Reliability: split-half RDM
reliability (Spearman–Brown) at the best layer.</p>
<h2>Model × model RDM agreement</h2>{''.join(group_html) or
    "<p class='note'>Fewer than two models per precision and preset.</p>"}
<p class="note">Cells: {escape(spec.get('statistics', {}).get('method', 'spearman'))} ρ of the
best-layer RDMs, stimulus-bootstrap CI, Mantel permutation p. Model map: dendrogram (average
linkage) and metric MDS of 1 − ρ.</p>
<h2>Base ↔ instruct</h2>{bi_html}
<h2>Precision and preset</h2>{factor_html}
{behaviour_html}
<h2>Emotion maps</h2>{''.join(maps)}
<h2>Notes</h2><ul>{''.join(f"<li>{escape(n)}</li>" for n in notes)}
<li>{escape(index.get('norms', ''))}</li>
<li>Every number traces to a job folder under jobs/ (manifest.json: inputs, settings, hashes)
and to comparisons.csv.</li></ul>
</body></html>"""
    path = out / "report.html"
    art.atomic_write_bytes(path, html.encode())
    return path
