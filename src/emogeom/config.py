"""One configuration family (pydantic) for everything that determines emogeom's numbers.

Every default lives once, here, as a field default; presets are data (``PRESETS``: the fields
a preset changes); every CLI flag and every keyword of ``emogeom.extract`` names one field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from emogeom.errors import EmogeomError

PRECISIONS = ("fp32", "bf16", "fp16", "int8", "int4")
POOLINGS = ("last", "mean")
LAYER_CRITERIA = ("reliability", "reference", "general")
METHODS = ("spearman", "pearson", "kendall", "cosine")
EMBEDDED_DEFAULT = ("smollm2-135m-instruct", "gemma3-270m")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Extraction(_Section):
    """How pooled residual states are read from a model."""

    dtype: Literal["fp32", "bf16", "fp16", "int8", "int4"] = "fp32"
    pooling: Literal["last", "mean"] = "mean"
    mean_start: int = Field(1, ge=0, description="mean pooling skips the first k tokens")
    max_batch_tokens: int = Field(8192, ge=1, description="padded tokens per forward batch")
    per_emotion: int | None = Field(None, ge=2, description="first N texts per emotion "
                                       "(with styles: the first of each style in turn)")
    n_neutral: int | None = Field(None, ge=2, description="first N neutral sentences")
    chat_template: Literal["raw", "chat"] = Field(
        "raw", description="raw: stories as plain text; chat: each story as a user message")
    truncate: bool = Field(False, description="cut texts longer than the model's context to "
                                              "its first tokens (default: refuse them)")


class Analysis(_Section):
    """How one model's states become its geometry."""

    denoise: float = Field(0.5, ge=0, lt=1, description="neutral-PC variance fraction; 0 = off")
    layer_criterion: Literal["reliability", "reference", "general"] = "reliability"
    splits: int = Field(10, ge=1, description="split-halves for reliability: the corpus's "
                                              "fixed halves, then seeded random ones")


class Statistics(_Section):
    """How two geometries are compared (the same for every pair)."""

    method: Literal["spearman", "pearson", "kendall", "cosine"] = "spearman"
    permutations: int = Field(10_000, ge=1)
    bootstrap: int = Field(1000, ge=1)
    ci_level: float = Field(0.95, gt=0, lt=1)
    seed: int = Field(0, ge=0)


class Settings(_Section):
    """Everything that determines one geometry's numbers: a preset plus overrides."""

    preset: str = "default"
    extraction: Extraction = Field(default_factory=Extraction)
    analysis: Analysis = Field(default_factory=Analysis)
    statistics: Statistics = Field(default_factory=Statistics)
    steering: bool = Field(False, description="also steer along the best-layer vectors")
    steering_tokens: int = Field(40, ge=1)
    behaviour: bool = Field(False, description="also probe MTI Compliance behaviour")
    behaviour_tokens: int = Field(64, ge=1)
    trust_remote_code: bool = False


# Presets: which fields they change from the defaults above (data, nothing else).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # Recommended: the full corpus, mean pooling from token 1, neutral-PC projection, layer
    # chosen by split-half reliability (all field defaults).
    "default": {},
    # arXiv 2604.11050: 3 passages per emotion, raw text, last token, no denoising, best layer
    # = argmin mean pairwise cosine, anisotropy over 20 neutral sentences.
    "paper": {"extraction": {"per_emotion": 3, "pooling": "last", "n_neutral": 20},
              "analysis": {"denoise": 0.0, "layer_criterion": "reference"}},
}

# Which section each flat option (CLI flag, ``extract`` keyword) belongs to.
SECTIONS = {name: section for section, cls in
            (("extraction", Extraction), ("analysis", Analysis), ("statistics", Statistics))
            for name in cls.model_fields}


