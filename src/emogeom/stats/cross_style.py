"""Cross-style generalisation: does a geometry read from one style of writing reappear in the
texts of the other styles?

For every style s the RDM of the texts in s is compared with the RDM of all texts in the other
styles (leave-one-style-out), and the correlations are averaged over the styles. Within one
model this asks whether its geometry belongs to the model or to a style; across two models
(A on style s against B on the other styles, and the reverse) it asks whether their agreement
survives a change of texts and style. A corpus without styles falls back to its two fixed
halves, which only changes the texts, not the style; ``split`` says which was used.

Each value comes with a label-permutation p (the same relabelling in every pair) and a noise
ceiling: the mean over styles of sqrt(rel(own) · rel(rest)), each reliability the
Spearman–Brown split-half ρ of that set of texts (alternate texts within every emotion and
style). ``normalised`` = mean ρ / mean ceiling over the styles that have a ceiling (a style
whose reliability is not positive has none).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from emogeom.geometry.layers import rowwise_spearman, spearman_brown
from emogeom.geometry.rdm import cosine_rdm, upper
from emogeom.stats.compare import _rank_cells, compare_vectors, permutations, upper_indices
from emogeom.stats.reliability import noise_ceiling

MIN_STYLES = 2


@dataclass(frozen=True)
class Groups:
    """Which texts form each group (a style, or a fixed half) and how the split was made."""

    index: np.ndarray  # [N] group of every text, -1 = not used
    names: list[str]
    split: str  # "style" | "halves"

    @property
    def note(self) -> str:
        if self.split == "style":
            return f"leave-one-style-out over {len(self.names)} styles ({', '.join(self.names)})"
        return ("the corpus has no styles: its two fixed halves stand in for them (a change "
                "of texts, not of style)")


def style_groups(styles: Sequence[str | None] | None, labels: Sequence[str],
                 emotions: Sequence[str], halves: tuple[np.ndarray, np.ndarray]) -> Groups:
    """Groups by style when at least two styles each hold every emotion twice or more (texts
    without a style or of other styles are left out); otherwise the two fixed halves."""
    labels = np.asarray(labels)
    n = len(labels)
    if styles is not None and len(styles) == n and any(styles):
        styles_arr = np.asarray([s or "" for s in styles])
        usable = [str(s) for s in dict.fromkeys(styles_arr) if s
                  if all(np.sum((styles_arr == s) & (labels == e)) >= 2 for e in emotions)]
        if len(usable) >= MIN_STYLES:
            index = np.full(n, -1)
            for g, s in enumerate(usable):
                index[styles_arr == s] = g
            return Groups(index, list(usable), "style")
    index = np.full(n, -1)
    for g, half in enumerate(halves):
        index[np.asarray(half, dtype=int)] = g
    return Groups(index, ["half 1", "half 2"], "halves")


def group_rdms(acts: np.ndarray, labels: Sequence[str], emotions: Sequence[str],
               groups: Groups) -> dict[str, np.ndarray]:
    """RDMs [G, ..., E, E] of every group (``own``) and of the other groups together
    (``rest``), and of each one's two alternate halves (``own_halves``, ``rest_halves``:
    [G, 2, ..., E, E]). ``acts`` [..., N, d]; built from per-cell sums, one matrix product."""
    labels = np.asarray(labels)
    n_groups, n_emotions = len(groups.names), len(emotions)
    cell = np.full(len(labels), -1)
    for e, emotion in enumerate(emotions):
        for g in range(n_groups):
            idx = np.flatnonzero((labels == emotion) & (groups.index == g))
            cell[idx] = (g * n_emotions + e) * 2 + np.arange(len(idx)) % 2
    onehot = (cell[None, :] == np.arange(n_groups * n_emotions * 2)[:, None]).astype(np.float64)
    sums = np.matmul(onehot, np.asarray(acts, dtype=np.float64))  # [..., C, d]
    lead = sums.shape[:-2]
    sums = sums.reshape(*lead, n_groups, n_emotions, 2, sums.shape[-1])
    counts = onehot.sum(axis=1).reshape(n_groups, n_emotions, 2)

    def rdm(select_groups: np.ndarray, halves: tuple[int, ...]) -> np.ndarray:
        s = sums[..., select_groups, :, :, :][..., list(halves), :].sum(axis=(-4, -2))
        c = counts[select_groups][..., list(halves)].sum(axis=(0, 2))
        with np.errstate(invalid="ignore", divide="ignore"):  # an empty half gives NaN
            means = s / c[:, None]
            return cosine_rdm(means - means.mean(axis=-2, keepdims=True))

    own, rest, own_h, rest_h = [], [], [], []
    for g in range(n_groups):
        mine, others = np.array([g]), np.array([k for k in range(n_groups) if k != g])
        own.append(rdm(mine, (0, 1)))
        rest.append(rdm(others, (0, 1)))
        own_h.append(np.stack([rdm(mine, (h,)) for h in (0, 1)]))
        rest_h.append(np.stack([rdm(others, (h,)) for h in (0, 1)]))
    return {"own": np.stack(own), "rest": np.stack(rest), "own_halves": np.stack(own_h),
            "rest_halves": np.stack(rest_h)}


def _reliability(halves: np.ndarray) -> np.ndarray:
    """Spearman–Brown split-half reliability of [..., 2, E, E] half RDMs → [...]."""
    return spearman_brown(rowwise_spearman(upper(halves[..., 0, :, :]),
                                           upper(halves[..., 1, :, :])))


def _mean(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Mean of the finite entries; NaN (without a warning) where there are none."""
    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, x, 0.0).sum(axis=axis) / ok.sum(axis=axis)


