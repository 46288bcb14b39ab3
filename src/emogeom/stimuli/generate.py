"""Model-written corpora: an instruct model writes stories per emotion × topic, seeded, with
the emotion's own word and synonyms forbidden in the prompt and checked in the output."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from emogeom import artefacts
from emogeom.emotions import EMOTIONS, NEUTRAL
from emogeom.errors import EmogeomError
from emogeom.models import load_model
from emogeom.models.generate import encode, generate, prompt_text
from emogeom.models.timing import Work, count, estimate, warm_up
from emogeom.progress import Progress, counter
from emogeom.stimuli.check import leaks, load_synonyms

TOPICS = ("work", "family", "health", "school", "money", "travel", "nature", "friendship",
          "sport", "home")


def story_prompt(emotion: str, topic: str, forbidden: Sequence[str]) -> str:
    """The instruction for one story; it names the emotion once and forbids its words."""
    if emotion == NEUTRAL:
        return (f"Write a short, plain story of three or four sentences about {topic}. Describe "
                "ordinary events in a flat, factual way, with no feelings at all. "
                "Write only the story.")
    banned = ", ".join(f'"{w}"' for w in forbidden)
    return (f"Write a short story of three or four sentences about {topic} in which the main "
            f"character feels {emotion}. Do not use any of these words: {banned}. Show the "
            "feeling through what happens and what the character does. Write only the story.")


def clean_story(text: str, max_sentences: int = 5) -> str:
    """One line of prose: no title or quotes around it, at most ``max_sentences`` sentences."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) > 1 and len(lines[0].split()) <= 6 and not lines[0].endswith("."):
        lines = lines[1:]  # a title line
    prose = " ".join(lines).strip().strip('"').strip()
    sentences = re.findall(r"[^.!?]+[.!?]+", prose)
    return " ".join(s.strip() for s in sentences[:max_sentences]) if sentences else prose


def write_corpus(
    model: str,
    per_emotion: int,
    out: str | Path,
    emotions: Sequence[str] = EMOTIONS,
    seed: int = 0,
    max_new_tokens: int = 120,
    temperature: float = 0.8,
    top_p: float = 0.95,
    retries: int = 3,
    dtype: str = "fp32",
    on_story: Callable[[int], None] | None = None,
    device: str | None = "auto",
    max_memory: str | dict | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Generate ``per_emotion`` stories for each emotion (topics in turn) and save JSON Lines.

    A story that uses a forbidden word is redrawn with the next seed up to ``retries`` times,
    then dropped and counted. Returns counts of kept and dropped stories. ``progress`` gets
    one line before the work (an estimate of its time from a short warm-up) and, unless
    ``on_story`` is given, the count of stories written.
    """
    unknown = [e for e in emotions if e not in EMOTIONS]
    if unknown:
        raise EmogeomError(f"unknown emotion(s) {unknown} (use: {', '.join(EMOTIONS)})")
    if per_emotion < 1:
        raise EmogeomError("--per-emotion must be at least 1")
    out = Path(out)
    if out.exists():
        raise EmogeomError(f"{out} exists; choose a new --out file (nothing is overwritten)")
    synonyms = load_synonyms()
    lm = load_model(model, dtype, device=device, max_memory=max_memory)
    if progress is not None:
        first = emotions[0]
        text, templated = prompt_text(lm.tokenizer, story_prompt(
            first, TOPICS[0], sorted({first, *synonyms.get(first, [])})))
        ids = encode(lm.tokenizer, text, templated)
        n = len(emotions) * per_emotion
        progress(estimate(f"{count(n)} stories × {max_new_tokens} new tokens (more if some are "
                         "redrawn)", [Work(n, max_new_tokens, 1, len(ids))],
                         warm_up(lm, [ids]), ["--per-emotion", "--emotions",
                                              "--max-new-tokens"]).line())
        on_story = on_story or counter(progress, "writing stories", n)
    rows, dropped = [], {}
    for e in emotions:
        forbidden = sorted({e, *synonyms.get(e, [])}) if e != NEUTRAL else []
        for k in range(per_emotion):
            topic = TOPICS[k % len(TOPICS)]
            prompt = story_prompt(e, topic, forbidden)
            for attempt in range(retries + 1):
                story_seed = seed + 1000 * attempt + 7919 * EMOTIONS.index(e) + k
                text = clean_story(generate(lm, prompt, story_seed, max_new_tokens,
                                            temperature, top_p))
                if text and not leaks(text, forbidden):
                    rows.append({"emotion": e, "id": f"{e}-gen{k + 1:03d}", "topic": topic,
                                 "text": text, "source": model, "seed": story_seed})
                    break
            else:
                dropped[e] = dropped.get(e, 0) + 1
            if on_story is not None:
                on_story(1)
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    artefacts.atomic_write_bytes(out, body.encode())
    return {"kept": len(rows), "dropped": dropped, "out": str(out), "model": lm.info}