def _one_line(exc: ValidationError, where: str = "") -> EmogeomError:
    first = exc.errors()[0]
    loc = ".".join(str(k) for k in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    return EmogeomError(f"{where}{loc}: {msg} (got {first.get('input')!r})")


def split_flat(options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{pooling: 'last', seed: 1}`` → ``{extraction: {pooling: ...}, statistics: {...}}``;
    None values are dropped (they mean "the preset's value"); unknown names are refused."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in options.items():
        if value is None:
            continue
        if name not in SECTIONS:
            raise EmogeomError(f"unknown setting '{name}' (known: {', '.join(sorted(SECTIONS))})")
        out.setdefault(SECTIONS[name], {})[name] = value
    return out


def make_settings(preset: str = "default", sections: dict[str, dict[str, Any]] | None = None,
                  **flat: Any) -> Settings:
    """Settings of a named preset with section overrides and flat overrides on top; one-line
    errors for unknown presets, names or bad values."""
    if preset not in PRESETS:
        raise EmogeomError(f"unknown preset '{preset}' (use one of: {', '.join(PRESETS)})")
    top = {k: flat.pop(k) for k in list(flat) if k in Settings.model_fields}
    merged: dict[str, Any] = {"preset": preset, **top}
    layers = [PRESETS[preset], sections or {}, split_flat(flat)]
    for name in ("extraction", "analysis", "statistics"):
        merged[name] = {k: v for layer in layers for k, v in layer.get(name, {}).items()}
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise _one_line(exc) from None


def settings_key(s: Settings) -> dict[str, Any]:
    """The part of the settings that changes a job's stored numbers (not the comparison
    method, bootstrap or CI level, which act only across jobs)."""
    ext = s.extraction.model_dump()
    if not ext["truncate"]:  # off reads exactly as before the option existed: same job hashes
        del ext["truncate"]
    return {"preset": s.preset, "extraction": ext, "analysis": s.analysis.model_dump(),
            "permutations": s.statistics.permutations, "seed": s.statistics.seed,
            "steering": s.steering, "steering_tokens": s.steering_tokens,
            "behaviour": s.behaviour, "behaviour_tokens": s.behaviour_tokens,
            "trust_remote_code": s.trust_remote_code}


# ---- studies ---------------------------------------------------------------------------------


class ModelEntry(_Section):
    """One model of a study: where it comes from and how it is labelled and read."""

    id: str = Field(min_length=1, description="embedded name, local folder, .gguf file or hub id")
    label: str | None = Field(None, description="short unique name in tables; default from id")
    revision: str | None = Field(None, description="hub branch, tag or commit (pin a commit)")
    family: str | None = None
    variant: Literal["base", "instruct"] | None = None
    chat_template: Literal["raw", "chat"] = Field(
        "raw", description="raw: stories as plain text; chat: each story as a user message")
    trust_remote_code: bool = False
    device: str | None = Field(None, description="auto | cpu | cuda | cuda:N | mps; "
                                                 "None: the study's device")

    @property
    def name(self) -> str:
        """The label, or the last part of the id without a .gguf suffix."""
        if self.label:
            return self.label
        return self.id.rstrip("/").split("/")[-1].removesuffix(".gguf")


class Executor(_Section):
    """Where jobs run: here (one after another, or ``jobs`` processes) or as Ray tasks."""

    kind: Literal["local", "ray"] = "local"
    address: str | None = Field(None, description="Ray cluster address; none starts one here")
    jobs: int = Field(1, ge=1, description="jobs at once")
    num_gpus: float = Field(0, ge=0, allow_inf_nan=False, description="GPUs per Ray task")
    num_cpus: float = Field(1, gt=0, allow_inf_nan=False, description="CPUs per Ray task")


class StudySpec(_Section):
    """A whole study: models, the factors crossed with them, settings, output folder."""

    name: str = Field(min_length=1)
    description: str | None = None
    out: str | None = Field(None, description="output folder; default out/<name>")
    models: list[ModelEntry] = Field(min_length=1)
    precisions: list[str] = Field(default_factory=lambda: ["fp32"], min_length=1)
    presets: list[str] = Field(default_factory=lambda: ["default"], min_length=1)
    corpus: str | None = Field(None, description="story corpus; default the shipped one")
    corpus_columns: dict[str, str] | str | None = Field(
        None, description="the corpus file's column names, e.g. {text: passage, emotion: label}")
    neutral: str | None = None
    extraction: dict[str, Any] = Field(default_factory=dict,
                                       description="Extraction fields over every preset")
    analysis: dict[str, Any] = Field(default_factory=dict,
                                     description="Analysis fields over every preset")
    steering: bool = Field(False, description="add each model's steering regime")
    behaviour: bool = Field(False, description="add each model's MTI Compliance profile")
    device: str = Field("auto", description="auto (CUDA, else MPS, else CPU) | cpu | cuda | "
                                            "cuda:N | mps; a model's own device wins")
    max_memory: dict[int | str, str] | None = Field(
        None, description="per-device memory caps for device_map='auto', e.g. {0: '20GiB'}")
    statistics: Statistics = Field(default_factory=Statistics)
    executor: Executor = Field(default_factory=Executor)

    @field_validator("precisions", "presets")
    @classmethod
    def _known(cls, value: list[str], info) -> list[str]:
        known = PRECISIONS if info.field_name == "precisions" else tuple(PRESETS)
        what = info.field_name.removesuffix("s")
        bad = [p for p in value if p not in known]
        if bad:
            raise ValueError(f"unknown {what} {bad[0]!r} (use: {', '.join(known)})")
        if len(set(value)) != len(value):
            raise ValueError(f"a {what} is listed twice")
        return value

    @field_validator("extraction", "analysis")
    @classmethod
    def _fields(cls, value: dict[str, Any], info) -> dict[str, Any]:
        model = Extraction if info.field_name == "extraction" else Analysis
        if info.field_name == "extraction" and "dtype" in value:
            raise ValueError("set the dtype with 'precisions', not extraction.dtype")
        if info.field_name == "extraction" and "chat_template" in value:
            raise ValueError("set chat_template per model (models[i].chat_template), not in "
                             "extraction")
        model.model_validate(value)  # names and types; pydantic's message names the field
        return value

    @model_validator(mode="after")
    def _unique_labels(self) -> StudySpec:
        names = [m.name for m in self.models]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"two models share the label {dup[0]!r}; give each a distinct "
                             "'label'")
        return self

    @property
    def out_dir(self) -> Path:
        return Path(self.out or f"out/{self.name}")

    def settings(self, preset: str, precision: str, entry: ModelEntry) -> Settings:
        """The settings of one job: the preset, the study's overrides, its precision."""
        return make_settings(
            preset, {"extraction": {**self.extraction, "dtype": precision,
                                    "chat_template": entry.chat_template},
                     "analysis": self.analysis,
                     "statistics": self.statistics.model_dump()},
            steering=self.steering,
            # Behaviour depends on the model and precision, not the preset: probe it once.
            behaviour=self.behaviour and preset == self.presets[0],
            trust_remote_code=entry.trust_remote_code)


# ---- generation, steering, behaviour ----------------------------------------------------------


def checked(cls: type[_Section], values: dict[str, Any], where: str = "") -> Any:
    """``cls`` built from ``values``; a bad or unknown field is a one-line EmogeomError."""
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        raise _one_line(exc, where) from None


class Generation(_Section):
    """Every sub-parameter of a generation-mode extraction (recorded in manifests). Position,
    baseline, layer rule and template range are checked by ``extract.generation``."""

    n_templates: int = Field(5, ge=1, description="prompt templates used")
    stories: int = Field(10, ge=1, description="stories per template and emotion")
    chat_template: bool = True
    temperature: float = Field(0.0, ge=0, allow_inf_nan=False, description="0 = greedy")
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(256, ge=1)
    seed: int = Field(0, ge=0)
    position: str = Field("middle", description="last | middle | mean over the generated span")
    layer: str = Field("fraction:0.5", description="fraction:<f> (layer int(f·n)) | "
                                                   "best-comprehension | <int>")
    baseline: str = Field("neutral", description="neutral (neutral-story mean) | emotion-mean")
    unit_norm: bool = True
    template_offset: int = Field(0, ge=0, description="first template used")
    max_batch: int = Field(24, ge=1, description="prompts generated together")
    raw_suffix: str = Field("\n", description="appended to a prompt sent without chat template")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


# Generation presets: the fields they change from the defaults above.
GEN_PRESETS: dict[str, dict[str, Any]] = {
    # arXiv 2604.04064: 5 templates x 10 stories, chat template, greedy, 256 tokens, the middle
    # generated token, layer n/2, emotion mean minus neutral mean, unit norm.
    "gen-reference": {},
    # One sampled story per emotion from the raw prompt, last token, best comprehension layer,
    # emotion mean minus the mean over emotions.
    "gen-loose": {"n_templates": 1, "stories": 1, "chat_template": False, "temperature": 0.7,
                  "top_p": 0.9, "max_new_tokens": 100, "position": "last",
                  "layer": "best-comprehension", "baseline": "emotion-mean",
                  "unit_norm": False},
}


# Run profiles of `decompose` and `sensitivity`: the sizes they use where no flag is given
# (flags win). full: the paper-sized run (the presets' own values, 10,000 permutations, 1,000
# bootstrap samples), sized for a GPU; quick: CPU-sized (SmolLM2-135M's decompose in under 10
# minutes on 2 cores), every table row and its bootstrap CI still computed. The default is full
# on CUDA or MPS and quick on a CPU.
PROFILES: dict[str, dict[str, int | None]] = {
    "full": {},
    "quick": {"templates": 2, "samples": 3, "max_new_tokens": 48, "loose_samples": 1,
              "loose_max_new_tokens": 48, "per_emotion": 10, "permutations": 2000,
              "bootstrap": 200},
}


def run_profile(name: str | None, device: str) -> tuple[str, str]:
    """(profile, why) for a resolved ``device``: the one asked for, else full on CUDA/MPS and
    quick on a CPU."""
    if name is not None:
        if name not in PROFILES:
            raise EmogeomError(f"unknown profile '{name}' (use one of: {', '.join(PROFILES)})")
        return name, "asked for"
    if device == "cpu":
        return "quick", "CPU default; --profile full for the paper-sized run"
    return "full", f"{device.split(':')[0].upper()} default; --profile quick for a short run"


def profile_value(profile: str, name: str, given: Any, fallback: Any = None) -> Any:
    """A size: the flag's value when given, else the profile's, else ``fallback``."""
    if given is not None:
        return given
    value = PROFILES[profile].get(name)
    return fallback if value is None else value


def generation(preset: str = "gen-reference", **overrides: Any) -> Generation:
    """A generation preset with non-None ``overrides`` on top (field checks only)."""
    if preset not in GEN_PRESETS:
        raise EmogeomError(f"unknown generation preset '{preset}' (use one of: "
                           f"{', '.join(GEN_PRESETS)})")
    chosen = {k: v for k, v in overrides.items() if v is not None}
    return checked(Generation, {**GEN_PRESETS[preset], **chosen})


STEER_STRENGTHS = (0.0, 0.1, 0.2, 0.4, 0.8)  # in units of the layer's mean residual norm


class Steering(_Section):
    """Everything that determines an ``emogeom steer`` run's outputs (recorded in its manifest)."""

    model: str
    emotion: str | None = Field(None, description="steer every prompt toward this emotion")
    prompts: list[str] = Field(default_factory=list)
    default_prompts: bool = True
    strengths: list[Annotated[float, Field(allow_inf_nan=False)]] | str = Field(
        default_factory=lambda: list(STEER_STRENGTHS),
        description="alphas in units of the layer's mean residual norm (negative: away)")
    layers: str | None = Field(None, description="'12', '10-14', '3,7,9', 'all'; None: 0.6·L")
    max_new_tokens: int = Field(40, ge=1)
    temperature: float = Field(0.0, ge=0, allow_inf_nan=False, description="0 = greedy")
    top_p: float = Field(0.95, gt=0, le=1)
    seed: int = Field(0, ge=0)
    samples: int = Field(1, ge=1, description="samples per prompt (sampling only)")
    per_emotion: int | None = Field(6, ge=2, description="stories per emotion for the vectors")
    vectors: str | None = Field(None, description="vectors.safetensors instead of the corpus")
    dtype: str = "fp32"
    chat_template: bool = True
    out: str | None = None
    trust_remote_code: bool = False


class Behaviour(_Section):
    """Everything that determines a behaviour profile's numbers (recorded in the manifest).
    Constraint and question names are checked by ``behavior.profile``."""

    temperature: float = Field(0.0, ge=0, allow_inf_nan=False, description="0 = greedy")
    seed: int = Field(0, ge=0)
    max_new_tokens: int = Field(80, ge=1)
    top_p: float = Field(0.95, gt=0, le=1)
    format: str = Field("auto", description="auto | chat | raw ('User:/Assistant:' text)")
    capability_threshold: float = Field(0.5, ge=0, le=1, description="a capability score "
                                        "(0..1) below this excludes the scenario")
    constraints: tuple[str, ...] | None = Field(None, description="subset of the constraints")
    questions: tuple[str, ...] | None = Field(None, description="subset of the stance questions")


def default(section: type[_Section], name: str) -> Any:
    """A field's default value (CLI options take theirs from here: each default is written
    once, in its field)."""
    return section.model_fields[name].get_default(call_default_factory=True)
