"""Matplotlib figures of one study's artefacts (Agg backend, no display needed).

Map labels are placed by ``repel_labels``: a small deterministic repulsion of label boxes in
display units, so that no two labels overlap however crowded the points are."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from emogeom.emotions import NEUTRAL, VAD, by_valence, valence  # noqa: E402
from emogeom.geometry import pca_coords  # noqa: E402
from emogeom.geometry.maps import pca_fit_coords  # noqa: E402

LABEL_GID = "map-label"  # gid of every repelled label (tests find them by it)
LAYER_AXIS = "layer (decoder block output, 0-based)"


def plain(text: object) -> str:
    """User text as matplotlib shows it literally ("$" would start mathtext)."""
    return str(text).replace("$", r"\$")


# ----------------------------------------------------------------------------------------
# Label repulsion


# Directions tried around a point, in order of preference (right, up-right, up, ...).
_DIRECTIONS = np.array([[1, 0], [1, 1], [0, 1], [1, -1], [0, -1], [-1, 1], [-1, 0], [-1, -1],
                        [2, 1], [2, -1], [-2, 1], [-2, -1], [1, 2], [-1, 2], [1, -2],
                        [-1, -2]], dtype=float)


def repel_labels(anchors: np.ndarray, sizes: np.ndarray,
                 bounds: tuple[float, float, float, float] | None = None,
                 obstacles: np.ndarray | None = None, offset: float = 4.0,
                 pad: float | tuple[float, float] = 2.0, max_iter: int = 2000) -> np.ndarray:
    """Centres [n, 2] for label boxes of ``sizes`` [n, 2] (width, height) beside their
    ``anchors`` [n, 2] so that no two boxes (grown by ``pad``, one value or (x, y)) overlap
    and no box covers a fixed ``obstacle`` [m, 4] (x0, y0, x1, y1: the markers), all inside
    ``bounds`` (x0, y0, x1, y1) where they fit. One unit throughout, usually display pixels.

    Deterministic, in two steps. Placement: labels in crowded places first, each takes the
    first free spot on rings of growing distance around its point (right of it, then
    up-right, up, ...). Repulsion, for whatever still overlaps (only when the boxes cannot
    all fit): every overlapping pair is pushed apart, half each, along the axis where it
    overlaps least, until no pair overlaps or ``max_iter`` rounds have passed."""
    anchors = np.asarray(anchors, dtype=float).reshape(-1, 2)
    half = np.asarray(sizes, dtype=float).reshape(-1, 2) / 2 + np.broadcast_to(
        np.asarray(pad, dtype=float), (2,)) / 2
    obstacles = (np.zeros((0, 4)) if obstacles is None
                 else np.asarray(obstacles, dtype=float).reshape(-1, 4))
    centres = _place(anchors, half, obstacles, bounds, offset)
    return _repel(centres, half, obstacles, bounds, max_iter)


def _free(centre: np.ndarray, h: np.ndarray, boxes: np.ndarray,
          bounds: tuple[float, float, float, float] | None) -> np.ndarray:
    """Which candidate centres [k, 2] (half size ``h``) fit in bounds and miss ``boxes``."""
    ok = np.ones(len(centre), dtype=bool)
    if bounds is not None:
        ok &= ((centre - h >= np.array(bounds[:2]) - 1e-9).all(axis=1)
               & (centre + h <= np.array(bounds[2:]) + 1e-9).all(axis=1))
    if len(boxes):
        lo, hi = centre - h, centre + h
        miss = ((lo[:, None, 0] >= boxes[None, :, 2]) | (hi[:, None, 0] <= boxes[None, :, 0])
                | (lo[:, None, 1] >= boxes[None, :, 3]) | (hi[:, None, 1] <= boxes[None, :, 1]))
        ok &= miss.all(axis=1)
    return ok


def _place(anchors: np.ndarray, half: np.ndarray, obstacles: np.ndarray,
           bounds: tuple[float, float, float, float] | None, offset: float) -> np.ndarray:
    n = len(anchors)
    centres = anchors + half * _DIRECTIONS[0] + offset * _DIRECTIONS[0]
    if n == 0:
        return centres
    # Crowding: how many other points lie within a label's size of this one.
    reach = 2 * half.max(axis=0)
    near = (np.abs(anchors[:, None, :] - anchors[None, :, :]) < reach).all(axis=2).sum(axis=1)
    order = sorted(range(n), key=lambda i: (-near[i], i))
    step = max(float(2 * half[:, 1].max()), 1.0)
    span = (max(bounds[2] - bounds[0], bounds[3] - bounds[1]) if bounds is not None
            else 40 * step)
    unit = _DIRECTIONS / np.abs(_DIRECTIONS).max(axis=1, keepdims=True)
    placed = [obstacles]
    for i in order:
        h = half[i]
        for ring in range(int(span / step) + 2):
            gap = offset + ring * step
            # A box whose edge is ``gap`` from the point in each direction.
            candidates = anchors[i] + unit * (h + gap)
            ok = _free(candidates, h, np.concatenate(placed), bounds)
            if ok.any():
                centres[i] = candidates[int(np.argmax(ok))]
                break
        placed.append(np.concatenate([centres[i] - h, centres[i] + h])[None])
    return centres


def _repel(centres: np.ndarray, half: np.ndarray, obstacles: np.ndarray,
           bounds: tuple[float, float, float, float] | None, max_iter: int) -> np.ndarray:
    n = len(centres)
    o_centre = (obstacles[:, :2] + obstacles[:, 2:]) / 2
    o_half = np.abs(obstacles[:, 2:] - obstacles[:, :2]) / 2
    # Antisymmetric tie-break for coincident boxes: the later index goes up/right.
    tie = np.sign(np.arange(n)[None, :] - np.arange(n)[:, None]).astype(float)
    for _ in range(max_iter):
        centres = _clamp(centres, half, bounds)
        d = centres[None, :, :] - centres[:, None, :]          # d[i, j] = c_j - c_i
        over = half[:, None, :] + half[None, :, :] - np.abs(d)  # overlap per axis
        hit = (over[..., 0] > 0) & (over[..., 1] > 0)
        np.fill_diagonal(hit, False)
        od = centres[:, None, :] - o_centre[None, :, :]         # label minus obstacle
        o_over = half[:, None, :] + o_half[None, :, :] - np.abs(od)
        o_hit = (o_over[..., 0] > 0) & (o_over[..., 1] > 0)
        if not hit.any() and not o_hit.any():
            break
        move = np.zeros_like(centres)
        sign = np.where(d != 0, np.sign(d), tie[..., None])
        along_x = over[..., 0] < over[..., 1]
        # Each of a pair moves half the overlap (plus a hair, so that rounds end).
        push = np.where(hit, (np.minimum(over[..., 0], over[..., 1]) + 1e-6) / 2, 0.0)
        move[:, 0] -= (push * along_x * sign[..., 0]).sum(axis=1)
        move[:, 1] -= (push * ~along_x * sign[..., 1]).sum(axis=1)
        o_sign = np.where(od != 0, np.sign(od), 1.0)
        o_x = o_over[..., 0] < o_over[..., 1]
        o_push = np.where(o_hit, np.minimum(o_over[..., 0], o_over[..., 1]) + 1e-6, 0.0)
        move[:, 0] += (o_push * o_x * o_sign[..., 0]).sum(axis=1)
        move[:, 1] += (o_push * ~o_x * o_sign[..., 1]).sum(axis=1)
        centres = centres + move
    return _clamp(centres, half, bounds)


def _clamp(centres: np.ndarray, half: np.ndarray,
           bounds: tuple[float, float, float, float] | None) -> np.ndarray:
    """Centres moved inside ``bounds`` (where a box is wider than the bounds: centred)."""
    if bounds is None:
        return centres
    x0, y0, x1, y1 = bounds
    lo = np.array([x0, y0]) + half
    hi = np.array([x1, y1]) - half
    return np.where(lo <= hi, np.clip(centres, lo, np.maximum(lo, hi)), (lo + hi) / 2)


def boxes_overlap(boxes: np.ndarray) -> list[tuple[int, int]]:
    """Index pairs of boxes [n, 4] (x0, y0, x1, y1) whose interiors intersect."""
    b = np.asarray(boxes, dtype=float)
    ix = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
    iy = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])
    i, j = np.nonzero(np.triu((ix > 0) & (iy > 0), k=1))
    return list(zip(i.tolist(), j.tolist()))


def label_boxes(fig: Figure) -> np.ndarray:
    """Display-unit boxes [n, 4] of a drawn figure's repelled labels."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [t for ax in fig.axes for t in ax.texts if t.get_gid() == LABEL_GID]
    return np.array([t.get_window_extent(renderer).extents for t in texts]).reshape(-1, 4)


