"""Self-contained ``report.html``: figures embedded as PNG data, every text escaped."""

from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from emogeom import artefacts as art
from emogeom.emotions import NORMS_CITATION
from emogeom.report import figures

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
.figs{display:flex;flex-wrap:wrap;gap:12px} .figs img{max-width:520px;border:1px solid #eee}
.note{color:#555;font-size:13px}
"""


def _png(fig, path: Path) -> str:
    """Save a figure as PNG under figures/ and return it base64-encoded for embedding."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    data = buf.getvalue()
    art.atomic_write_bytes(path, data)
    return base64.b64encode(data).decode()


def _f(x: float | None, spec: str = ".3f") -> str:
    """A number for a table; an en dash where it is missing (null in JSON)."""
    return "–" if x is None else format(x, spec)


def _num(text: str | None, spec: str = ".3f") -> str:
    """A CSV cell as a formatted number; an en dash where it is empty."""
    return _f(float(text) if text else None, spec)


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{b64}">'


def _table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _text_section(out: Path, rows: list[dict[str, str]], figdir: Path) -> str:
    """Same-text and cross-text agreement side by side, partial ρ given text baselines, and
    the plain statement of how much agreement survives a change of texts."""
    if not rows or not rows[0].get("rho_cross_text"):
        return ""
    table_rows, sentences = [], []
    for r in rows:
        same, cross = float(r["rho"]), float(r["rho_cross_text"])
        table_rows.append([
            f"{r['model_a']} vs {r['model_b']}",
            f"{_num(r['rho'])} [{_num(r['ci_low'])}, {_num(r['ci_high'])}] "
            f"p {_num(r['p_perm'], '.3g')}",
            f"{_num(r['rho_cross_text'])} [{_num(r['ci_cross_text_low'])}, "
            f"{_num(r['ci_cross_text_high'])}] p {_num(r['p_cross_text'], '.3g')}",
            f"{_num(r['rho_within_a'])} / {_num(r['rho_within_b'])}",
            f"{_num(r.get('rho_partial_text'))} (p {_num(r.get('p_partial_text'), '.3g')})",
            " · ".join(f"{n} {_num(r.get(f'rho_partial_{n}'))}"
                       for n in ("tfidf", "surface", "minilm") if r.get(f"rho_partial_{n}")),
        ])
        share = cross / same if same > 0 else float("nan")
        sentences.append(
            f"{r['model_a']} vs {r['model_b']}: same texts ρ = {same:.3f}; with each model "
            f"reading different stories ρ = {cross:.3f}"
            + (f", i.e. {share:.0%} of the same-text agreement survives a change of texts."
               if share == share else "."))
    html = "<h3>Model or texts?</h3>" + _table(
        ["pair", "same texts ρ [CI] p", "different texts ρ [CI] p", "own cross-half A / B",
         "partial ρ | all text baselines (p)", "partial ρ | each baseline"], table_rows)
    html += "<ul>" + "".join(f"<li>{escape(t)}</li>" for t in sentences) + "</ul>"
    html += ("<p class='note'>Different texts: model A's RDM from one fixed half of every "
             "emotion's stories against model B's from the other half, both ways, averaged. "
             "Partial ρ: Spearman on the upper triangles after regressing the text-baseline RDMs "
             "(TF-IDF, surface statistics, MiniLM sentence embeddings) out of both; p from "
             "permuting emotion labels. Intervals are stimulus-bootstrap percentiles: "
             "resampling stories adds noise, so they lean below the point estimate, more so "
             "for the half-corpus (different texts) numbers.</p>")
    profiles_path = out / "profiles.json"
    if profiles_path.exists():
        for k, prof in enumerate(art.read_json(profiles_path)):
            html += _img(_png(figures.text_profile(prof), figdir / f"text_profile_{k}.png"),
                         "same vs cross text profile")
    return html


def _regime(metrics: dict) -> str:
    """Steering regimes by the reference text rule and the perplexity rule, if measured."""
    if "steering_regime_reference" not in metrics:
        return "–"
    return (f"{metrics['steering_regime_reference']} / "
            f"{metrics['steering_regime_perplexity']}")


def discover(out: Path) -> list[str]:
    """Model folders (those with a metrics.json) under a study output folder."""
    return sorted(p.parent.name for p in out.glob("*/metrics.json"))


def build_report(out: str | Path, slugs: list[str] | None = None) -> Path:
    """Render figures and ``report.html`` for the models in ``out`` from their artefacts."""
    out = Path(out)
    slugs = slugs if slugs is not None else discover(out)
    figdir = out / "figures"
    desc_rows, sections, notes = [], [], []
    for slug in slugs:
        folder = out / slug
        metrics = art.read_json(folder / "metrics.json")
        manifest = art.read_json(folder / "manifest.json")
        rdm, emotions = art.read_rdm_csv(folder / "rdm.csv")
        tensors, _ = art.read_tensors(folder / "vectors.safetensors")
        best, n = metrics["best_layer"], metrics["n_layers"]
        model = manifest["model"]
        desc_rows.append([
            slug, model.get("architecture", "?"), model.get("dtype", "?"), n,
            f"{best} ({metrics['best_layer_depth']:.0%})", _f(metrics["anisotropy_at_best"]),
            _f(metrics["rdm_std_at_best"]), _f(metrics["reliability_at_best"]),
            f"{_f(metrics['pc1_valence_abs_r'], '.2f')} (best: PC{metrics['best_pc_valence']} "
            f"{_f(metrics['best_pc_valence_abs_r'], '.2f')})",
            f"{_f(metrics['valence_within'])} / {_f(metrics['valence_between'])}",
            f"{_f(metrics.get('rho_human_at_best'))} "
            f"(p {_f(metrics.get('p_human_at_best'), '.3g')})",
            _regime(metrics),
        ])
        if model.get("note"):
            notes.append(f"{slug}: {model['note']}.")
        imgs = [
            _img(_png(figures.rdm_heatmap(rdm, emotions, f"{slug} — RDM at layer {best}"),
                      figdir / f"{slug}_rdm.png"), f"{slug} RDM"),
            _img(_png(figures.emotion_map(tensors["vectors"][best], emotions,
                                          f"{slug} — emotion vectors, layer {best}"),
                      figdir / f"{slug}_map.png"), f"{slug} PCA map"),
            _img(_png(figures.layer_profile(metrics, f"{slug} — layer profile"),
                      figdir / f"{slug}_layers.png"), f"{slug} layer profile"),
        ]
        if "rho_human" in metrics:
            imgs.append(_img(_png(figures.reference_profile(
                metrics, f"{slug} — references by layer"),
                figdir / f"{slug}_references.png"), f"{slug} reference profile"))
        sections.append(f"<h3>{escape(slug)}</h3><div class='figs'>{''.join(imgs)}</div>")
    comp_html = "<p class='note'>Only one model: no comparison.</p>"
    text_html = ""
    comp_path = out / "comparisons.csv"
    if comp_path.exists() and len(slugs) > 1:
        rows = art.read_csv(comp_path)
        index = {s: i for i, s in enumerate(slugs)}
        rho, p = np.eye(len(slugs)), np.zeros((len(slugs), len(slugs)))
        for r in rows:
            if r["model_a"] in index and r["model_b"] in index:
                i, j = index[r["model_a"]], index[r["model_b"]]
                rho[i, j] = rho[j, i] = float(r["rho"])
                p[i, j] = p[j, i] = float(r["p_perm"])
        comp_html = _table(
            ["model A (layer)", "model B (layer)", "ρ [CI]", "p perm", "p Holm", "ceiling",
             "ρ / ceiling", "CKA", "Procrustes", "max over layers (p)"],
            [[f"{r['model_a']} ({r['layer_a']})", f"{r['model_b']} ({r['layer_b']})",
              f"{_num(r['rho'])} [{_num(r['ci_low'])}, {_num(r['ci_high'])}]",
              _num(r["p_perm"], ".3g"), _num(r["p_holm"], ".3g"), _num(r["ceiling"]),
              _num(r["rho_ceiled"]), _num(r["cka"]), _num(r["procrustes"]),
              f"{_num(r['rho_max_layers'])} at {r['layer_a_max'] or '–'}/"
              f"{r['layer_b_max'] or '–'} ({_num(r['p_max_layers'], '.3g')})"]
             for r in rows],
        ) + _img(_png(figures.rho_matrix(slugs, rho, p), figdir / "rho_matrix.png"), "rho")
        text_html = _text_section(out, rows, figdir)
    html = f"""<!doctype html><html><head><meta charset="utf-8">
<title>emogeom report</title><style>{_CSS}</style></head><body>
<h1>emogeom report</h1>
<h2>Models</h2>
{_table(["model", "arch", "dtype", "layers", "best layer (depth)", "anisotropy", "RDM std",
         "reliability", "|r| PC~valence", "dist within / between valence",
         "ρ with human VA (p)", "steering regime (text / ppl)"], desc_rows)}
<p class="note">Best layer: highest split-half RDM reliability (Spearman–Brown) unless the
manifest says otherwise. Anisotropy: mean pairwise cosine of neutral sentences' pooled states.
Layer i is the output of decoder block i (0-based). |r| PC~valence: correlation of the
principal components of the best-layer emotion vectors (neutral left out) with human valence;
emotions in figures run from positive to negative valence.</p>
<h2>Model × model RDM agreement</h2>{comp_html}
<p class="note">ρ: RDM similarity at each model's best layer (method in comparisons.csv);
CI: stimulus bootstrap (stories resampled within each emotion, the same draws for both models);
p perm: Mantel test, emotion labels permuted; p Holm: corrected over all pairs; ceiling:
sqrt(reliability A · reliability B); max over layers: the highest ρ over all layer pairs, with a
max-statistic permutation p that pays for the search.</p>{text_html}
<h2>Figures</h2>{''.join(sections)}
<h2>Notes</h2><ul>{''.join(f'<li>{escape(n)}</li>' for n in notes + [NORMS_CITATION])}</ul>
</body></html>"""
    path = out / "report.html"
    art.atomic_write_bytes(path, html.encode())
    return path
