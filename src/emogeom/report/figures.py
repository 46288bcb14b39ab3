"""Matplotlib figures of one study's artefacts (Agg backend, no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from emogeom.emotions import by_valence, valence  # noqa: E402
from emogeom.geometry import pca_coords  # noqa: E402


def rdm_heatmap(rdm: np.ndarray, emotions: list[str], title: str) -> Figure:
    """RDM heatmap with emotions ordered from positive to negative valence."""
    order = by_valence(emotions)
    idx = [emotions.index(e) for e in order]
    fig, ax = plt.subplots(figsize=(7.2, 6.2), constrained_layout=True)
    im = ax.imshow(rdm[np.ix_(idx, idx)], cmap="viridis")
    ax.set_xticks(range(len(order)), order, rotation=90, fontsize=8)
    ax.set_yticks(range(len(order)), order, fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8, label="1 − cosine")
    return fig


def emotion_map(vectors: np.ndarray, emotions: list[str], title: str) -> Figure:
    """2-D PCA map of emotion vectors, coloured by human valence."""
    coords, ratio = pca_coords(vectors, 2)
    fig, ax = plt.subplots(figsize=(6.4, 5.4), constrained_layout=True)
    vals = [valence(e) for e in emotions]
    sc = ax.scatter(coords[:, 0], coords[:, 1], c=vals, cmap="RdYlGn", vmin=0, vmax=1,
                    edgecolors="k", linewidths=0.4)
    for (x, y), e in zip(coords, emotions):
        ax.annotate(e, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"PC1 ({ratio[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({ratio[1]:.0%})")
    ax.set_title(title, fontsize=10)
    fig.colorbar(sc, ax=ax, shrink=0.8, label="human valence (NRC VAD)")
    return fig


def layer_profile(metrics: dict, title: str) -> Figure:
    """Split-half reliability and anisotropy by layer, best layer marked."""
    layers = np.arange(metrics["n_layers"])
    fig, ax = plt.subplots(figsize=(6.4, 3.6), constrained_layout=True)
    rel = np.array(metrics["reliability"], dtype=float)  # null (NaN) where undefined
    ax.plot(layers, rel, "o-", ms=3, label="RDM reliability (split-half, SB)")
    ax.plot(layers, metrics["anisotropy"], "s-", ms=3, label="anisotropy (neutral sentences)")
    ax.axvline(metrics["best_layer"], color="grey", ls="--", lw=1,
               label=f"best layer {metrics['best_layer']}")
    ax.set_xlabel("layer (decoder block output)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    low = np.nanmin(rel) if np.isfinite(rel).any() else 0.0
    ax.set_ylim(min(-0.1, low - 0.05), 1.05)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=10)
    return fig


def rho_matrix(slugs: list[str], rho: np.ndarray, p: np.ndarray) -> Figure:
    """Model × model Spearman ρ of best-layer RDMs, annotated with ρ and permutation p."""
    n = len(slugs)
    fig, ax = plt.subplots(figsize=(2.2 + 1.3 * n, 1.8 + 1.1 * n), constrained_layout=True)
    im = ax.imshow(rho, cmap="magma", vmin=-1, vmax=1)
    for i in range(n):
        for j in range(n):
            text = "1" if i == j else f"{rho[i, j]:.2f}\np={p[i, j]:.2g}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if rho[i, j] < 0.5 else "black")
    ax.set_xticks(range(n), slugs, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(n), slugs, fontsize=8)
    ax.set_title("RDM Spearman ρ (best layers)", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


REFERENCE_STYLES = {"human": "k-", "tfidf": "C1--", "surface": "C2:", "minilm": "C4-."}


def reference_profile(metrics: dict, title: str) -> Figure:
    """ρ of the model's RDM with each reference RDM (human ratings, text baselines) by layer,
    beside the within-model cross-half ρ."""
    layers = np.arange(metrics["n_layers"])
    fig, ax = plt.subplots(figsize=(6.4, 3.6), constrained_layout=True)
    ax.plot(layers, np.array(metrics["split_half_fixed"], dtype=float), "o-", ms=3,
            color="C0", label="own cross-half ρ (fixed halves)")
    for name, style in REFERENCE_STYLES.items():
        if f"rho_{name}" in metrics:
            ax.plot(layers, np.array(metrics[f"rho_{name}"], dtype=float), style,
                    label=f"ρ with {name}")
    ax.axvline(metrics["best_layer"], color="grey", ls="--", lw=1)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("layer (decoder block output)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("Spearman ρ")
    ax.legend(fontsize=7, loc="best")
    ax.set_title(title, fontsize=10)
    return fig


def text_profile(profile: dict) -> Figure:
    """Same-text vs cross-text ρ over model A's layers, model B at its chosen layer."""
    same = np.array(profile["same_text"], dtype=float)
    cross = np.array(profile["cross_text"], dtype=float)
    layers = np.arange(len(same))
    fig, ax = plt.subplots(figsize=(6.4, 3.6), constrained_layout=True)
    ax.plot(layers, same, "o-", ms=3, label="same texts")
    ax.plot(layers, cross, "s-", ms=3, label="disjoint halves (cross-text)")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel(f"layer of {profile['model_a']}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"ρ with {profile['model_b']} (layer {profile['layer_b']})")
    ax.legend(fontsize=7)
    ax.set_title(f"{profile['model_a']} vs {profile['model_b']}: same vs cross text",
                 fontsize=10)
    return fig


def model_map(labels: list[str], rho: np.ndarray, title: str, seed: int = 0) -> Figure:
    """Models by geometry: average-linkage dendrogram and 2-D MDS of 1 − ρ."""
    from scipy.cluster.hierarchy import dendrogram, linkage
    from scipy.spatial.distance import squareform

    from emogeom.geometry import mds_coords

    dist = np.clip(1.0 - (rho + rho.T) / 2, 0, None)
    np.fill_diagonal(dist, 0.0)
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 0.9 + 0.4 * max(len(labels), 6)),
                                      constrained_layout=True)
    dendrogram(linkage(squareform(dist, checks=False), "average"), labels=labels, ax=left,
               orientation="right", color_threshold=0, above_threshold_color="C0")
    left.set_xlabel("1 − ρ (average linkage)")
    left.tick_params(axis="y", labelsize=8)
    coords = mds_coords(dist, seed)
    right.scatter(coords[:, 0], coords[:, 1], s=25)
    for (x, y), name in zip(coords, labels):
        right.annotate(name, (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
    right.set_title("MDS of 1 − ρ", fontsize=9)
    right.set_aspect("equal", adjustable="datalim")
    fig.suptitle(title, fontsize=10)
    return fig
