"""Reference RDMs of a corpus: human valence–arousal ratings and the text baselines."""

from __future__ import annotations

import numpy as np

from emogeom import geometry
from emogeom.baselines.text import BASELINES, BaselineUnavailable, baseline_states
from emogeom.emotions import valence_arousal
from emogeom.progress import Progress


def reference_rdms(corpus, progress: Progress | None = None
                   ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The human valence-arousal RDM and the text-baseline RDMs of the corpus; an optional
    baseline whose package is missing is skipped with its reason (a note to ``progress``)."""
    emotions = list(corpus.emotions)
    refs = {"human": geometry.rating_rdm(valence_arousal(emotions))}
    skipped = {}
    for name in BASELINES:
        try:
            states = baseline_states(name, corpus.texts)
        except BaselineUnavailable as exc:
            skipped[name] = str(exc)
            if progress is not None:
                progress(f"note: {exc}")
            continue
        refs[name] = geometry.cosine_rdm(
            geometry.emotion_vectors(states, corpus.labels, emotions))[0]
    return refs, skipped


def reference_names() -> list[str]:
    """Which references ``reference_rdms`` would compute here, without computing them."""
    from emogeom.baselines.text import minilm_dir

    names = ["human", *BASELINES]
    try:
        minilm_dir()
    except BaselineUnavailable:
        names.remove("minilm")
    return names
