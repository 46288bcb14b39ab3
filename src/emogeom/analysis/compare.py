"""Two geometries → a ``Comparison``: ρ with Mantel p and stimulus-bootstrap CI, noise
ceiling, CKA, Procrustes, the layer search, and the text controls (cross-text ρ, partial ρ
given the text baselines, ρ with human ratings). NumPy only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emogeom import geometry
from emogeom.analysis.geometry import Geometry
from emogeom.config import Statistics
from emogeom.errors import EmogeomError
from emogeom.stats import (
    benjamini_hochberg,
    bootstrap_rho,
    ceiled,
    cross_style,
    cross_style_layers,
    cross_text,
    holm,
    layer_max_test,
    linear_cka,
    mantel,
    noise_ceiling,
    partial_mantel,
    procrustes_similarity,
    style_groups,
)

COLUMNS = [
    "model_a", "model_b", "layer_a", "layer_b", "method", "rho", "ci_low", "ci_high", "p_perm",
    "p_holm", "p_bh", "ceiling", "rho_ceiled", "cka", "procrustes", "rho_max_layers",
    "layer_a_max", "layer_b_max", "p_max_layers",
    "rho_cross_style", "p_cross_style", "ceiling_cross_style", "rho_cross_style_ceiled",
    "cross_split",
    "rho_cross_text", "ci_cross_text_low", "ci_cross_text_high", "p_cross_text",
    "rho_within_a", "ci_within_a_low", "ci_within_a_high", "p_within_a",
    "rho_within_b", "ci_within_b_low", "ci_within_b_high", "p_within_b",
    "rho_partial_text", "p_partial_text", "rho_partial_tfidf", "p_partial_tfidf",
    "rho_partial_surface", "p_partial_surface", "rho_partial_minilm", "p_partial_minilm",
    "rho_human_a", "p_human_a", "rho_human_b", "p_human_b",
]


@dataclass
class Comparison:
    """Two geometries compared at their best layers; ``values`` holds every column of
    ``comparisons.csv``, ``same_text``/``cross_text``/``cross_style`` the ρ profiles over a's
    layers (b at its best layer; ``cross_style`` None without styles)."""

    model_a: str
    model_b: str
    values: dict[str, Any]
    same_text: np.ndarray | None = None
    cross_text: np.ndarray | None = None
    cross_style: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(name)

    @property
    def rho(self) -> float:
        return self.values["rho"]

    @property
    def ceiling(self) -> float | None:
        return self.values.get("ceiling")

    @property
    def rho_cross_text(self) -> float | None:
        return self.values.get("rho_cross_text")

    @property
    def rho_partial_text(self) -> float | None:
        return self.values.get("rho_partial_text")

    @property
    def ci(self) -> tuple[float | None, float | None]:
        return self.values.get("ci_low"), self.values.get("ci_high")

    @property
    def p(self) -> float:
        return self.values["p_perm"]

    def row(self) -> dict[str, Any]:
        """The comparison as one row of ``comparisons.csv`` (plain Python values)."""
        return {c: self.values.get(c) for c in COLUMNS}

    def __repr__(self) -> str:
        v = self.values
        lo, hi = self.ci
        ci = f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""
        return (f"Comparison({self.model_a} L{v['layer_a']} vs {self.model_b} L{v['layer_b']}: "
                f"{v['method']} ρ = {v['rho']:.3f}{ci}, p = {v['p_perm']:.3g})")


def same_stimuli(a: Geometry, b: Geometry) -> bool:
    """Whether two geometries were read from the same stories in the same order."""
    return a.corpus_sha256 == b.corpus_sha256 and a.stimulus_ids == b.stimulus_ids \
        and a.emotions == b.emotions


def compare(a: Geometry, b: Geometry, stats: Statistics | None = None) -> Comparison:
    """Compare two geometries at their best layers. On the same stories: everything (ρ,
    bootstrap CI, ceiling, CKA, Procrustes, layer search, text controls). On different
    stories: ρ and Mantel p only (no story can be resampled in both), with a note."""
    stats = stats or Statistics()
    if a.emotions != b.emotions:
        raise EmogeomError(f"{a.name} and {b.name} hold different emotions "
                           f"({len(a.emotions)} vs {len(b.emotions)}); compare geometries of "
                           "the same emotion set")
    rho, p = mantel(a.rdm(), b.rdm(), stats.method, stats.permutations, stats.seed)
    values: dict[str, Any] = {
        "model_a": a.name, "model_b": b.name, "layer_a": a.best_layer, "layer_b": b.best_layer,
        "method": stats.method, "rho": rho, "p_perm": p, "p_holm": p, "p_bh": p}
    if not same_stimuli(a, b):
        return Comparison(a.name, b.name, values, notes=[
            "different stories: only ρ and its Mantel p (no stimulus bootstrap or text controls)"])
    boot = bootstrap_rho(a.acts, b.acts, a.labels, a.emotions, stats.method, stats.bootstrap,
                         stats.seed, stats.ci_level)
    rel_a, rel_b = a.metrics["reliability_at_best"], b.metrics["reliability_at_best"]
    values.update({
        "ci_low": boot["ci_low"], "ci_high": boot["ci_high"],
        "ceiling": noise_ceiling(rel_a, rel_b), "rho_ceiled": ceiled(rho, rel_a, rel_b),
        "cka": linear_cka(a.vectors[a.best_layer].astype(np.float64),
                          b.vectors[b.best_layer].astype(np.float64)),
        "procrustes": procrustes_similarity(a.vectors[a.best_layer].astype(np.float64),
                                            b.vectors[b.best_layer].astype(np.float64))})
    same, cross = _text_controls(a, b, stats, values)
    styles = (cross_style_layers(a.style_rdms, b.style_rdms, b.best_layer)
              if a.style_rdms is not None and b.style_rdms is not None
              and a.style_rdms.shape[1] == b.style_rdms.shape[1] else None)
    if stats.method != "kendall":
        search = layer_max_test(a.rdms, b.rdms, stats.method, stats.permutations, stats.seed)
        values.update({"rho_max_layers": search["rho_max"], "layer_a_max": search["layer_a"],
                       "layer_b_max": search["layer_b"], "p_max_layers": search["p_max"]})
    return Comparison(a.name, b.name, values, same, cross, styles)


def _text_controls(a: Geometry, b: Geometry, stats: Statistics,
                   values: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Is the agreement the models' or the texts'? Cross-style ρ (A on one style against B on
    the others; the fixed halves when the corpus has no styles), cross-text ρ over the fixed
    halves, ρ
    partialling out each text baseline and all of them, each model's ρ with human ratings;
    returns the same- and cross-text profiles over a's layers."""
    # Cross-text and partial ρ are defined for Spearman and Pearson; other methods use Spearman.
    method = stats.method if stats.method == "pearson" else "spearman"
    values.update(cross_text(a.acts, b.acts, a.labels, a.emotions, a.halves, method,
                             stats.permutations, stats.bootstrap, stats.seed, stats.ci_level))
    groups = style_groups(a.styles, a.labels, a.emotions, a.halves)
    values.update(cross_style(a.acts, b.acts, a.labels, a.emotions, groups, method,
                              stats.permutations, stats.seed))
    text = {k: v for k, v in a.references.items() if k != "human"}
    if text:
        values["rho_partial_text"], values["p_partial_text"] = partial_mantel(
            a.rdm(), b.rdm(), list(text.values()), method, stats.permutations, stats.seed)
        for name, ref in text.items():
            values[f"rho_partial_{name}"], values[f"p_partial_{name}"] = partial_mantel(
                a.rdm(), b.rdm(), [ref], method, stats.permutations, stats.seed)
    for side, g in (("a", a), ("b", b)):
        values[f"rho_human_{side}"] = g.metrics.get("rho_human_at_best")
        values[f"p_human_{side}"] = g.metrics.get("p_human_at_best")
    lb = b.best_layer
    ua, ub = geometry.upper(a.rdms), geometry.upper(b.rdms[lb])[None]
    h_a, h_b = geometry.upper(a.half_rdms), geometry.upper(b.half_rdms[:, lb])
    same = geometry.rowwise_spearman(ua, ub)
    cross = (geometry.rowwise_spearman(h_a[0], h_b[1][None])
             + geometry.rowwise_spearman(h_a[1], h_b[0][None])) / 2
    return same, cross


def compare_all(geometries: Sequence[Geometry], stats: Statistics | None = None
                ) -> list[Comparison]:
    """Every pair, with Holm and Benjamini–Hochberg corrected p over the pairs."""
    pairs = [compare(a, b, stats) for i, a in enumerate(geometries)
             for b in geometries[i + 1:]]
    correct(pairs)
    return pairs


def correct(comparisons: Sequence[Comparison]) -> None:
    """Set ``p_holm`` and ``p_bh`` over a family of comparisons (in place)."""
    if not comparisons:
        return
    p = np.array([c.values["p_perm"] for c in comparisons])
    for c, ph, pb in zip(comparisons, holm(p), benjamini_hochberg(p)):
        c.values["p_holm"], c.values["p_bh"] = float(ph), float(pb)
