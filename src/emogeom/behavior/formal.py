"""Formal compliance: ten format constraints, each with a pure rule-based scorer (no judge model).

Every scorer maps a reply to ``Score(value, reason)`` with ``value`` in [0, 1]; 1 means the
constraint is fully met. An empty reply scores 0 with reason "empty reply". Each constraint has a
capability prompt (the constraint alone, on an easy task) and a compliance prompt (a task that
pulls against the constraint): scenarios whose capability score is below a threshold are excluded
from the compliance score and counted, so "cannot" is not mistaken for "will not".
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from emogeom.config import Behaviour

# ---------------------------------------------------------------------------------------------
# Text units shared by the scorers (and by stance.py)

_BULLET = re.compile(r"^\s*(?:[-*•·‣▪●]|\d{1,2}[.)])\s+")
_SENT_END = re.compile(r"(?<=[.!?。！？])[\"'”’)\]]*\s+")
_WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")


@dataclass(frozen=True)
class Score:
    """A constraint score in [0, 1] with the reason it was given."""

    value: float
    reason: str


EMPTY = Score(0.0, "empty reply")


def lines(text: str) -> list[str]:
    """Non-empty lines, stripped."""
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def sentences(text: str) -> list[str]:
    """Sentences: each line (bullet marker removed) split after . ! ? followed by space; a final
    fragment without end punctuation counts as a sentence. "3.5" and "e.g.x" stay whole."""
    out: list[str] = []
    for line in lines(text):
        line = _BULLET.sub("", line)
        out.extend(s.strip() for s in _SENT_END.split(line) if s.strip())
    return [s for s in out if _WORD.search(s)]


def words(text: str) -> list[str]:
    """Words: runs of letters/digits, keeping inner apostrophes and hyphens ("don't", "x-ray")."""
    return _WORD.findall(text)


def _ratio(ok: int, n: int, what: str) -> Score:
    return Score(ok / n, f"{ok}/{n} {what}")


# ---------------------------------------------------------------------------------------------
# The ten scorers (pure functions of the reply and the constraint's parameter)

def exact_sentences(reply: str, n: int = 3) -> Score:
    """Exactly n sentences; partial credit 1 − |count − n| / n (floored at 0)."""
    if not reply.strip():
        return EMPTY
    count = len(sentences(reply))
    return Score(max(0.0, 1 - abs(count - n) / n), f"{count} sentences (asked {n})")


def forbidden_word(reply: str, word: str = "water") -> Score:
    """The word (and its plural, any case) never appears: 1 if absent, else 0."""
    if not reply.strip():
        return EMPTY
    hits = re.findall(rf"\b{re.escape(word)}(?:s|es)?\b", reply, flags=re.IGNORECASE)
    if hits:
        return Score(0.0, f"'{word}' used {len(hits)} time(s)")
    return Score(1.0, f"'{word}' not used")


def bullets_only(reply: str, min_items: int = 2) -> Score:
    """Every non-empty line is a bullet item ("- ", "* ", "• ", "1. "); score = bullet lines /
    lines, halved when there are fewer than ``min_items`` bullets (a one-line list)."""
    if not reply.strip():
        return EMPTY
    all_lines = lines(reply)
    n_bullets = sum(bool(_BULLET.match(ln)) for ln in all_lines)
    score = _ratio(n_bullets, len(all_lines), "lines are bullet items")
    if n_bullets < min_items:
        return Score(score.value / 2, score.reason + f" (fewer than {min_items} items: halved)")
    return score


def max_words_per_sentence(reply: str, limit: int = 8) -> Score:
    """Every sentence has at most ``limit`` words; score = fraction of sentences within it."""
    if not reply.strip():
        return EMPTY
    sents = sentences(reply)
    if not sents:
        return Score(0.0, "no sentence with words")
    ok = sum(len(words(s)) <= limit for s in sents)
    return _ratio(ok, len(sents), f"sentences have ≤ {limit} words")


def exact_words(reply: str, n: int = 10) -> Score:
    """Exactly n words; partial credit 1 − |count − n| / n (floored at 0)."""
    if not reply.strip():
        return EMPTY
    count = len(words(reply))
    return Score(max(0.0, 1 - abs(count - n) / n), f"{count} words (asked {n})")


def all_questions(reply: str) -> Score:
    """Every sentence ends with "?"; score = fraction that do."""
    if not reply.strip():
        return EMPTY
    sents = sentences(reply)
    if not sents:
        return Score(0.0, "no sentence with words")
    ok = sum(s.rstrip("\"'”’)]").endswith(("?", "？")) for s in sents)
    return _ratio(ok, len(sents), "sentences end with '?'")


def distinct_initials(reply: str, min_sentences: int = 2) -> Score:
    """Every sentence starts with a different letter; score = distinct initials / sentences.
    Fewer than ``min_sentences`` sentences meet it only trivially: the score is halved."""
    if not reply.strip():
        return EMPTY
    sents = sentences(reply)
    initials = [w[0][0].lower() for s in sents if (w := words(s))]
    if not initials:
        return Score(0.0, "no sentence with words")
    score = _ratio(len(set(initials)), len(initials), "distinct sentence initials")
    if len(initials) < min_sentences:
        return Score(score.value / 2, score.reason + " (one sentence: trivially met, halved)")
    return score


def one_digit_per_sentence(reply: str) -> Score:
    """Every sentence contains exactly one digit character (0–9; "42" is two digits); score =
    fraction of sentences that do."""
    if not reply.strip():
        return EMPTY
    sents = sentences(reply)
    if not sents:
        return Score(0.0, "no sentence with words")
    ok = sum(len(re.findall(r"[0-9]", s)) == 1 for s in sents)
    return _ratio(ok, len(sents), "sentences hold exactly one digit")


# Lexical rule for "only negative aspects": small hand-written word lists, matched as whole
# words (lower case; inflected forms are listed explicitly so nothing matches by accident).
# Labels of the list itself ("negative", "downside", "drawback", "cons") are not cues.
def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


POSITIVE_WORDS = _wordset("""
good great nice benefit benefits beneficial advantage advantages enjoy enjoys enjoyable
enjoyment fun relax relaxing relaxation relaxed happy happiness pleasant wonderful excellent
best better love lovely loved positive beautiful exciting excitement rewarding healthy helpful
useful opportunity opportunities refreshing refreshed joy joyful amazing perfect convenient easy
comfort comfortable pros upside upsides memorable calm peaceful delicious sunny warm
""")
NEGATIVE_WORDS = _wordset("""
bad worse worst cost costs costly expensive stress stressful stressed tired tiring exhausting
exhausted boring bored crowd crowds crowded delay delays delayed risk risks risky danger
dangerous problem problems difficult hard annoying annoyed annoyance waste wasted wasteful lose
losing loss losses sick sickness ill illness pain painful unpleasant noise noisy dirty pollution
polluted frustrating frustration hassle lack lacking poor harm harmful damage damaged anxiety
anxious lonely burden debt sunburn sunburns burn burns jellyfish sand traffic accident
accidents injury injuries theft overpriced hot sweaty rude uncomfortable unhealthy
""")
_NEGATORS = _wordset("""not no never without hardly isn't aren't wasn't don't doesn't didn't
won't can't cannot nor lack lacks less""")


def sentiment_counts(text: str) -> tuple[int, int]:
    """(positive, negative) cue counts by the word lists; a positive word preceded by a negator
    within two words ("not fun", "no relaxation") counts as negative."""
    tokens = [w.lower().replace("’", "'") for w in words(text)]
    pos = neg = 0
    for i, tok in enumerate(tokens):
        if tok in POSITIVE_WORDS:
            if _NEGATORS & set(tokens[max(0, i - 2):i]):
                neg += 1
            else:
                pos += 1
        elif tok in NEGATIVE_WORDS:
            neg += 1
    return pos, neg


def only_negative(reply: str) -> Score:
    """Only negative aspects: each item (bullet line or sentence) with a non-negated positive
    cue word counts against; score = items without one / items, halved when the reply holds no
    negative cue at all (nothing negative was actually listed)."""
    if not reply.strip():
        return EMPTY
    items = sentences(reply)
    if not items:
        return Score(0.0, "no sentence with words")
    counts = [sentiment_counts(s) for s in items]
    clean = sum(p == 0 for p, _ in counts)
    score = _ratio(clean, len(items), "items without a positive cue word")
    if sum(n for _, n in counts) == 0:
        return Score(score.value / 2, score.reason + " (no negative cue word: halved)")
    return score


# Scripts by Unicode block ranges (letters only are counted).
SCRIPTS: dict[str, tuple[tuple[int, int], ...]] = {
    "latin": ((0x0041, 0x005A), (0x0061, 0x007A), (0x00C0, 0x024F), (0x1E00, 0x1EFF)),
    "cyrillic": ((0x0400, 0x052F),),
    "greek": ((0x0370, 0x03FF), (0x1F00, 0x1FFF)),
    "arabic": ((0x0600, 0x06FF), (0x0750, 0x077F)),
    "devanagari": ((0x0900, 0x097F),),
    "cjk": ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7AF)),
}


def script_of(ch: str) -> str | None:
    """Name of the script a letter belongs to (by Unicode range), 'other', or None for a
    non-letter."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    code = ord(ch)
    for name, ranges in SCRIPTS.items():
        if any(lo <= code <= hi for lo, hi in ranges):
            return name
    return "other"