def place_labels(ax: Axes, coords: np.ndarray, names: list[str], fontsize: float = 7.0,
                 marker_px: float = 6.0) -> list[Text]:
    """Label points of ``ax`` so that no two labels overlap and none covers a marker.

    Freezes the figure's layout first (the labels are placed in pixels of the final axes)
    and draws a thin leader line where a label had to move away from its point."""
    fig = ax.figure
    fig.canvas.draw()  # run the layout engine once, then keep the axes where they are
    fig.set_layout_engine("none")
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    renderer = fig.canvas.get_renderer()
    coords = np.asarray(coords, dtype=float)
    texts = [ax.text(x, y, plain(n), fontsize=fontsize, ha="center", va="center",
                     gid=LABEL_GID, zorder=4) for (x, y), n in zip(coords, names)]
    sizes = np.array([t.get_window_extent(renderer).size for t in texts]).reshape(-1, 2)
    anchors = ax.transData.transform(coords).reshape(-1, 2)
    r = marker_px / 2
    obstacles = np.hstack([anchors - r, anchors + r])
    bounds = tuple(ax.get_window_extent(renderer).extents)
    # Wider gaps side by side than above and below, so that neighbours never read as one.
    centres = repel_labels(anchors, sizes, bounds, obstacles, pad=(0.8 * fontsize, 2.0))
    inverse = ax.transData.inverted()
    for t, anchor, centre, size in zip(texts, anchors, centres, sizes):
        t.set_position(inverse.transform(centre))
        # A leader line from the point to the nearest edge of its label, if it moved off.
        edge = np.clip(anchor, centre - size / 2, centre + size / 2)
        if np.hypot(*(edge - anchor)) > 4.0 + marker_px:
            a, e = inverse.transform(anchor), inverse.transform(edge)
            ax.plot([a[0], e[0]], [a[1], e[1]], color="0.45", lw=0.6, zorder=2)
    return texts


