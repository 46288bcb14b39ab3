"""The corpus's fixed split of every emotion's stories into two halves."""

from __future__ import annotations

import numpy as np

from emogeom.stimuli.corpus import Corpus


def fixed_halves(corpus: Corpus) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic halves (stimulus indices) balanced within every emotion.

    Within an emotion, stories are ordered by (topic, id) and assigned 0,1,1,0,0,1,1,0,...:
    with the shipped corpus (two stories per topic, one first- and one third-person) each half
    gets one story per topic and half of each narrative person. An odd story out is left out.
    """
    first, second = [], []
    for emotion in corpus.emotions:
        idx = [i for i, s in enumerate(corpus.stimuli) if s.emotion == emotion]
        idx.sort(key=lambda i: (corpus.stimuli[i].topic or "", corpus.stimuli[i].id))
        half = len(idx) // 2
        ones = [i for k, i in enumerate(idx) if (k + k // 2) % 2 == 1]
        zeros = [i for k, i in enumerate(idx) if (k + k // 2) % 2 == 0]
        first.extend(zeros[:half])
        second.extend(ones[:half])
    return np.array(sorted(first)), np.array(sorted(second))
