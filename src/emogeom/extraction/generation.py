"""Generation mode: the model writes text per emotion, and its vectors come from its own text.

For every emotion (and the neutral condition) the model answers prompt templates; the prompt
plus the generated tokens are then run through the model once more and the block outputs are
pooled over the generated span only (never the prompt): its last token, its middle token, or
the mean over it. Vectors are the per-emotion mean minus a baseline (the mean over emotions or
the neutral-story mean), optionally unit-normalised, at a chosen layer.

Greedy decoding of one prompt always gives the same story, so "stories" differ by a story topic
slotted into the template (``TOPICS``): story k of a template uses topic k.

A prompt sent without chat template gets ``raw_suffix`` (a newline) appended: SmolLM2-Instruct
answers a bare instruction ending in "." with end-of-turn at once, and writes after a newline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from emogeom.config import Generation, generation
from emogeom.emotions import EMOTIONS, NEUTRAL
from emogeom.errors import EmogeomError
from emogeom.extraction.batching import pad_batch
from emogeom.extraction.pooled import decoder_layers, pool_sequences
from emogeom.geometry.vectors import BASELINES, class_means, vectors_from_means
from emogeom.models.generate import encode, generate_ids, prompt_text
from emogeom.models.loading import LoadedModel, pad_token_id
from emogeom.models.timing import Work

TOKEN_POSITIONS = ("last", "middle", "mean")

# (emotion form, neutral form): {emotion} is the emotion word, {topic} the story's setting.
TEMPLATES: tuple[tuple[str, str], ...] = (
    ("Write a short story about a character who feels {emotion}, set {topic}.",
     "Write a short, neutral and factual story about a character, set {topic}. Describe the "
     "events plainly, without emotion."),
    ("Tell a brief story in which someone is {emotion}. It takes place {topic}.",
     "Tell a brief, matter-of-fact story in which someone does an ordinary task. It takes "
     "place {topic}. Keep the tone neutral."),
    ("Write a few sentences of fiction showing a person feeling {emotion} {topic}.",
     "Write a few sentences of fiction plainly describing what a person does {topic}, with "
     "no feelings expressed."),
    ("Describe a moment {topic} from the point of view of someone who is {emotion}.",
     "Describe a moment {topic} as a neutral, factual report of what happens."),
    ("Write a first-person story about a time you felt {emotion} {topic}.",
     "Write a first-person, factual account of an ordinary day {topic}, with no strong "
     "feelings."),
    ("Write a short scene where a character's {emotion} mood shows in what they do {topic}.",
     "Write a short scene where a character carries out a routine task {topic}, told "
     "neutrally."),
    ("Write a paragraph of a novel in which the narrator is {emotion}, set {topic}.",
     "Write a paragraph of a novel in which the narrator calmly lists what is around them, "
     "set {topic}, in a neutral tone."),
    ("Write a story of a few sentences about a {emotion} person {topic}.",
     "Write a story of a few sentences about a person {topic}, told in a flat, factual way."),
    ("Imagine someone {topic} who feels {emotion}. Write what happens to them.",
     "Imagine someone {topic} on an uneventful day. Write what happens, neutrally."),
    ("Write a short story showing, not telling, that the main character is {emotion}; set "
     "it {topic}.",
     "Write a short story in which nothing remarkable happens to the main character; set it "
     "{topic} and keep it factual."),
)
TOPICS: tuple[str, ...] = (
    "at a train station", "in a hospital waiting room", "in a small kitchen", "at the office",
    "on a beach", "in a school classroom", "at a street market", "during a rainstorm",
    "on a mountain trail", "at a family dinner", "in a public library", "at an airport",
)


def gen_preset(name: str, **overrides: Any) -> Generation:
    """A generation preset (``config.GEN_PRESETS``) with non-None ``overrides`` on top,
    checked."""
    return check_protocol(generation(name, **overrides))


def check_protocol(p: Generation) -> Generation:
    """One-line errors for settings the fields alone do not rule out; returns ``p``."""
    if p.position not in TOKEN_POSITIONS:
        raise EmogeomError(f"unknown token position '{p.position}' (use one of: "
                           f"{', '.join(TOKEN_POSITIONS)})")
    if p.baseline not in BASELINES:
        raise EmogeomError(f"unknown baseline '{p.baseline}' (use one of: {', '.join(BASELINES)})")
    if p.template_offset + p.n_templates > len(TEMPLATES):
        raise EmogeomError(f"templates {p.template_offset}..{p.template_offset + p.n_templates - 1}"
                           f" do not exist: there are {len(TEMPLATES)} (use --templates ≤ "
                           f"{len(TEMPLATES) - p.template_offset})")
    if p.greedy and p.stories > len(TOPICS):
        raise EmogeomError(f"greedy decoding with {p.stories} stories per template repeats "
                           f"stories (only {len(TOPICS)} topics): use ≤ {len(TOPICS)} or sample")
    parse_layer_rule(p.layer)
    return p


def parse_layer_rule(rule: str) -> tuple[str, float | int | None]:
    """("fraction", f) | ("best-comprehension", None) | ("fixed", i) from a layer rule."""
    if rule == "best-comprehension":
        return rule, None
    if rule.startswith("fraction:"):
        try:
            f = float(rule.split(":", 1)[1])
        except ValueError:
            f = -1.0
        if 0 <= f <= 1:
            return "fraction", f
    elif rule.lstrip("-").isdigit():
        return "fixed", int(rule)
    raise EmogeomError(f"unknown layer rule '{rule}' (use fraction:<0..1>, best-comprehension "
                       "or a layer index)")


def resolve_layer(rule: str, n_layers: int, comprehension_best: int | None = None) -> int:
    """The layer index a rule picks; ``fraction:0.5`` is layer n/2 (int(0.5·n))."""
    kind, value = parse_layer_rule(rule)
    if kind == "best-comprehension":
        if comprehension_best is None:
            raise EmogeomError("layer 'best-comprehension' needs a comprehension run first "
                               "(decompose does it; elsewhere give fraction:<f> or an index)")
        layer = comprehension_best
    elif kind == "fraction":
        layer = min(int(value * n_layers), n_layers - 1)
    else:
        layer = int(value)
    if not 0 <= layer < n_layers:
        raise EmogeomError(f"layer {layer} outside 0..{n_layers - 1}")
    return layer


@dataclass(frozen=True)
class Sample:
    """One generation request: which emotion, template and story topic."""

    id: str
    emotion: str
    template: int
    story: int
    topic: str
    prompt: str


def build_samples(p: Generation, emotions: Sequence[str] = EMOTIONS) -> list[Sample]:
    """All prompts of a protocol, emotion-major; the neutral condition uses neutral forms."""
    unknown = [e for e in emotions if e not in EMOTIONS]
    if unknown:
        raise EmogeomError(f"unknown emotion(s) {unknown} (use: {', '.join(EMOTIONS)})")
    out = []
    for e in emotions:
        for t in range(p.template_offset, p.template_offset + p.n_templates):
            emotion_form, neutral_form = TEMPLATES[t]
            for s in range(p.stories):
                topic = TOPICS[s % len(TOPICS)]
                text = (neutral_form.format(topic=topic) if e == NEUTRAL
                        else emotion_form.format(emotion=e, topic=topic))
                out.append(Sample(f"{e}-t{t}-s{s}", e, t, s, topic, text))
    return out


def _stop_ids(lm: LoadedModel) -> set[int]:
    """Token ids that end a generation: eos ids of the generation config and tokenizer, pad."""
    ids: set[int] = {pad_token_id(lm.tokenizer, lm.model)}
    for v in (getattr(lm.model.generation_config, "eos_token_id", None),
              lm.tokenizer.eos_token_id):
        if isinstance(v, int):
            ids.add(v)
        elif v is not None:
            ids.update(int(x) for x in v)
    return ids


def sample_input(tokenizer: Any, sample: Sample, p: Generation) -> tuple[str, list[int]]:
    """(text sent, its token ids) of one sample's prompt under protocol ``p``."""
    text, templated = prompt_text(tokenizer, sample.prompt, p.chat_template)
    text = text if templated else text + p.raw_suffix
    return text, encode(tokenizer, text, templated)