# ----------------------------------------------------------------------------------------
# Figures


def _valence(emotion: str) -> float:
    return valence(emotion) if emotion in VAD else 0.5


def rdm_heatmap(rdm: np.ndarray, emotions: list[str], title: str) -> Figure:
    """RDM heatmap with emotions ordered from positive to negative valence."""
    order = by_valence(emotions) if all(e in VAD for e in emotions) else list(emotions)
    idx = [emotions.index(e) for e in order]
    fig, ax = plt.subplots(figsize=(6.4, 5.6), constrained_layout=True)
    im = ax.imshow(rdm[np.ix_(idx, idx)], cmap="viridis")
    ax.set_xticks(range(len(order)), [plain(e) for e in order], rotation=90, fontsize=8)
    ax.set_yticks(range(len(order)), [plain(e) for e in order], fontsize=8)
    ax.set_title(plain(title), fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8, label="1 − cosine")
    return fig


def emotion_map(vectors: np.ndarray, emotions: list[str], title: str) -> Figure:
    """2-D PCA map of emotion vectors, coloured by human valence, labels repelled. The PCA is
    fitted on the emotions other than neutral (as the descriptors' PC–valence r); the axes
    are PC1 and the PC that correlates best with human valence (PC2 when that is PC1), the
    valence axis oriented so that positive valence points right or up, and named so."""
    fit = np.array([i for i, e in enumerate(emotions) if e != NEUTRAL and e in VAD])
    if len(fit) < 4:
        coords, ratio = pca_coords(vectors, 2)
        return scatter_map(coords, emotions, title, f"PC1 ({ratio[0]:.0%} of variance)",
                           f"PC2 ({ratio[1]:.0%})")
    coords, ratio = pca_fit_coords(vectors, fit, 3)
    val = np.array([valence(emotions[i]) for i in fit])
    r = np.array([np.corrcoef(coords[fit, k], val)[0, 1] if coords[fit, k].std() > 0 else 0.0
                  for k in range(coords.shape[1])])
    v = int(np.argmax(np.abs(r)))
    axes = (0, v) if v != 0 else (0, 1)
    coords = coords * np.where(r < 0, -1.0, 1.0)  # valence increases along every axis shown
    names = [f"PC{k + 1} ({ratio[k]:.0%} of variance), valence |r| = {abs(r[k]):.2f}"
             + (" — valence axis" if k == v else "") for k in axes]
    return scatter_map(coords[:, list(axes)], emotions, title, *names)