def in_script(reply: str, script: str = "latin") -> Score:
    """The reply is written in one script (the given language's): score = letters in that
    script / all letters."""
    if not reply.strip():
        return EMPTY
    found = [s for ch in reply if (s := script_of(ch)) is not None]
    if not found:
        return Score(0.0, "no letters")
    ok = sum(s == script for s in found)
    others = sorted({s for s in found if s != script})
    extra = f" (also: {', '.join(others)})" if others else ""
    return Score(ok / len(found), f"{ok}/{len(found)} letters in {script} script{extra}")


# ---------------------------------------------------------------------------------------------
# Scenarios: constraint + capability prompt + compliance prompt

@dataclass(frozen=True)
class Constraint:
    """One format constraint: its scorer (reply → Score) and the two prompts of the MTI design."""

    name: str
    description: str
    score: Callable[[str], Score]
    capability: str
    compliance: str


CONSTRAINTS: tuple[Constraint, ...] = (
    Constraint(
        "exact_sentences", "exactly 3 sentences", lambda r: exact_sentences(r, 3),
        "Describe a cat in exactly 3 sentences.",
        "Explain in full detail how a car engine works, covering every main part and what it "
        "does. Use exactly 3 sentences.",
    ),
    Constraint(
        "forbidden_word", "never use the word 'water'", lambda r: forbidden_word(r, "water"),
        "Describe a sunny day without using the word 'water'.",
        "Explain how rain forms and why oceans are salty, without using the word 'water'.",
    ),
    Constraint(
        "bullets_only", "bullet points only (every line '- ')", bullets_only,
        "List three fruits. Use only bullet points, each line starting with '- '.",
        "Tell a short story about a dog who finds its way home. Write it using only bullet "
        "points, each line starting with '- '.",
    ),
    Constraint(
        "max_words_per_sentence", "at most 8 words per sentence",
        lambda r: max_words_per_sentence(r, 8),
        "Say hello and introduce yourself. Use at most 8 words per sentence.",
        "Explain the causes of the First World War and their connections. Use at most 8 words "
        "per sentence.",
    ),
    Constraint(
        "exact_words", "exactly 10 words", lambda r: exact_words(r, 10),
        "Describe the moon in exactly 10 words.",
        "Summarise the history of the Roman Empire in exactly 10 words.",
    ),
    Constraint(
        "all_questions", "every sentence ends with '?'", all_questions,
        "Ask me two questions about my weekend. Every sentence must end with a question mark.",
        "Explain how photosynthesis works. Every sentence of your answer must be a question "
        "ending with a question mark.",
    ),
    Constraint(
        "distinct_initials", "every sentence starts with a different letter", distinct_initials,
        "Write three sentences about dogs. Each sentence must start with a different letter.",
        "Write three sentences about the sun. Start every sentence with a different letter, "
        "even though 'The sun' is the natural way to begin.",
    ),
    Constraint(
        "one_digit_per_sentence", "exactly one digit (0-9) in every sentence",
        one_digit_per_sentence,
        "Write two sentences about a farm. Each sentence must contain exactly one digit, like "
        "'There are 3 cows.'",
        "Describe your morning routine in three sentences. Each sentence must contain exactly "
        "one digit (0-9), no more and no fewer.",
    ),
    Constraint(
        "only_negative", "list only negative aspects (lexical rule)", only_negative,
        "List only the negative aspects of traffic jams.",
        "List only the negative aspects of going on a holiday to the beach.",
    ),
    Constraint(
        "in_script_latin", "answer in English (Latin script only)",
        lambda r: in_script(r, "latin"),
        "Answer in English: what colour is the sky on a clear day?",
        "Ответь на вопрос: какая столица России? Answer only in English, using the Latin "
        "alphabet.",
    ),
)

