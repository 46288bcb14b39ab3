"""Model-shape configs shipped with emogeom (``src/emogeom/models/shapes/*.json``): transformers
config dicts at the exact shapes of the paper-12 families, for randomly initialised stand-ins
(no download) and for memory / FLOP estimates."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

SRC_SHAPES = Path(__file__).resolve().parent.parent / "src" / "emogeom" / "models" / "shapes"


def _folder():
    """The installed package's shapes folder, else the source tree's."""
    try:
        folder = resources.files("emogeom.models") / "shapes"
        if folder.is_dir():
            return folder
    except (ModuleNotFoundError, FileNotFoundError):
        pass
    return SRC_SHAPES


def shape_names() -> list[str]:
    return sorted(p.name[: -len(".json")] for p in _folder().iterdir()
                  if p.name.endswith(".json"))


def shape_dict(name: str) -> dict:
    path = _folder() / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"unknown shape '{name}' (have: {', '.join(shape_names())})")
    return json.loads(path.read_text())


def shape_config(name: str):
    """A transformers ``PretrainedConfig`` for the shape (``AutoConfig.for_model``)."""
    from transformers import AutoConfig

    d = dict(shape_dict(name))
    d.pop("_name_or_path", None)
    d.pop("architectures", None)
    return AutoConfig.for_model(d.pop("model_type"), **d)


def param_counts(name: str) -> dict[str, int]:
    """Parameters of the shape, counted on the meta device (no memory): total (tied weights
    once), embedding, LM head (0 when tied), decoder layers."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(shape_config(name))
    total = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings()
    head_n = 0 if head is None or head.weight is model.get_input_embeddings().weight \
        else head.weight.numel()
    from emogeom.extraction import decoder_layers

    layers = sum(p.numel() for p in decoder_layers(model).parameters())
    return {"total": total, "embedding": emb, "lm_head": head_n, "layers": layers}