def generation_work(lm: LoadedModel, p: Generation, emotions: Sequence[str] = EMOTIONS
                    ) -> tuple[Work, list[list[int]]]:
    """What ``run_generation(lm, p, emotions)`` will do, for an estimate: a ``Work`` (its
    generations, new tokens, batch, mean prompt length, tokens read back at full length) and
    the first batch's prompt ids (for ``models.timing.warm_up``)."""
    prompts = [sample_input(lm.tokenizer, s, p)[1] for s in build_samples(p, emotions)]
    mean = round(sum(len(x) for x in prompts) / max(len(prompts), 1))
    work = Work(len(prompts), p.max_new_tokens, p.max_batch, mean,
                len(prompts) * (mean + p.max_new_tokens))
    return work, prompts[:p.max_batch]


def generate_samples(
    lm: LoadedModel, samples: Sequence[Sample], p: Generation,
    on_batch: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Generate every sample in left-padded batches of ``p.max_batch``; batch b is seeded with
    ``p.seed + b``, so the same protocol and seed give the same texts. Each record keeps the
    prompt and generated token ids (cut at the first stop token) and the decoded text."""
    tok = lm.tokenizer
    stops = _stop_ids(lm)
    records = []
    for b, start in enumerate(range(0, len(samples), p.max_batch)):
        chunk = samples[start:start + p.max_batch]
        inputs, prompts = map(list, zip(*(sample_input(tok, s, p) for s in chunk)))
        rows = generate_ids(lm, prompts, p.seed + b, p.max_new_tokens, p.temperature, p.top_p)
        for s, text_in, prompt_ids, row in zip(chunk, inputs, prompts, rows):
            cut = next((i for i, t in enumerate(row) if t in stops), len(row))
            gen = row[:cut]
            records.append({**asdict(s), "chat_template": p.chat_template, "input": text_in,
                            "text": tok.decode(gen, skip_special_tokens=True),
                            "n_prompt_tokens": len(prompt_ids), "n_generated": len(gen),
                            "stopped": cut < len(row), "prompt_ids": prompt_ids,
                            "generated_ids": gen})
        if on_batch is not None:
            on_batch(len(chunk))
    return records


def span_weights(lengths: Sequence[int], starts: Sequence[int], ends: Sequence[int],
                 width: int) -> torch.Tensor:
    """[3, B, width] pooling weights (last, middle, mean — the order of TOKEN_POSITIONS) over
    each row's generated span [start, end) of a right-padded batch."""
    w = torch.zeros((len(TOKEN_POSITIONS), len(starts), width))
    for row, (n, a, z) in enumerate(zip(lengths, starts, ends)):
        if not 0 <= a < z <= n:
            raise EmogeomError(f"empty or invalid generated span [{a}, {z}) of a {n}-token text")
        w[0, row, z - 1] = 1.0
        w[1, row, a + (z - a) // 2] = 1.0
        w[2, row, a:z] = 1.0 / (z - a)
    return w


def extract_generated(
    model: torch.nn.Module, pad_id: int, sequences: Sequence[Sequence[int]],
    starts: Sequence[int], max_batch_tokens: int = 8192,
    on_batch: Callable[[int], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    stats: dict | None = None,
) -> dict[str, np.ndarray]:
    """Block outputs of every layer pooled over each sequence's generated part
    (``starts[i]`` to its end): {position: float32 [L, N, d]} for all three token positions,
    from one forward pass per batch (same hooks and layer definition as ``extract_pooled``)."""
    n_layers = len(decoder_layers(model))
    d = model.config.get_text_config().hidden_size
    out = np.zeros((len(TOKEN_POSITIONS), n_layers, len(sequences), d), dtype=np.float32)

    def make_batch(batch: list[int]):
        seqs = [list(sequences[i]) for i in batch]
        input_ids, mask, positions = pad_batch(seqs, pad_id, "right")
        return (input_ids, mask, positions,
                span_weights([len(s) for s in seqs], [starts[i] for i in batch],
                             [len(s) for s in seqs], input_ids.shape[1]))

    def store(layer: int, rows: np.ndarray, pooled: np.ndarray) -> None:
        out[:, layer, rows] = pooled

    pool_sequences(model, range(n_layers), [len(s) for s in sequences], make_batch, store,
                   max_batch_tokens, on_batch, on_note, stats)
    return {pos: out[k] for k, pos in enumerate(TOKEN_POSITIONS)}


@dataclass
class GenerationRun:
    """What a generation-mode extraction produced: texts, pooled states, sample labels."""

    protocol: Generation
    records: list[dict[str, Any]]
    states: dict[str, np.ndarray]  # position → [L, N, d] over kept samples
    labels: list[str]
    ids: list[str]
    conditions: list[str]
    dropped: list[str] = field(default_factory=list)  # samples with no generated token

    def vectors(self, layer: int, position: str | None = None, baseline: str | None = None,
                unit_norm: bool | None = None) -> tuple[np.ndarray, list[str]]:
        """Emotion vectors [E', d] at ``layer`` (protocol's position/baseline unless given)."""
        p = self.protocol
        position = position or p.position
        if position not in TOKEN_POSITIONS:
            raise EmogeomError(f"unknown token position '{position}' (use one of: "
                               f"{', '.join(TOKEN_POSITIONS)})")
        means = class_means(self.states[position][layer], self.labels, self.conditions)
        return vectors_from_means(means, self.conditions, baseline or p.baseline,
                                  p.unit_norm if unit_norm is None else unit_norm)


def run_generation(
    lm: LoadedModel, p: Generation, emotions: Sequence[str] = EMOTIONS,
    on_generated: Callable[[int], None] | None = None,
    on_extracted: Callable[[int], None] | None = None,
    max_batch_tokens: int = 8192,
) -> GenerationRun:
    """Generate every sample of ``p`` and pool its generated span at every layer. Samples whose
    generation is empty are dropped (and listed); an emotion left with none is an error."""
    check_protocol(p)
    samples = build_samples(p, emotions)
    records = generate_samples(lm, samples, p, on_generated)
    kept = [r for r in records if r["n_generated"] > 0]
    dropped = [r["id"] for r in records if r["n_generated"] == 0]
    missing = sorted({r["emotion"] for r in records} - {r["emotion"] for r in kept})
    if missing:
        raise EmogeomError(f"the model wrote nothing for {missing} (it stopped at once): "
                           "try the chat template on/off or other templates")
    states = extract_generated(
        lm.model, pad_token_id(lm.tokenizer, lm.model),
        [r["prompt_ids"] + r["generated_ids"] for r in kept],
        [r["n_prompt_tokens"] for r in kept], max_batch_tokens, on_extracted)
    return GenerationRun(p, records, states, [r["emotion"] for r in kept],
                         [r["id"] for r in kept], list(emotions), dropped)
