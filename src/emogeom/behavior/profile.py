"""Run both Compliance facets (formal, stance) for a loaded model and save the facet profile with
every prompt and reply."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import emogeom
from emogeom import artefacts
from emogeom.behavior import formal, stance
from emogeom.behavior.dialogue import choose_format, converse, format_note, render
from emogeom.config import Behaviour, checked
from emogeom.errors import EmogeomError
from emogeom.models.generate import encode
from emogeom.models.loading import LoadedModel
from emogeom.models.timing import Estimate, Work, count, estimate, warm_up


def check_behaviour(s: Behaviour) -> Behaviour:
    """One-line error for a constraint or question name that does not exist; returns ``s``."""
    for name, chosen, known in (
            ("constraint", s.constraints, formal.CONSTRAINT_NAMES),
            ("question", s.questions, tuple(q.id for q in stance.QUESTIONS))):
        unknown = sorted(set(chosen or ()) - set(known))
        if unknown:
            raise EmogeomError(f"unknown {name}(s) {', '.join(unknown)}; "
                               f"choose from: {', '.join(known)}")
    return s


def n_steps(settings: Behaviour) -> int:
    """Model calls at most (for a progress bar): two per constraint, six per question."""
    n_c = len(settings.constraints or formal.CONSTRAINT_NAMES)
    n_q = len(settings.questions or stance.QUESTIONS)
    return 2 * n_c + (1 + stance.N_TURNS) * n_q


def behaviour_estimate(lm: LoadedModel, settings: Behaviour) -> Estimate:
    """How long ``behaviour_profile`` will take: ``n_steps`` replies of up to
    ``max_new_tokens``, one at a time; a stance dialogue's prompt grows by about one reply and
    one user turn per turn. Timed by a warm-up on the first formal prompt."""
    fmt = choose_format(lm, settings.format)
    first = formal.CONSTRAINTS[0].capability
    text, templated = render(lm, [{"role": "user", "content": first}], fmt)
    ids = encode(lm.tokenizer, text, templated)
    n_c = len(settings.constraints or formal.CONSTRAINT_NAMES)
    n_q = len(settings.questions or stance.QUESTIONS)
    grow = settings.max_new_tokens + 40  # a reply and the next user turn, in tokens
    works = [Work(2 * n_c, settings.max_new_tokens, 1, len(ids))]
    works += [Work(n_q, settings.max_new_tokens, 1, len(ids) + t * grow)
              for t in range(1 + stance.N_TURNS)]
    n = n_steps(settings)
    return estimate(f"{count(n)} replies × {settings.max_new_tokens} new tokens (at most)",
                    works, warm_up(lm, [ids]), ["--max-new-tokens"])


def _formal(lm: LoadedModel, fmt: str, s: Behaviour, gen: dict[str, Any],
            step: Callable[[int], None]) -> tuple[list[dict], list[dict]]:
    rows, dialogues = [], []
    for c in formal.CONSTRAINTS:
        if s.constraints and c.name not in s.constraints:
            continue
        row: dict[str, Any] = {"constraint": c.name, "description": c.description}
        for stage, prompt in (("capability", c.capability), ("compliance", c.compliance)):
            if stage == "compliance" and row["capability_score"] < s.capability_threshold:
                row.update(compliance_score=None, compliance_reason="skipped: capability "
                           f"score below {s.capability_threshold}", included=False)
                step(1)
                continue
            [turn], prompt_text = converse(lm, [prompt], fmt, **gen)
            sc = formal.score_reply(c, turn["reply"], prompt)
            row.update({f"{stage}_score": sc.value, f"{stage}_reason": sc.reason})
            turn.update(score=sc.value, reason=sc.reason)
            dialogues.append({"facet": "formal", "id": c.name, "stage": stage, "format": fmt,
                              "turns": [turn], "prompt_text": prompt_text})
            step(1)
        row.setdefault("included", True)
        rows.append(row)
    return rows, dialogues


def _stance(lm: LoadedModel, fmt: str, s: Behaviour, gen: dict[str, Any],
            step: Callable[[int], None]) -> tuple[list[dict], list[dict]]:
    rows, dialogues = [], []
    for q in stance.QUESTIONS:
        if s.questions and q.id not in s.questions:
            continue
        user_turns = [q.text + stance.BASELINE_SUFFIX, *stance.pressure_turns(q)]
        turns, prompt_text = converse(lm, user_turns, fmt, **gen,
                                      on_reply=lambda t, r: step(1))
        labels = []
        for turn in turns:
            st = stance.classify(turn["reply"], q, turn["turn"])
            turn.update(stance=st.label, reason=st.reason)
            labels.append(st.label)
        rows.append({"question": q.id, "text": q.text, "correct": q.correct[0],
                     "pushed": q.pushed, "stances": labels,
                     "first_flip_turn": stance.first_flip(labels), "final_stance": labels[-1]})
        dialogues.append({"facet": "stance", "id": q.id, "stage": "pressure", "format": fmt,
                          "turns": turns, "prompt_text": prompt_text})
    return rows, dialogues


def behaviour_profile(
    lm: LoadedModel, settings: Behaviour | None = None,
    on_step: Callable[[int], None] | None = None, **overrides: Any,
) -> dict[str, Any]:
    """Facet profile of a loaded model: formal compliance and stance under pressure.

    ``lm`` is a ``LoadedModel``; ``models.wrap(model, tokenizer)`` makes one of a plain
    transformers model and tokenizer. Returns a dict with ``facets`` ({"formal_compliance",
    "stance_hold"}, each in [0, 1] or None when undefined), per-facet summaries and rows, the
    dialogue format used, the settings, and ``dialogues`` (every prompt and reply). Keyword
    overrides set ``config.Behaviour`` fields; ``on_step(n)`` counts model calls."""
    s = settings or Behaviour()
    if overrides:
        s = checked(Behaviour, {**s.model_dump(), **overrides})
    check_behaviour(s)
    fmt = choose_format(lm, s.format)
    gen = {"seed": s.seed, "max_new_tokens": s.max_new_tokens, "temperature": s.temperature,
           "top_p": s.top_p}
    step = on_step or (lambda n: None)
    started = time.time()
    f_rows, f_dialogues = _formal(lm, fmt, s, gen, step)
    s_rows, s_dialogues = _stance(lm, fmt, s, gen, step)
    f_sum, s_sum = formal.summarise(f_rows, s.capability_threshold), stance.summarise(s_rows)
    flip = s_sum["flip_rate"]
    return {
        "model": lm.source.spec,
        "slug": lm.source.slug,
        "format": fmt,
        "format_note": format_note(lm, fmt),
        "facets": {"formal_compliance": f_sum["score"],
                   "stance_hold": None if flip is None else 1.0 - flip},
        "formal": {**f_sum, "scenarios": f_rows},
        "stance": {**s_sum, "questions": s_rows},
        "settings": s.model_dump(),
        "seconds": round(time.time() - started, 1),
        "dialogues": f_dialogues + s_dialogues,
    }


def save_profile(profile: dict[str, Any], out: Path, model_info: dict[str, Any]) -> dict:
    """Write profile.json, dialogues.jsonl and manifest.json under ``out`` (atomic writes, all
    after the run has finished); returns {file name: path}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    body = {k: v for k, v in profile.items() if k != "dialogues"}
    lines = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in profile["dialogues"])
    artefacts.atomic_write_bytes(out / "dialogues.jsonl", lines.encode())
    artefacts.write_json(out / "profile.json", body)
    manifest = {
        "emogeom": emogeom.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model_info,
        "settings": profile["settings"],
        "seed": profile["settings"]["seed"],
        "format": profile["format"],
        "format_note": profile["format_note"],
        "constraints": [r["constraint"] for r in profile["formal"]["scenarios"]],
        "questions": [r["question"] for r in profile["stance"]["questions"]],
        "n_dialogues": len(profile["dialogues"]),
        "seconds": profile["seconds"],
        "python": platform.python_version(),
    }
    artefacts.write_json(out / "manifest.json", manifest)
    return {name: out / name for name in ("profile.json", "dialogues.jsonl", "manifest.json")}
