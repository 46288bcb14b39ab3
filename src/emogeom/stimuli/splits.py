"""The corpus's fixed split of every emotion's stories into two halves."""

from __future__ import annotations

import numpy as np

from emogeom.stimuli.corpus import Corpus


def fixed_halves(corpus: Corpus) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic halves (stimulus indices) balanced within every emotion and style.

    Within an emotion, texts are ordered by (style, topic, id) and assigned 0,1,1,0,0,1,1,0,...:
    with the shipped corpus (10 texts per emotion and style, one per topic) each half gets 5
    texts of every style. An odd text out within an emotion is left out.
    """
    first, second = [], []
    style_rank = {style: k for k, style in enumerate(corpus.styles)}
    for emotion in corpus.emotions:
        idx = [i for i, s in enumerate(corpus.stimuli) if s.emotion == emotion]
        idx.sort(key=lambda i: (style_rank.get(corpus.stimuli[i].style, -1),
                                corpus.stimuli[i].topic or "", corpus.stimuli[i].id))
        half = len(idx) // 2
        ones = [i for k, i in enumerate(idx) if (k + k // 2) % 2 == 1]
        zeros = [i for k, i in enumerate(idx) if (k + k // 2) % 2 == 0]
        first.extend(zeros[:half])
        second.extend(ones[:half])
    return np.array(sorted(first)), np.array(sorted(second))