def _aligned(rhos: np.ndarray, ceilings: np.ndarray, axis: int = 0) -> np.ndarray:
    """Mean ρ over mean ceiling, both over the same groups: those with a finite ceiling and ρ
    (a group without a ceiling would otherwise count in ρ but not in the ceiling)."""
    ok = np.isfinite(rhos) & np.isfinite(ceilings)
    return _normalised(_mean(np.where(ok, rhos, np.nan), axis=axis),
                       _mean(np.where(ok, ceilings, np.nan), axis=axis))


def _normalised(rho, ceiling):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ceiling > 0, rho / ceiling, np.nan)


def cross_style_profile(acts: np.ndarray, labels: Sequence[str], emotions: Sequence[str],
                        groups: Groups, n_perm: int = 0, seed: int = 0
                        ) -> dict[str, np.ndarray]:
    """Within one model, per layer of acts [L, N, d]: ``rho`` (mean over groups of Spearman ρ
    between the group's RDM and the other groups' RDM), ``per_group`` [G, L], ``ceiling``,
    ``normalised`` (ρ / ceiling) and, with ``n_perm``, the permutation ``p`` of every layer
    (NaN without); ``own`` and ``rest`` are the RDMs [G, L, E, E]."""
    r = group_rdms(acts, labels, emotions, groups)
    per_group = rowwise_spearman(upper(r["own"]), upper(r["rest"]))  # [G, L]
    p = np.full(len(acts), np.nan)
    if n_perm:
        for layer in range(len(acts)):
            pairs = list(zip(r["own"][:, layer], r["rest"][:, layer]))
            p[layer] = mean_pairs_mantel(pairs, "spearman", n_perm, seed)[1]
    rel_own = _reliability(np.moveaxis(r["own_halves"], 1, -3))
    rel_rest = _reliability(np.moveaxis(r["rest_halves"], 1, -3))
    rho = _mean(per_group, axis=0)
    ceilings = noise_ceiling(rel_own, rel_rest)  # [G, L]
    ceiling = _mean(ceilings, axis=0)
    normalised = _aligned(per_group, ceilings, axis=0)
    return {"rho": rho, "per_group": per_group, "ceiling": ceiling, "normalised": normalised,
            "p": p, "own": r["own"], "rest": r["rest"]}


