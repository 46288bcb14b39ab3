"""The Python API: what a notebook needs, in a few calls (the CLI is a shell over these).

    import emogeom
    lm = emogeom.load_model("smollm2-135m-instruct")
    g = emogeom.extract(lm.model, lm.tokenizer)                 # -> Geometry
    h = emogeom.extract(*emogeom.load_model("gemma3-270m"))
    print(emogeom.compare(g, h))                                # -> Comparison
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from emogeom.analysis import Comparison, Geometry
from emogeom.analysis import compare as _compare
from emogeom.config import Settings, Statistics, StudySpec, make_settings
from emogeom.errors import EmogeomError
from emogeom.progress import Progress

_DTYPES = ("fp32", "bf16", "fp16")


def load_model(spec: str, dtype: str = "fp32", device: str = "auto", revision: str | None = None,
               trust_remote_code: bool = False, max_memory: str | dict | None = None):
    """Load an embedded name, a local folder, a ``.gguf`` file or a hub id → ``LoadedModel``
    (``.model``, ``.tokenizer``, ``.info``; it also unpacks as ``model, tokenizer``), straight
    onto ``device`` (auto: CUDA, else MPS, else CPU; a model larger than one GPU spreads over
    the visible GPUs, ``max_memory`` per device)."""
    from emogeom.models import load_model as _load

    return _load(spec, dtype, revision=revision, trust_remote_code=trust_remote_code,
                 device=device, max_memory=max_memory)


def load_corpus(path: str | Path | None = None, per_emotion: int | None = None,
                columns: str | dict[str, str] | None = None):
    """A corpus (``.jsonl``, ``.csv`` or ``.tsv``; default the shipped one), optionally
    ``per_emotion`` texts of each emotion; ``columns`` maps emogeom's field names to the
    file's (``"text=passage,emotion=label"``)."""
    from emogeom.stimuli import load_corpus as _load

    return _load(path, per_emotion=per_emotion, columns=columns)


def settings(preset: str = "default", **overrides: Any) -> Settings:
    """The settings a preset gives, with any field overridden by name (``pooling="last"``,
    ``denoise=0``, ``permutations=1000``...)."""
    return make_settings(preset, **overrides)


def extract(
    model: Any, tokenizer: Any, corpus: Any = None, preset: str = "default",
    neutral: Any = None, references: bool = True, name: str | None = None,
    progress: Progress | None = None, **overrides: Any,
) -> Geometry:
    """The emotion geometry of a loaded causal LM: pooled residual states of every story at
    every layer → vectors, RDMs, best layer, descriptors. ``corpus``: a ``Corpus``, a path, or
    None for the shipped one; ``overrides``: any settings field (see ``settings``). The
    tokenizer is left as it is (a missing pad token is handled inside). Same numbers as a
    study job with the same settings."""
    from emogeom.models.loading import wrap
    from emogeom.stimuli import Corpus, load_neutral_sentences
    from emogeom.study.jobs import Inputs, geometry_of

    lm = wrap(model, tokenizer, name)
    overrides.setdefault("dtype", lm.info["dtype"] if lm.info["dtype"] in _DTYPES else "fp32")
    s = make_settings(preset, **overrides)
    ext = s.extraction
    if corpus is None or isinstance(corpus, (str, Path)):
        corpus = load_corpus(corpus, per_emotion=ext.per_emotion)
    elif not isinstance(corpus, Corpus):
        raise EmogeomError("corpus must be a Corpus (emogeom.load_corpus), a path or None")
    elif ext.per_emotion is not None:
        raise EmogeomError("per_emotion applies when emogeom loads the corpus: pass "
                           "emogeom.load_corpus(path, per_emotion=N) instead")
    if neutral is None or isinstance(neutral, (str, Path)):
        neutral = load_neutral_sentences(neutral, n=ext.n_neutral)
    refs: dict[str, Any] = {}
    if references:
        from emogeom.baselines.references import reference_rdms

        refs, _ = reference_rdms(corpus, progress)
    label = name or str(lm.info["model"]).rstrip("/").split("/")[-1] or "model"
    _, geometry = geometry_of(lm, Inputs(corpus, neutral), s, refs, label, progress)
    return geometry


_STATS = {k: f.default for k, f in Statistics.model_fields.items()}  # defaults live in config


def compare(a: Geometry, b: Geometry, method: str = _STATS["method"],
            permutations: int = _STATS["permutations"], bootstrap: int = _STATS["bootstrap"],
            ci_level: float = _STATS["ci_level"], seed: int = _STATS["seed"]) -> Comparison:
    """Compare two geometries at their best layers: ρ with Mantel p, stimulus-bootstrap CI,
    noise ceiling, CKA, Procrustes, cross-text ρ and partial ρ given the text baselines."""
    try:
        stats = Statistics(method=method, permutations=permutations, bootstrap=bootstrap,
                           ci_level=ci_level, seed=seed)
    except ValueError as exc:
        raise EmogeomError(str(exc).splitlines()[0]) from None
    return _compare(a, b, stats)


@contextlib.contextmanager
def steer(model: Any, tokenizer: Any, geometry: Geometry, emotion: str, alpha: float,
          layers: int | Sequence[int] | None = None) -> Iterator[list[int]]:
    """While open, add ``alpha`` × (mean residual norm of the layer, measured on the neutral
    sentences) × the unit ``emotion`` vector of ``geometry`` to the output of each decoder
    block in ``layers`` (default: the geometry's best layer); as ``emogeom steer`` does."""
    from emogeom.models.loading import wrap
    from emogeom.steering.hooks import steer as _steer
    from emogeom.steering.vectors import residual_norms

    if emotion not in geometry.emotions:
        raise EmogeomError(f"unknown emotion '{emotion}' (this geometry has: "
                           f"{', '.join(geometry.emotions)})")
    chosen = [geometry.best_layer] if layers is None else (
        [layers] if isinstance(layers, int) else sorted(set(layers)))
    k = geometry.emotions.index(emotion)
    norms = residual_norms(wrap(model, tokenizer), chosen)
    vectors = {layer: geometry.vectors[layer, k] for layer in chosen}
    with _steer(model, vectors, chosen, alpha, norms) as steered:
        yield steered


class Study:
    """A study (many models × precisions × presets) from a YAML file or a ``StudySpec``."""

    def __init__(self, spec: StudySpec | dict[str, Any]):
        self.spec = spec if isinstance(spec, StudySpec) else StudySpec.model_validate(spec)

    @classmethod
    def from_file(cls, path: str | Path) -> Study:
        from emogeom.study.spec import load_study

        return cls(load_study(path))

    def run(self, executor: str | None = None, jobs: int | None = None,
            progress: Progress | None = None) -> dict[str, Any]:
        """Compute every unfinished job, compare, and write the study folder and report."""
        from emogeom.study.runner import run_study_spec

        return run_study_spec(self.spec, executor, None, jobs, progress)

    def status(self) -> list[dict[str, str]]:
        from emogeom.study.runner import study_status

        return study_status(self.spec)

    def geometries(self) -> dict[str, Geometry]:
        """The finished jobs' geometries, by job folder name."""
        from emogeom.study.runner import study_folder_jobs

        out = self.spec.out_dir
        return {j["folder"]: Geometry.load(out / "jobs" / j["folder"])
                for j in study_folder_jobs(out)}
