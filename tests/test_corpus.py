"""The shipped corpus and the loader's one-line errors."""

from __future__ import annotations

import json
import re

import pytest

from emogeom.emotions import EMOTIONS, VAD, by_valence
from emogeom.errors import EmogeomError
from emogeom.stimuli import load_corpus, load_neutral_sentences
from emogeom.stimuli.corpus import default_corpus_path


def test_shipped_corpus_is_complete():
    corpus = load_corpus()
    counts = corpus.counts()
    assert set(counts) == set(EMOTIONS) and len(EMOTIONS) == 21
    assert min(counts.values()) >= 8
    assert len({s.text for s in corpus.stimuli}) == len(corpus.stimuli)
    assert len(load_neutral_sentences().stimuli) >= 20


def test_shipped_stories_avoid_their_emotion_words():
    synonyms = json.loads((default_corpus_path().parent / "synonyms.json").read_text())
    for s in load_corpus().stimuli:
        for word in synonyms[s.emotion]:
            assert not re.search(rf"\b{re.escape(word)}\b", s.text, re.I), (s.id, word)


def test_norms_order():
    assert set(VAD) == set(EMOTIONS)
    order = by_valence()
    assert order[0] == "happy" and order[-1] == "afraid"


def test_per_emotion_subset_changes_hash():
    full, three = load_corpus(), load_corpus(per_emotion=3)
    assert set(three.counts().values()) == {3}
    assert full.sha256 != three.sha256


def _write(tmp_path, lines):
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    return path


def _good_lines(n=2):
    return [json.dumps({"emotion": e, "id": f"{e}-{i}", "text": f"text {e} {i}."})
            for e in EMOTIONS for i in range(n)]


@pytest.mark.parametrize(
    "lines, message",
    [
        ([], "is empty"),
        (_good_lines() + ['{"emotion": "joyful", "id": "x", "text": "t."}'],
         "unknown emotion label 'joyful'"),
        (_good_lines()[:-1], "fewer than 2 stories: neutral (1)"),
        (_good_lines() + ["{not json"], "not valid JSON"),
        (_good_lines() + ['{"emotion": "sad", "id": "sad-0", "text": "dup."}'], "duplicate id"),
        (_good_lines() + ['{"emotion": "sad", "id": "y", "text": ""}'], "'text' is missing"),
    ],
)
def test_bad_corpus_errors(tmp_path, lines, message):
    with pytest.raises(EmogeomError, match=re.escape(message)) as info:
        load_corpus(_write(tmp_path, lines))
    assert "\n" not in str(info.value)


def test_missing_corpus_file(tmp_path):
    with pytest.raises(EmogeomError, match="not found"):
        load_corpus(tmp_path / "nope.jsonl")
