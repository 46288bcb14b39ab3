"""The study file: one YAML for many models × precisions × presets, validated by pydantic.

Errors name the file, the line and the key (``study.yaml:7: models[1].variant: ...``) so a
researcher can fix a 12-model study without guessing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from emogeom.errors import EmogeomError
from emogeom.study.presets import PRESETS

LAYER_POLICIES = ("preset", "reliability", "reference", "text-general")


def _precisions() -> tuple[str, ...]:
    from emogeom.models import DTYPES
    from emogeom.models.precision import QUANTISED

    return (*DTYPES, *QUANTISED)


class ModelEntry(BaseModel):
    """One model of a study: where it comes from and how it is labelled and read."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, description="embedded name, local folder, .gguf file or hub id")
    label: str | None = Field(None, description="short unique name in tables; default from id")
    revision: str | None = Field(None, description="hub branch, tag or commit (pin a commit)")
    family: str | None = None
    variant: Literal["base", "instruct"] | None = None
    chat_template: Literal["raw", "chat"] = Field(
        "raw", description="raw: stories as plain text; chat: each story as a user message")
    trust_remote_code: bool = False

    @property
    def name(self) -> str:
        """The label, or the last part of the id without a .gguf suffix."""
        if self.label:
            return self.label
        return self.id.rstrip("/").split("/")[-1].removesuffix(".gguf")


class Statistics(BaseModel):
    """How geometries are compared (the same for every pair)."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["spearman", "pearson", "kendall", "cosine"] = "spearman"
    permutations: int = Field(10_000, ge=1)
    bootstrap: int = Field(1000, ge=1)
    ci_level: float = Field(0.95, gt=0, lt=1)
    splits: int = Field(10, ge=1)
    seed: int = 0


class Executor(BaseModel):
    """Where jobs run: here one after another (``local``) or as Ray tasks."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["local", "ray"] = "local"
    address: str | None = Field(None, description="Ray cluster address; none starts one here")
    jobs: int = Field(1, ge=1, description="jobs at once")
    num_gpus: float = Field(0, ge=0, description="GPUs per Ray task")
    num_cpus: float = Field(1, gt=0, description="CPUs per Ray task")


class StudySpec(BaseModel):
    """A whole study: models, the factors crossed with them, statistics, output folder."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    description: str | None = None
    out: str | None = Field(None, description="output folder; default out/<name>")
    models: list[ModelEntry] = Field(min_length=1)
    precisions: list[str] = Field(default_factory=lambda: ["fp32"], min_length=1)
    presets: list[str] = Field(default_factory=lambda: ["default"], min_length=1)
    layer_policy: Literal["preset", "reliability", "reference", "text-general"] = "preset"
    corpus: str | None = Field(None, description="story corpus; default the shipped one")
    neutral: str | None = None
    per_emotion: int | None = Field(None, ge=2, description="overrides the presets' corpus size")
    steering: bool = Field(False, description="add each model's steering regime")
    behaviour: bool = Field(False, description="add each model's MTI Compliance profile")
    statistics: Statistics = Field(default_factory=Statistics)
    executor: Executor = Field(default_factory=Executor)

    @field_validator("precisions", "presets")
    @classmethod
    def _known(cls, value: list[str], info) -> list[str]:
        known = _precisions() if info.field_name == "precisions" else tuple(PRESETS)
        what = info.field_name.removesuffix("s")
        bad = [p for p in value if p not in known]
        if bad:
            raise ValueError(f"unknown {what} {bad[0]!r} (use: {', '.join(known)})")
        if len(set(value)) != len(value):
            raise ValueError(f"a {what} is listed twice")
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


def _node_line(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest YAML node on the pydantic error path ``loc``."""
    node, line = root, None
    for key in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        nxt = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == key:
                    line, nxt = k.start_mark.line + 1, v
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) \
                and key < len(node.value):
            nxt = node.value[key]
            line = nxt.start_mark.line + 1
        node = nxt
    return line


def _loc_text(loc: tuple[Any, ...]) -> str:
    text = ""
    for key in loc:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text or "(top level)"


def parse_study(text: str, where: str = "<study>") -> StudySpec:
    """Validate study YAML text; a one-line error names the line and key of the problem."""
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise EmogeomError(f"{where}{line}: not valid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise EmogeomError(f"{where}: a study file is a YAML mapping with at least "
                           "'name' and 'models'")
    try:
        return StudySpec.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        loc = tuple(k for k in first["loc"] if k != "__root__")
        # Literal/enum errors carry the field path plus the variant tag: drop non-keys.
        line = _node_line(root, loc)
        msg = first["msg"].removeprefix("Value error, ")
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise EmogeomError(f"{where}{f':{line}' if line else ''}: {_loc_text(loc)}: "
                           f"{msg}{more}") from None


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study file."""
    path = Path(path)
    if not path.is_file():
        raise EmogeomError(f"study file not found: {path} (give the path of a .yaml file)")
    return parse_study(path.read_text(), str(path))