def scatter_map(coords: np.ndarray, emotions: list[str], title: str, xlabel: str = "",
                ylabel: str = "") -> Figure:
    """Points coloured by human valence with non-overlapping labels (the emotion map)."""
    fig, ax = plt.subplots(figsize=(6.4, 5.4), constrained_layout=True)
    sc = ax.scatter(coords[:, 0], coords[:, 1], c=[_valence(e) for e in emotions],
                    cmap="RdYlGn", vmin=0, vmax=1, edgecolors="k", linewidths=0.4, s=30,
                    zorder=3)
    ax.margins(0.12)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(plain(title), fontsize=10)
    fig.colorbar(sc, ax=ax, shrink=0.8, label="human valence (NRC VAD)")
    place_labels(ax, coords, emotions, fontsize=7.5, marker_px=7)
    return fig


def _legend_below(fig: Figure, axes: list[Axes]) -> None:
    """One legend for all ``axes``, under the plot where it cannot hide a line."""
    handles, labels = [], []
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=7,
                   frameon=False)


def _mark_layer(ax: Axes, layer: int, label: str | None = None) -> None:
    ax.axvline(layer, color="grey", ls="--", lw=1, label=label)


def _series(metrics: dict, key: str) -> np.ndarray | None:
    """A per-layer list of metrics.json as floats (null → NaN), None when absent."""
    value = metrics.get(key)
    if not isinstance(value, list):
        return None
    return np.array([np.nan if v is None else v for v in value], dtype=float)


def layer_profile(metrics: dict, title: str) -> Figure:
    """Split-half reliability and anisotropy (top) and RDM spread (bottom) by layer, the
    chosen layer marked in both."""
    n = int(metrics["n_layers"])
    layers = np.arange(n)
    best = int(metrics["best_layer"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 4.6), sharex=True,
                                      height_ratios=(3, 2), constrained_layout=True)
    rel = _series(metrics, "reliability")
    if rel is not None:
        top.plot(layers, rel, "o-", ms=3, label="RDM reliability (split-half, SB)")
    aniso = _series(metrics, "anisotropy")
    if aniso is not None:
        top.plot(layers, aniso, "s-", ms=3, color="C1", label="anisotropy (neutral sentences)")
    general = _series(metrics, "cross_style")
    if general is not None:
        what = ("fixed halves" if metrics.get("cross_style_split") == "halves"
                else "leave-one-style-out")
        top.plot(layers, general, "^-", ms=3, color="C3", label=f"cross-style ρ ({what})")
    _mark_layer(top, best, f"chosen layer {best} ({metrics.get('best_layer_criterion')})")
    finite = [a[np.isfinite(a)] for a in (rel, aniso, general) if a is not None]
    low = min((float(a.min()) for a in finite if a.size), default=0.0)
    top.set_ylim(min(-0.1, low - 0.05), 1.05)
    top.set_title(plain(title), fontsize=10)
    spread = _series(metrics, "rdm_std")
    if spread is not None:
        bottom.plot(layers, spread, "d-", ms=3, color="C2", label="RDM spread (std of 1 − cos)")
    _mark_layer(bottom, best)
    bottom.set_ylabel("RDM std", fontsize=8)
    bottom.set_xlabel(LAYER_AXIS)
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend_below(fig, [top, bottom])
    return fig


REFERENCE_STYLES = {"human": "k-", "tfidf": "C1--", "surface": "C2:", "minilm": "C4-."}
REFERENCE_NAMES = {"human": "human valence–arousal", "tfidf": "TF-IDF of the texts",
                   "surface": "surface statistics", "minilm": "MiniLM sentence embeddings"}


def has_reference_profile(metrics: dict) -> bool:
    return any(_series(metrics, f"rho_{name}") is not None for name in REFERENCE_STYLES)


