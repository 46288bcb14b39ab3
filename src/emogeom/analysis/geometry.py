"""One model's pooled states → its ``Geometry``: vectors, RDMs, best layer, descriptors.

NumPy only. The same function serves ``emogeom.extract`` and every study job, so a notebook
and a study give the same numbers for the same inputs and settings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emogeom import artefacts as io
from emogeom import geometry
from emogeom.config import Settings
from emogeom.emotions import NEUTRAL, NORMS_CITATION, valence_arousal, valence_groups
from emogeom.errors import EmogeomError
from emogeom.stats import (
    cross_style_profile,
    half_rdm,
    mantel,
    style_groups,
)

LAYER_DEFINITION = "output of decoder block i (0-based), before any final norm"
VECTOR_DEFINITION = ("each emotion's mean pooled state minus the mean of the emotions' means "
                     "(after any neutral-PC denoising)")
FILES = ("vectors.safetensors", "analysis.safetensors", "metrics.json", "rdm.csv",
         "geometry.json")


@dataclass
class Geometry:
    """Emotion geometry of one model at every layer, with the labels that say what it is.

    ``vectors`` [L, E, d] (float32, as saved), ``rdms`` [L, E, E] (1 − cosine of the saved
    vectors), ``reliability`` [L] (split-half, Spearman–Brown), ``best_layer`` by the settings'
    criterion. ``acts`` [N, d] (best layer, after any denoising), ``labels``/``stimulus_ids``
    and ``halves`` let comparisons bootstrap stories and cross texts, ``styles`` (each text's
    style of writing, None without) and ``style_rdms`` [2, G, L, E, E] (each style's RDM and
    the other styles' RDM, every layer) cross styles; ``references`` holds the human and
    text-baseline RDMs of the same stories (for partial ρ)."""

    name: str
    emotions: list[str]
    vectors: np.ndarray
    rdms: np.ndarray
    best_layer: int
    reliability: np.ndarray
    metrics: dict[str, Any]
    settings: dict[str, Any]
    model_info: dict[str, Any]
    labels: list[str]
    stimulus_ids: list[str]
    acts: np.ndarray
    half_rdms: np.ndarray
    halves: tuple[np.ndarray, np.ndarray]
    corpus_sha256: str
    references: dict[str, np.ndarray] = field(default_factory=dict)
    styles: list[str | None] | None = None
    style_rdms: np.ndarray | None = None

    @property
    def n_layers(self) -> int:
        return int(self.vectors.shape[0])

    def rdm(self, layer: int | None = None) -> np.ndarray:
        """The RDM [E, E] at ``layer`` (default: the best layer)."""
        layer = self.best_layer if layer is None else layer
        if not -self.n_layers <= layer < self.n_layers:
            raise EmogeomError(f"layer {layer} out of range: this geometry has "
                               f"{self.n_layers} layers (0..{self.n_layers - 1})")
        return self.rdms[layer]

    def __repr__(self) -> str:
        m = self.metrics
        return (f"Geometry({self.name!r}: {len(self.emotions)} emotions, {self.n_layers} layers, "
                f"best layer {self.best_layer} by {m.get('best_layer_criterion')}, "
                f"reliability {m.get('reliability_at_best', float('nan')):.3f})")

    def save(self, folder: str | Path) -> dict[str, str]:
        """Write the geometry's files into ``folder`` (each atomically); returns name →
        sha256. ``Geometry.load`` gives back exactly the same object."""
        folder = Path(folder)
        meta = {"emotions": self.emotions, "best_layer": self.best_layer,
                "layer_definition": LAYER_DEFINITION}
        hashes = {
            "vectors.safetensors": io.write_tensors(
                folder / "vectors.safetensors", {"vectors": self.vectors},
                {**meta, **self.provenance()}),
            "analysis.safetensors": io.write_tensors(
                folder / "analysis.safetensors",
                {"half_rdms": self.half_rdms, "acts_best": self.acts,
                 "half_1": self.halves[0].astype(np.int64),
                 "half_2": self.halves[1].astype(np.int64),
                 **{f"ref_{k}": v for k, v in self.references.items()},
                 **({} if self.style_rdms is None else {"style_rdms": self.style_rdms})},
                {**meta, "labels": self.labels, "stimulus_ids": self.stimulus_ids,
                 "styles": self.styles, "corpus_sha256": self.corpus_sha256}),
        }
        io.write_json(folder / "metrics.json", self.metrics)
        io.write_rdm_csv(folder / "rdm.csv", self.rdm(), self.emotions)
        io.write_json(folder / "geometry.json", {"name": self.name, "settings": self.settings,
                                                 "model_info": self.model_info})
        for name in ("metrics.json", "rdm.csv", "geometry.json"):
            hashes[name] = io.file_sha256(folder / name)
        return hashes

    @classmethod
    def load(cls, folder: str | Path) -> Geometry:
        """A geometry back from the files ``save`` wrote (no model needed)."""
        folder = Path(folder)
        for name in FILES:
            if not (folder / name).exists():
                raise EmogeomError(f"{folder} holds no saved geometry ({name} missing); give a "
                                   "folder written by Geometry.save or a study job")
        vec, meta = io.read_tensors(folder / "vectors.safetensors")
        extra, ameta = io.read_tensors(folder / "analysis.safetensors")
        info = io.read_json(folder / "geometry.json")
        metrics = io.read_json(folder / "metrics.json")
        vectors = vec["vectors"]
        refs = {k.removeprefix("ref_"): v for k, v in extra.items() if k.startswith("ref_")}
        return cls(
            name=info["name"], emotions=list(meta["emotions"]), vectors=vectors,
            rdms=geometry.cosine_rdm(vectors.astype(np.float64)),
            best_layer=int(meta["best_layer"]),
            reliability=np.asarray(metrics["reliability"], dtype=np.float64),
            metrics=metrics, settings=info["settings"], model_info=info["model_info"],
            labels=list(ameta["labels"]), stimulus_ids=list(ameta["stimulus_ids"]),
            acts=extra["acts_best"], half_rdms=extra["half_rdms"],
            halves=(extra["half_1"], extra["half_2"]), corpus_sha256=ameta["corpus_sha256"],
            references=refs, styles=ameta.get("styles"), style_rdms=extra.get("style_rdms"))

    def provenance(self) -> dict[str, Any]:
        """What a vector file found alone must say about itself: the model (id, kind,
        revision or weights sha256, architecture, sizes, precision), where and how the states
        were read (layer definition, pooling, chat policy), the vector formula, the corpus,
        the preset and the emogeom version. Stored in ``vectors.safetensors``."""
        from emogeom import __version__

        info, ext = self.model_info, self.settings.get("extraction", {})
        return {
            "name": self.name,
            "model": info.get("model"), "model_kind": info.get("kind"),
            "model_revision": info.get("revision"), "model_sha256": info.get("sha256"),
            "architecture": info.get("architecture"), "n_layers": self.n_layers,
            "d_model": int(self.vectors.shape[-1]), "dtype": info.get("dtype"),
            "layer_definition": LAYER_DEFINITION, "vector_definition": VECTOR_DEFINITION,
            "pooling": ext.get("pooling"), "mean_start": ext.get("mean_start"),
            "chat_template": ext.get("chat_template"),
            "denoise": self.settings.get("analysis", {}).get("denoise"),
            "corpus_sha256": self.corpus_sha256, "preset": self.settings.get("preset"),
            "emogeom": __version__,
        }

    def to_rsatoolbox(self, layers: int | list[int] | None = None) -> Any:
        """The RDMs as ``rsatoolbox.rdm.RDMs``, one per layer (default all; needs rsatoolbox)."""
        from emogeom.export.rsa import to_rsatoolbox

        return to_rsatoolbox(self, layers)

    def to_steering_vector(self, emotion: str, layers: int | list[int] | str | None = None,
                           alpha: float = 1.0, model: Any = None, tokenizer: Any = None) -> Any:
        """``emotion`` as a ``steering_vectors.SteeringVector`` (with a model: emogeom's units,
        else absolute); see ``emogeom.export.steering_vectors.to_steering_vector``."""
        from emogeom.export.steering_vectors import to_steering_vector

        return to_steering_vector(self, emotion, layers, alpha, model, tokenizer)

    def to_json(self) -> str:
        """The descriptors as JSON text (for logs and notebooks)."""
        return json.dumps({"name": self.name, **self.metrics}, default=float)


def analyse(
    stories: np.ndarray, neutral: np.ndarray, corpus: Any, halves: tuple[np.ndarray, np.ndarray],
    settings: Settings, references: dict[str, np.ndarray] | None = None, name: str = "model",
    model_info: dict[str, Any] | None = None,
) -> Geometry:
    """Geometry of one model from pooled states ``stories`` [L, N, d] and ``neutral``
    [L, M, d] of ``corpus`` (anything with ``labels``, ``emotions``, ``stimuli``, ``sha256``).
    ``references`` (name → RDM: human ratings, text baselines) get a ρ profile over layers
    and a Mantel p at the best layer."""
    emotions = list(corpus.emotions)
    labels = list(corpus.labels)
    references = references or {}
    an, st = settings.analysis, settings.statistics
    acts = stories
    if an.denoise > 0:
        acts = geometry.project_out_neutral_pcs(acts, neutral, an.denoise)
    # Vectors are kept as saved (float32) so that a geometry and its reload are identical.
    vectors = geometry.emotion_vectors(acts, labels, emotions).astype(np.float32)
    rdms = geometry.cosine_rdm(vectors.astype(np.float64))
    rel = geometry.layer_reliability(acts, labels, emotions, an.splits, st.seed, fixed=halves)
    half_rdms = np.stack([half_rdm(acts, labels, emotions, h) for h in halves])
    aniso = geometry.anisotropy(neutral)
    ref_layer = geometry.reference_best_layer(vectors.astype(np.float64))
    rel_layer = geometry.best_layer(rel["reliability"])
    styles = [s.style for s in corpus.stimuli]
    groups = style_groups(styles, labels, emotions, halves)
    general = cross_style_profile(acts, labels, emotions, groups, st.permutations, st.seed)
    style_rdms = np.stack([general["own"], general["rest"]]).astype(np.float32)
    general_layer = geometry.best_layer(general["rho"])
    best = {"reliability": rel_layer, "reference": ref_layer,
            "general": general_layer}[an.layer_criterion]
    n_layers = acts.shape[0]
    pos, neg = valence_groups(emotions)
    within, between = geometry.group_distances(rdms[best], emotions, pos, neg)
    # PCA over the 20 emotions: neutral sits far from all of them and would own PC1.
    feeling = [i for i, e in enumerate(emotions) if e != NEUTRAL]
    pc_r = geometry.pc_correlations(vectors[best][feeling].astype(np.float64),
                                    valence_arousal([emotions[i] for i in feeling]), n_pcs=3)
    best_pc = 0 if np.all(np.isnan(pc_r[:, 0])) else int(np.nanargmax(pc_r[:, 0]))
    metrics: dict[str, Any] = {
        "n_layers": n_layers,
        "best_layer": best,
        "best_layer_depth": best / max(n_layers - 1, 1),
        "best_layer_criterion": an.layer_criterion,
        "best_layer_reliability": rel_layer,
        "best_layer_reference": ref_layer,
        "best_layer_general": general_layer,
        "anisotropy": aniso,
        "anisotropy_at_best": float(aniso[best]),
        "rdm_std": geometry.rdm_std(rdms),
        "rdm_std_at_best": float(geometry.rdm_std(rdms[best])),
        "reliability": rel["reliability"],
        "split_half": rel["split_half"],
        "split_half_fixed": rel["split_half_fixed"],
        "reliability_at_best": float(rel["reliability"][best]),
        "cross_style": general["rho"],
        "cross_style_ceiling": general["ceiling"],
        "cross_style_normalised": general["normalised"],
        "p_cross_style": general["p"],
        "cross_style_at_best": float(general["rho"][best]),
        "p_cross_style_at_best": float(general["p"][best]),
        "cross_style_normalised_at_best": float(general["normalised"][best]),
        "cross_style_split": groups.split,
        "cross_style_groups": groups.names,
        "cross_style_note": groups.note + (
            "; the layer was chosen as the argmax of this statistic, so its p at that layer "
            "is not corrected for the choice" if an.layer_criterion == "general" else ""),
        "valence_within": within,
        "valence_between": between,
        "pc1_valence_abs_r": float(pc_r[0, 0]),
        "pc1_arousal_abs_r": float(pc_r[0, 1]),
        "best_pc_valence": best_pc + 1,
        "best_pc_valence_abs_r": float(pc_r[best_pc, 0]),
        "pc_note": "PCA (first 3 PCs) of the best-layer vectors of the emotions other than neutral",
        "norms": NORMS_CITATION,
        "layer_definition": LAYER_DEFINITION,
    }
    model_upper = geometry.upper(rdms)
    for ref_name, ref in references.items():
        metrics[f"rho_{ref_name}"] = geometry.rowwise_spearman(model_upper,
                                                                geometry.upper(ref)[None])
        rho, p = mantel(rdms[best], ref, "spearman", st.permutations, st.seed)
        metrics[f"rho_{ref_name}_at_best"], metrics[f"p_{ref_name}_at_best"] = rho, p
    # Through JSON once, so the in-memory metrics equal those read back from metrics.json.
    metrics = io.json_data(metrics)
    return Geometry(
        name=name, emotions=emotions, vectors=vectors, rdms=rdms, best_layer=best,
        reliability=np.asarray(rel["reliability"], dtype=np.float64), metrics=metrics,
        settings=json.loads(settings.model_dump_json()),
        model_info=io.json_data(dict(model_info or {})),
        labels=labels, stimulus_ids=[s.id for s in corpus.stimuli], acts=acts[best],
        half_rdms=half_rdms, halves=(np.asarray(halves[0]), np.asarray(halves[1])),
        corpus_sha256=corpus.sha256, references=dict(references),
        styles=styles if any(styles) else None,
        style_rdms=style_rdms if groups.split == "style" else None)
