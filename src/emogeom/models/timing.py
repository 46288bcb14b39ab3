"""How long long work will take: a short timed warm-up of this model on this device, and a pure
function from a work description to seconds.

``warm_up(lm, prompts)`` generates a few tokens for one batch of the command's own prompts (the
batch size the command will use) and times it: seconds per decoding step of that batch and
seconds per prompt token of a forward pass (prefill; reading texts back costs about the same
per token). ``estimate(work, rate)`` turns a ``Work`` (generations, new tokens each, batch
size, tokens to read) into an ``Estimate`` whose ``line()`` is the one line a command prints
before its long work. Generations are counted at their full ``max_new_tokens`` (a row that
stops early still waits for its batch), so the estimate leans long when texts end early.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from emogeom.models.loading import LoadedModel, input_device

WARMUP_TOKENS = 8
LONG_ON_CPU_S = 30 * 60  # above this on a CPU the estimate line names the flags that shrink it


@dataclass(frozen=True)
class Rate:
    """What the warm-up measured on one device."""

    device: str
    batch: int  # rows generated together in the warm-up
    step_s: float  # seconds per decoding step of the whole batch
    token_s: float  # seconds per prompt token of a forward pass (prefill, reading back)
    warmup_tokens: int


@dataclass(frozen=True)
class Work:
    """One kind of work: ``generations`` texts of up to ``new_tokens`` each, ``batch`` at a
    time after prompts of ``prompt_tokens`` (mean), plus ``read_tokens`` read by forward
    passes alone (reading texts back, reading a corpus)."""

    generations: int = 0
    new_tokens: int = 0
    batch: int = 1
    prompt_tokens: int = 0
    read_tokens: int = 0


@dataclass(frozen=True)
class Estimate:
    """An estimated duration: ``what`` will be done, ``seconds`` it should take on ``device``,
    ``basis`` (what the figure comes from) and ``hints`` (flags that shrink the work)."""

    what: str
    seconds: float
    device: str
    basis: str
    hints: tuple[str, ...] = field(default_factory=tuple)

    @property
    def long_on_cpu(self) -> bool:
        return self.device == "cpu" and self.seconds > LONG_ON_CPU_S

    def line(self) -> str:
        """``estimate: <what> on <device> ≈ <time> (<basis>; an estimate)``, and on a CPU over
        30 minutes the flags that shrink it."""
        text = (f"estimate: {self.what} on {self.device} ≈ {duration(self.seconds)} "
                f"({self.basis}; an estimate)")
        if self.long_on_cpu and self.hints:
            text += f"; over 30 min on a CPU: shrink it with {', '.join(self.hints)}"
        return text


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.4 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def device_kind(lm: LoadedModel) -> str:
    """``cpu``, ``cuda`` or ``mps``: where the model's inputs go."""
    return input_device(lm.model).type


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    elif device == "mps" and hasattr(torch, "mps"):
        torch.mps.synchronize()


def warm_up(lm: LoadedModel, prompts: Sequence[Sequence[int]],
            new_tokens: int = WARMUP_TOKENS) -> Rate:
    """Time ``new_tokens`` forced new tokens (greedy, no early stop) for one batch of
    ``prompts`` after an untimed one-token call, and a one-token call: their difference is
    ``new_tokens - 1`` decoding steps, the rest of the one-token call is the prefill."""
    from emogeom.models.generate import generate_ids

    device = device_kind(lm)
    batch = [list(p) for p in prompts]

    def timed(n: int) -> float:
        _sync(device)
        start = time.perf_counter()
        generate_ids(lm, batch, 0, n, min_new_tokens=n)
        _sync(device)
        return time.perf_counter() - start

    timed(1)  # first call: lazy initialisation, caches
    one = timed(1)
    many = timed(max(new_tokens, 2))
    step = max(many - one, 1e-6) / (max(new_tokens, 2) - 1)
    n_prompt = sum(len(p) for p in batch)
    token = max(one - step, 1e-6) / max(n_prompt, 1)
    return Rate(device, len(batch), step, token, max(new_tokens, 2))


def seconds(work: Work, rate: Rate) -> float:
    """Estimated seconds of ``work`` at ``rate``: per batch, the prefill of its prompts and
    ``new_tokens`` decoding steps (a step's cost taken as proportional to the rows in the
    batch, from the warm-up batch's), plus the tokens read."""
    total = 0.0
    if work.generations > 0:
        batch = max(1, min(work.batch, work.generations))
        full, rest = divmod(work.generations, batch)
        sizes = [batch] * full + ([rest] if rest else [])
        for rows in sizes:
            step = rate.step_s * rows / rate.batch
            total += rows * work.prompt_tokens * rate.token_s + work.new_tokens * step
    total += work.read_tokens * rate.token_s
    return total


def estimate(what: str, works: Sequence[Work], rate: Rate, hints: Sequence[str] = (),
             note: str = "") -> Estimate:
    """The Estimate of several pieces of work at one measured rate; ``note`` is added to the
    basis (e.g. what was not timed)."""
    total = sum(seconds(w, rate) for w in works)
    basis = f"from a {rate.warmup_tokens}-token warm-up of a batch of {rate.batch}"
    if note:
        basis += f"; {note}"
    return Estimate(what, total if math.isfinite(total) else float("inf"), rate.device, basis,
                    tuple(hints))


def text_tokens(tokenizer, texts: Sequence[str]) -> int:
    """Tokens of ``texts`` as ``tokenizer`` splits them (what reading them costs)."""
    texts = list(texts)
    return sum(len(ids) for ids in tokenizer(texts)["input_ids"]) if texts else 0


def count(n: int) -> str:
    """``1,050``."""
    return f"{n:,}"