def reference_profile(metrics: dict, title: str) -> Figure:
    """ρ of the model's RDM with each reference RDM (human ratings, text baselines) by layer,
    beside the within-model cross-half ρ, the chosen layer marked."""
    layers = np.arange(int(metrics["n_layers"]))
    fig, ax = plt.subplots(figsize=(6.4, 4.6), constrained_layout=True)
    own = _series(metrics, "split_half_fixed")
    if own is not None:
        ax.plot(layers, own, "o-", ms=3, color="C0", label="own cross-half ρ (fixed halves)")
    for name, style in REFERENCE_STYLES.items():
        series = _series(metrics, f"rho_{name}")
        if series is not None:
            ax.plot(layers, series, style, label=f"ρ with {REFERENCE_NAMES[name]}")
    _mark_layer(ax, int(metrics["best_layer"]), f"chosen layer {metrics['best_layer']}")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel(LAYER_AXIS)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("Spearman ρ")
    ax.set_title(plain(title), fontsize=10)
    _legend_below(fig, [ax])
    return fig


def rho_matrix(labels: list[str], rho: np.ndarray, p: np.ndarray,
               title: str = "RDM ρ (chosen layers)") -> Figure:
    """Model × model ρ of chosen-layer RDMs, annotated with ρ and permutation p."""
    n = len(labels)
    fig, ax = plt.subplots(figsize=(2.6 + 1.2 * n, 2.0 + 1.0 * n), constrained_layout=True)
    im = ax.imshow(rho, cmap="magma", vmin=-1, vmax=1)
    for i in range(n):
        for j in range(n):
            text = "1" if i == j else f"{rho[i, j]:.2f}\np={p[i, j]:.2g}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if not rho[i, j] >= 0.5 else "black")
    ax.set_xticks(range(n), [plain(s) for s in labels], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(n), [plain(s) for s in labels], fontsize=8)
    ax.set_title(plain(title), fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def text_profile(profile: dict) -> Figure:
    """Same-text vs cross-text (and, with styles, cross-style) ρ over model A's layers, model B
    at its chosen layer."""
    same = np.array([np.nan if v is None else v for v in profile["same_text"]], dtype=float)
    cross = np.array([np.nan if v is None else v for v in profile["cross_text"]], dtype=float)
    layers = np.arange(len(same))
    a, b = plain(profile["model_a"]), plain(profile["model_b"])
    fig, ax = plt.subplots(figsize=(6.4, 3.8), constrained_layout=True)
    ax.plot(layers, same, "o-", ms=3, label="same texts")
    ax.plot(layers, cross, "s-", ms=3, label="disjoint halves (cross-text)")
    if profile.get("cross_style") is not None:
        styles = np.array([np.nan if v is None else v for v in profile["cross_style"]],
                          dtype=float)
        ax.plot(layers, styles, "^-", ms=3, label="other styles (leave-one-style-out)")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel(f"layer of {a}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"ρ with {b} (layer {profile['layer_b']})", fontsize=8)
    _legend_below(fig, [ax])
    setting = " · ".join(plain(profile[k]) for k in ("precision", "preset") if profile.get(k))
    ax.set_title(f"{a} vs {b}: same vs cross text" + (f" ({setting})" if setting else ""),
                 fontsize=10)
    return fig


def model_map(labels: list[str], rho: np.ndarray, title: str, seed: int = 0) -> Figure:
    """Models by geometry: average-linkage dendrogram and 2-D MDS of 1 − ρ."""
    from scipy.cluster.hierarchy import dendrogram, linkage
    from scipy.spatial.distance import squareform

    from emogeom.geometry import mds_coords

    dist = np.clip(1.0 - (rho + rho.T) / 2, 0, None)
    dist = np.where(np.isfinite(dist), dist, 1.0)
    np.fill_diagonal(dist, 0.0)
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 1.4 + 0.4 * max(len(labels), 6)),
                                      constrained_layout=True)
    dendrogram(linkage(squareform(dist, checks=False), "average"),
               labels=[plain(s) for s in labels], ax=left, orientation="right",
               color_threshold=0, above_threshold_color="C0")
    left.set_xlabel("1 − ρ (average linkage)")
    left.tick_params(axis="y", labelsize=8)
    coords = mds_coords(dist, seed)
    right.scatter(coords[:, 0], coords[:, 1], s=25, zorder=3)
    right.set_title("MDS of 1 − ρ", fontsize=9)
    right.set_aspect("equal", adjustable="datalim")
    right.margins(0.25)
    fig.suptitle(plain(title), fontsize=10)
    place_labels(right, coords, labels, fontsize=8, marker_px=6)
    return fig
