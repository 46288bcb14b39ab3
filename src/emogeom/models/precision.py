"""Numeric precisions beyond the torch dtypes: INT8 weight quantisation (and where 4-bit runs).

``int8`` has two paths, and the one used is recorded in the model info:
- ``bitsandbytes-llm-int8``: LLM.int8 (``BitsAndBytesConfig(load_in_8bit=True)``) when the
  model goes to a CUDA device and bitsandbytes is installed; outliers above the threshold stay
  in fp16.
- ``torch-dynamic-qint8`` (CPU): the model is loaded in fp32, then every ``nn.Linear`` but the
  LM head becomes a dynamically quantised qint8 linear
  (``torch.ao.quantization.quantize_dynamic``): weights int8 per tensor, activations quantised
  on the fly per batch, accumulation in int32. Embeddings, norms and the LM head stay fp32
  (as LLM.int8 keeps the LM head in full precision).
``int4`` has no CPU path here: it needs bitsandbytes 4-bit (NF4/FP4) on a CUDA GPU.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from emogeom.errors import EmogeomError

QUANTISED = ("int8", "int4")
INT8_CPU = "torch-dynamic-qint8"
INT8_BNB = "bitsandbytes-llm-int8"


def bitsandbytes_importable() -> bool:
    """True when bitsandbytes imports (a broken CUDA install raises more than ImportError)."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception:
        return False
    return True


def bitsandbytes_ready() -> bool:
    """True when a CUDA device and an importable bitsandbytes are both present."""
    return torch.cuda.is_available() and bitsandbytes_importable()


def quantisation_path(precision: str, device: str | None = None) -> str | None:
    """Which path ``load_model`` takes for ``precision`` on a resolved ``device`` (None: CUDA
    when there is one); None for a plain torch dtype. bitsandbytes runs on CUDA only; int8
    elsewhere (or without bitsandbytes) takes the CPU path."""
    on_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    ready = on_cuda and bitsandbytes_ready()
    if precision == "int8":
        return INT8_BNB if ready else INT8_CPU
    if precision == "int4":
        if ready:
            return "bitsandbytes-nf4"
        raise EmogeomError(
            "int4 has no CPU path in emogeom: it runs with bitsandbytes 4-bit (NF4) on a CUDA "
            "GPU (pip install bitsandbytes on a machine with CUDA); on CPU use int8")
    return None


def precision_device(precision: str, requested: str | None, resolved: str) -> str:
    """The device a model at ``precision`` loads onto, given the ``--device`` asked for and
    what it resolved to: ``resolved``, except int8 without bitsandbytes on a CUDA device,
    which takes the CPU path under ``auto`` and is a one-line error for an explicit GPU.
    Raises for int4 without bitsandbytes on CUDA."""
    path = quantisation_path(precision, resolved) if precision in QUANTISED else None
    if path == INT8_CPU and resolved != "cpu":
        if (requested or "auto").strip().lower() != "auto":
            raise EmogeomError(f"--device {requested}: int8 there needs bitsandbytes on a CUDA "
                               "GPU (pip install bitsandbytes); --device cpu takes the CPU "
                               "int8 path")
        return "cpu"
    return resolved


def load_kwargs(precision: str, device: str | None = None) -> dict[str, Any]:
    """Extra ``from_pretrained`` arguments for a quantised precision (bitsandbytes paths; the
    ``device_map`` comes from ``models.devices.placement``)."""
    path = quantisation_path(precision, device)
    if path == INT8_BNB:
        from transformers import BitsAndBytesConfig

        return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True)}
    if path == "bitsandbytes-nf4":
        from transformers import BitsAndBytesConfig

        return {"quantization_config": BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16)}
    return {}


def _body_linears(model: torch.nn.Module) -> set[str]:
    """Qualified names of every ``nn.Linear`` except the output head (the LM head, found via
    ``get_output_embeddings``), i.e. the attention and MLP projections of the blocks."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {name for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and m is not head}


def quantise_dynamic_int8(model: torch.nn.Module) -> dict[str, Any]:
    """Swap the decoder blocks' linears for dynamic qint8 ones in place; returns what was done."""
    from torch.ao.quantization import quantize_dynamic

    targets = _body_linears(model)
    if not targets:
        raise EmogeomError(f"no nn.Linear layers outside the LM head in "
                           f"{type(model).__name__}: int8 on CPU cannot quantise it; use fp32")
    engine = torch.backends.quantized.engine
    with warnings.catch_warnings():  # torch marks torch.ao.quantization deprecated; it still runs
        warnings.simplefilter("ignore")
        quantize_dynamic(model, targets, dtype=torch.qint8, inplace=True)
    return {"path": INT8_CPU, "weights": "qint8 per-tensor affine",
            "activations": "quantised dynamically per batch (uint8), int32 accumulation",
            "modules_quantised": len(targets), "kept_fp32": "embeddings, norms, lm_head",
            "engine": engine, "api": "torch.ao.quantization.quantize_dynamic"}


def finish_quantisation(model: torch.nn.Module, precision: str,
                        device: str | None = None) -> dict[str, Any]:
    """Apply the post-load step of ``precision`` and return the manifest entry describing it."""
    path = quantisation_path(precision, device)
    if path == INT8_CPU:
        return quantise_dynamic_int8(model)
    if path is None:
        return {"path": "none"}
    import bitsandbytes

    return {"path": path, "bitsandbytes": bitsandbytes.__version__,
            "kept_fp16": "lm_head and outlier features (LLM.int8 threshold 6.0)"
            if path == INT8_BNB else "lm_head"}
