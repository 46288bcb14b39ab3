"""Behaviour ↔ geometry link across models (torch-free): a Mantel test between the models'
behaviour-distance matrix and their geometry dissimilarity (1 − RDM ρ).

Behaviour distance between two models is the Euclidean distance between their facet vectors
(formal_compliance, stance_hold), each in [0, 1], so distances lie in [0, √2]. Models whose
facets are undefined (every formal scenario excluded, or no question answered correctly at
baseline) cannot be placed and are dropped, with the reason recorded.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

import numpy as np

from emogeom.errors import EmogeomError
from emogeom.stats import mantel
from emogeom.stats.compare import compare_vectors, upper_indices

FACETS = ("formal_compliance", "stance_hold")
SMALL_N_MODELS = 8  # below this the caveat is printed (fewer than 28 model pairs)
MAX_EXACT_N = 8  # enumerate all n! relabellings for an exact p up to 8 models (40,320)


def facet_vector(profile: Mapping) -> np.ndarray:
    """The facet scores of one profile (a full behaviour profile or a bare {facet: score}),
    in FACETS order; raises EmogeomError naming a missing or undefined facet."""
    facets = profile.get("facets", profile)
    values = []
    for f in FACETS:
        v = facets.get(f)
        if v is None or not np.isfinite(v):
            raise EmogeomError(f"facet '{f}' is undefined; re-run `emogeom behave` with more "
                               "tokens or drop this model from the link")
        if not 0 <= v <= 1:
            raise EmogeomError(f"facet '{f}' = {v} is outside [0, 1]; pass facet scores")
        values.append(float(v))
    return np.array(values)


def behaviour_distances(vectors: Mapping[str, np.ndarray]) -> np.ndarray:
    """[n, n] Euclidean distances between models' facet vectors (zero diagonal)."""
    x = np.stack([np.asarray(v, dtype=np.float64) for v in vectors.values()])
    return np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))


def geometry_dissimilarity(models: list[str], rho: Mapping[tuple[str, str], float]) -> np.ndarray:
    """[n, n] matrix 1 − ρ from pairwise RDM correlations keyed (a, b) in either order."""
    n = len(models)
    out = np.zeros((n, n))
    for i, j in zip(*upper_indices(n)):
        a, b = models[i], models[j]
        given = [rho[k] for k in ((a, b), (b, a)) if k in rho]
        if not given:
            raise EmogeomError(f"no geometry ρ for the pair ({a}, {b}); give rho[(a, b)] for "
                               "every pair of profiled models")
        if len(given) == 2 and not math.isclose(given[0], given[1], abs_tol=1e-9):
            raise EmogeomError(f"ρ for ({a}, {b}) and ({b}, {a}) differ: {given[0]} vs "
                               f"{given[1]}; give one value per pair")
        r = float(given[0])
        if not np.isfinite(r) or not -1 - 1e-9 <= r <= 1 + 1e-9:
            raise EmogeomError(f"ρ for ({a}, {b}) = {r} is not a correlation in [−1, 1]")
        out[i, j] = out[j, i] = 1.0 - r
    return out


def exact_mantel_p(a: np.ndarray, b: np.ndarray, method: str = "spearman") -> float:
    """One-sided p over all n! relabellings of b (the identity included): the exact
    counterpart of the sampled Mantel p, feasible for small n."""
    n = a.shape[0]
    i, j = upper_indices(n)
    perms = np.array(list(itertools.permutations(range(n))))
    x = a[i, j]
    observed = compare_vectors(x, b[i, j][None, :], method)[0]
    null = compare_vectors(x, b[perms[:, i], perms[:, j]], method)
    return float(np.mean(null >= observed - 1e-12))


def small_n_caveat(n: int) -> str | None:
    """The caveat for a link over few models (None when n is large enough)."""
    if n < 3:
        return (f"only {n} model(s) with defined facets: a Mantel test needs at least 3 "
                "(3 model pairs); no test was run")
    if n >= SMALL_N_MODELS:
        return None
    perms = math.factorial(n)
    return (f"only {n} models ({n * (n - 1) // 2} model pairs): there are just {n}! = {perms} "
            f"label permutations, so the smallest achievable p is 1/{perms} = {1 / perms:.3g}; "
            "the correlation rests on very few pairs and cannot establish a link")


def link_behaviour_geometry(
    profiles: Mapping[str, Mapping], rho: Mapping[tuple[str, str], float],
    method: str = "spearman", n_perm: int = 10_000, seed: int = 0,
) -> dict:
    """Mantel test between behaviour distance (Euclidean over FACETS) and geometry
    dissimilarity (1 − RDM ρ) across the profiled models.

    Returns rho (Mantel correlation by ``method``), p (sampled, from emogeom.stats.mantel),
    p_exact (all n! relabellings, for n ≤ 8), min_p (1/n!), n_models, the two matrices, the
    dropped models with reasons, and caveat (a string for small n, else None)."""
    vectors, dropped = {}, {}
    for name, prof in profiles.items():
        try:
            vectors[name] = facet_vector(prof)
        except EmogeomError as exc:
            dropped[name] = str(exc).split(";")[0]
    models = list(vectors)
    n = len(models)
    result: dict = {"models": models, "n_models": n, "facets": list(FACETS),
                    "distance": "euclidean", "method": method, "n_perm": n_perm, "seed": seed,
                    "dropped": dropped, "rho": None, "p": None, "p_exact": None,
                    "min_p": 1 / math.factorial(n) if n >= 3 else None,
                    "caveat": small_n_caveat(n)}
    if n < 3:
        return result
    behaviour = behaviour_distances(vectors)
    geometry = geometry_dissimilarity(models, rho)
    result.update(behaviour_distance=behaviour.tolist(), geometry_dissimilarity=geometry.tolist())
    r, p = mantel(behaviour, geometry, method=method, n_perm=n_perm, seed=seed)
    result.update(rho=r, p=p)
    if n <= MAX_EXACT_N:
        result["p_exact"] = exact_mantel_p(behaviour, geometry, method)
    return result