def mean_pairs_mantel(pairs: Sequence[tuple[np.ndarray, np.ndarray]], method: str = "spearman",
                      n_perm: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Mean similarity over (x, y) RDM pairs and its permutation p: every y's condition labels
    permuted the same way; p = (k + 1) / (n_perm + 1)."""
    if method == "spearman":
        pairs = [(_rank_cells(x), _rank_cells(y)) for x, y in pairs]
        method = "pearson"
    n = pairs[0][0].shape[0]
    i, j = upper_indices(n)
    perms = permutations(n, n_perm, seed)
    observed = np.mean([compare_vectors(x[i, j], y[i, j][None], method)[0] for x, y in pairs])
    null = np.mean([compare_vectors(x[i, j], y[perms[:, i], perms[:, j]], method)
                    for x, y in pairs], axis=0)
    return float(observed), (int(np.sum(null >= observed - 1e-12)) + 1) / (n_perm + 1)


def _pair_sims(pairs: Sequence[tuple[np.ndarray, np.ndarray]], method: str) -> np.ndarray:
    """Similarity of each (x, y) RDM pair by ``method`` (their mean is the observed value of
    ``mean_pairs_mantel``)."""
    i, j = upper_indices(pairs[0][0].shape[0])
    return np.array([compare_vectors(x[i, j], y[i, j][None], method)[0] for x, y in pairs])


def cross_style_within(acts: np.ndarray, labels: Sequence[str], emotions: Sequence[str],
                       groups: Groups, method: str = "spearman", n_perm: int = 10_000,
                       seed: int = 0) -> dict[str, float]:
    """One model at one layer (acts [N, d]): cross-style ρ, its permutation p, ceiling and
    normalised value."""
    r = group_rdms(acts, labels, emotions, groups)
    pairs = list(zip(r["own"], r["rest"]))
    rho, p = mean_pairs_mantel(pairs, method, n_perm, seed)
    ceilings = noise_ceiling(_reliability(r["own_halves"]), _reliability(r["rest_halves"]))
    return {"rho": rho, "p": p, "ceiling": float(_mean(ceilings)),
            "normalised": float(_aligned(_pair_sims(pairs, method), ceilings))}


def cross_style(acts_a: np.ndarray, acts_b: np.ndarray, labels: Sequence[str],
                emotions: Sequence[str], groups: Groups, method: str = "spearman",
                n_perm: int = 10_000, seed: int = 0) -> dict[str, float | str]:
    """Two models at one layer each (acts [N, d], same texts): model A on each style against B
    on the other styles and B on each style against A on the others, averaged; the
    permutation relabels B. Returns ``rho_cross_style``, ``p_cross_style``,
    ``ceiling_cross_style``, ``rho_cross_style_ceiled`` and ``cross_split``."""
    ra = group_rdms(acts_a, labels, emotions, groups)
    rb = group_rdms(acts_b, labels, emotions, groups)
    pairs = [*zip(ra["own"], rb["rest"]), *zip(ra["rest"], rb["own"])]
    rho, p = mean_pairs_mantel(pairs, method, n_perm, seed)
    rel = {f"{m}_{k}": _reliability(r[f"{k}_halves"]) for m, r in (("a", ra), ("b", rb))
           for k in ("own", "rest")}
    ceilings = np.concatenate([noise_ceiling(rel["a_own"], rel["b_rest"]),
                               noise_ceiling(rel["a_rest"], rel["b_own"])])
    return {"rho_cross_style": rho, "p_cross_style": p,
            "ceiling_cross_style": float(_mean(ceilings)),
            "rho_cross_style_ceiled": float(_aligned(_pair_sims(pairs, method), ceilings)),
            "cross_split": groups.split}


def cross_style_layers(style_rdms_a: np.ndarray, style_rdms_b: np.ndarray, layer_b: int
                       ) -> np.ndarray:
    """Cross-style ρ of model A at each of its layers against model B at ``layer_b``, from
    the stored style RDMs [2 (own, rest), G, L, E, E] of both: mean over styles of
    (ρ(A own, B rest) + ρ(A rest, B own)) / 2 (Spearman) → [L_a]."""
    a_own, a_rest = upper(style_rdms_a[0]), upper(style_rdms_a[1])  # [G, La, M]
    b_own = upper(style_rdms_b[0][:, layer_b])[:, None]  # [G, 1, M]
    b_rest = upper(style_rdms_b[1][:, layer_b])[:, None]
    both = (rowwise_spearman(a_own, b_rest) + rowwise_spearman(a_rest, b_own)) / 2
    return _mean(both, axis=0)
