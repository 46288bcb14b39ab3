"""RDM-to-RDM comparison on upper triangles, and the label-permutation (Mantel) test.

Methods: ``spearman`` (default), ``pearson``, ``kendall`` (τ-a, no tie correction, as in RSA
practice) and ``cosine`` (uncentred). Every method is computed for many permutations at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

METHODS = ("spearman", "pearson", "kendall", "cosine")


class RDMError(ValueError):
    """RDMs that cannot be compared (shape, labels, non-finite entries)."""


def check_rdm_pair(
    a: np.ndarray, b: np.ndarray,
    labels_a: Sequence[str] | None = None, labels_b: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Both RDMs as float64, after checking they are square, equal in size, finite and (if
    labels are given) over the same conditions in the same order."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    for name, m in (("first", a), ("second", b)):
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise RDMError(f"the {name} RDM is not square: shape {m.shape}")
        if not np.isfinite(m).all():
            raise RDMError(f"the {name} RDM has NaN or inf entries; rebuild it from finite vectors")
    if a.shape != b.shape:
        raise RDMError(f"RDMs differ in size: {a.shape[0]} vs {b.shape[0]} conditions")
    if a.shape[0] < 3:
        raise RDMError("RDMs need at least 3 conditions to be compared")
    if labels_a is not None and labels_b is not None and list(labels_a) != list(labels_b):
        raise RDMError("RDMs are over different conditions (labels differ); reorder one of them")
    return a, b


def upper_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n, k=1)


def _prepare(x: np.ndarray, method: str) -> np.ndarray:
    """Transform a [..., M] vector of cells so that a comparison becomes a dot product
    (spearman: centred unit ranks; pearson: centred unit values; cosine: unit values;
    kendall: kept as is)."""
    if method == "spearman":
        x = rankdata(x, axis=-1)
    if method in ("spearman", "pearson"):
        x = x - x.mean(axis=-1, keepdims=True)
    if method == "kendall":
        return x
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def _kendall_tau_a(x: np.ndarray, ys: np.ndarray, chunk: int = 256) -> np.ndarray:
    """τ-a of x [M] with each row of ys [P, M]: (concordant − discordant) / (M(M−1)/2)."""
    m = x.shape[0]
    i, j = np.triu_indices(m, k=1)
    sx = np.sign(x[i] - x[j])
    out = np.empty(ys.shape[0])
    for start in range(0, ys.shape[0], chunk):
        block = ys[start:start + chunk]
        out[start:start + chunk] = np.sign(block[:, i] - block[:, j]) @ sx
    return out / len(i)


def compare_vectors(x: np.ndarray, ys: np.ndarray, method: str = "spearman") -> np.ndarray:
    """Similarity of one upper-triangle vector x [M] with each row of ys [P, M].

    A constant vector (all cells tied) has no defined correlation: it scores 0, never NaN.
    """
    if method not in METHODS:
        raise RDMError(f"unknown RDM comparison method '{method}' (use: {', '.join(METHODS)})")
    ys = np.atleast_2d(ys)
    if method == "kendall":
        return _kendall_tau_a(x, ys)
    return _prepare(ys, method) @ _prepare(x, method)


def rdm_correlation(
    a: np.ndarray, b: np.ndarray, method: str = "spearman",
    labels_a: Sequence[str] | None = None, labels_b: Sequence[str] | None = None,
) -> float:
    """Similarity of the upper triangles of two RDMs by ``method``."""
    a, b = check_rdm_pair(a, b, labels_a, labels_b)
    i, j = upper_indices(a.shape[0])
    return float(compare_vectors(a[i, j], b[i, j][None, :], method)[0])


def permutations(n: int, n_perm: int, seed: int) -> np.ndarray:
    """[n_perm, n] seeded random permutations of n condition labels."""
    rng = np.random.default_rng(seed)
    return np.argsort(rng.random((n_perm, n)), axis=1)


def _rank_cells(rdm: np.ndarray) -> np.ndarray:
    """The RDM with its off-diagonal cells replaced by their ranks (symmetric). Relabelling
    permutes cells without changing their values, so ranks taken once stay valid for every
    permutation: Spearman then reduces to Pearson on these ranks."""
    i, j = upper_indices(rdm.shape[-1])
    out = np.zeros_like(rdm)
    out[..., i, j] = rankdata(rdm[..., i, j], axis=-1)
    return out + np.swapaxes(out, -1, -2)


def mantel(
    a: np.ndarray, b: np.ndarray, method: str = "spearman", n_perm: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Observed similarity and one-sided permutation p-value: b's condition labels are permuted
    jointly on rows and columns; p = (k + 1) / (n_perm + 1), k = #null ≥ observed."""
    a, b = check_rdm_pair(a, b)
    if method == "spearman":
        a, b, method = _rank_cells(a), _rank_cells(b), "pearson"
    i, j = upper_indices(a.shape[0])
    x = a[i, j]
    observed = compare_vectors(x, b[i, j][None, :], method)[0]
    perms = permutations(a.shape[0], n_perm, seed)
    null = compare_vectors(x, b[perms[:, i], perms[:, j]], method)
    k = int(np.sum(null >= observed - 1e-12))
    return float(observed), (k + 1) / (n_perm + 1)


def layer_max_test(
    rdms_a: np.ndarray, rdms_b: np.ndarray, method: str = "spearman", n_perm: int = 1000,
    seed: int = 0,
) -> dict[str, float | int]:
    """ρ maximised over all layer pairs, with a max-statistic permutation null.

    ``rdms_a`` [La, E, E] and ``rdms_b`` [Lb, E, E]; each permutation relabels b's conditions
    (the same way at every layer) and records the maximum over all pairs, so the p-value
    accounts for having searched the layers.
    """
    rdms_a = np.asarray(rdms_a, dtype=np.float64)
    rdms_b = np.asarray(rdms_b, dtype=np.float64)
    check_rdm_pair(rdms_a[0], rdms_b[0])
    if not (np.isfinite(rdms_a).all() and np.isfinite(rdms_b).all()):
        raise RDMError("layer RDMs have NaN or inf entries")
    if method == "kendall":
        raise RDMError("layer_max_test supports spearman, pearson and cosine")
    if method == "spearman":
        rdms_a, rdms_b, method = _rank_cells(rdms_a), _rank_cells(rdms_b), "pearson"
    n = rdms_a.shape[1]
    i, j = upper_indices(n)
    za = _prepare(rdms_a[:, i, j], method)  # [La, M]
    sim = za @ _prepare(rdms_b[:, i, j], method).T  # [La, Lb]
    la, lb = np.unravel_index(int(np.argmax(sim)), sim.shape)
    observed = float(sim[la, lb])
    perms = permutations(n, n_perm, seed)
    k = 0
    for start in range(0, n_perm, 100):
        p = perms[start:start + 100]
        zb = _prepare(rdms_b[:, p[:, i], p[:, j]], method)  # [Lb, P, M]
        null = np.einsum("am,bpm->pab", za, zb).reshape(len(p), -1).max(axis=1)
        k += int(np.sum(null >= observed - 1e-12))
    return {"rho_max": observed, "layer_a": int(la), "layer_b": int(lb),
            "p_max": (k + 1) / (n_perm + 1)}
