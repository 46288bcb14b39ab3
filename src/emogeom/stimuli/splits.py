"""The corpus's fixed split of every emotion's stories into two halves."""

from __future__ import annotations

import numpy as np

from emogeom.stimuli.corpus import Corpus


def fixed_halves(corpus: Corpus) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic halves (stimulus indices) balanced within every emotion and style.

    Within an emotion and style, texts are ordered by (topic, id) and assigned 0,1,1,0,0,1,...:
    with the shipped corpus (one text per topic in each style, alternating narrative person)
    each half gets half of every style, half of the topics and of each person. An odd text out
    within an emotion is left out.
    """
    first, second = [], []
    for emotion in corpus.emotions:
        idx = [i for i, s in enumerate(corpus.stimuli) if s.emotion == emotion]
        cells: dict[str, list[int]] = {}
        for i in idx:
            cells.setdefault(corpus.stimuli[i].style or "", []).append(i)
        zeros, ones = [], []
        for cell in cells.values():
            cell.sort(key=lambda i: (corpus.stimuli[i].topic or "", corpus.stimuli[i].id))
            zeros += [i for k, i in enumerate(cell) if (k + k // 2) % 2 == 0]
            ones += [i for k, i in enumerate(cell) if (k + k // 2) % 2 == 1]
        half = len(idx) // 2
        first.extend(zeros[:half])
        second.extend(ones[:half])
    return np.array(sorted(first)), np.array(sorted(second))