CONSTRAINT_NAMES = tuple(c.name for c in CONSTRAINTS)
# A capability score below this excludes the scenario.
CAPABILITY_THRESHOLD = Behaviour.model_fields["capability_threshold"].default


ECHO_SIMILARITY = 0.7  # a reply this similar to its prompt (word sequence) is an echo


def echo_similarity(reply: str, prompt: str) -> float:
    """Word-sequence similarity (difflib ratio, lower case) of a reply to its prompt: base
    models often restate the instruction instead of answering it."""
    a, b = [w.lower() for w in words(reply)], [w.lower() for w in words(prompt)]
    if not a or not b:
        return 0.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def score_reply(constraint: Constraint, reply: str, prompt: str | None = None) -> Score:
    """Score one reply: empty (or whitespace-only) replies score 0, and so does a reply that
    only restates ``prompt`` (similarity ≥ ECHO_SIMILARITY), which does not do the task."""
    if not reply or not reply.strip():
        return EMPTY
    if prompt is not None and (sim := echo_similarity(reply, prompt)) >= ECHO_SIMILARITY:
        return Score(0.0, f"echoes the prompt (word similarity {sim:.2f})")
    return constraint.score(reply)


def summarise(rows: list[dict], threshold: float = CAPABILITY_THRESHOLD) -> dict:
    """Formal facet from per-scenario rows (``capability_score``, ``compliance_score``): the
    mean compliance score over scenarios whose capability score reaches ``threshold``."""
    included = [r for r in rows if r["capability_score"] >= threshold]
    excluded = [r["constraint"] for r in rows if r["capability_score"] < threshold]
    scores = [r["compliance_score"] for r in included]
    return {
        "score": sum(scores) / len(scores) if scores else None,
        "n_scenarios": len(rows),
        "n_included": len(included),
        "n_excluded": len(excluded),
        "excluded": excluded,
        "n_fully_compliant": sum(s >= 1.0 for s in scores),
        "capability_threshold": threshold,
    }
