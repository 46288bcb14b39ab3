"""One ``load_model`` for an embedded name, a GGUF file, a local folder or a hub id.

GGUF files are de-quantised once by transformers and saved as a safetensors folder under the
cache directory (``EMOGEOM_CACHE``, default ``~/.cache/emogeom``); later loads read that folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from emogeom.artefacts import file_sha256
from emogeom.errors import EmogeomError
from emogeom.models.chat import has_chat_template
from emogeom.models.devices import (
    device_info,
    gpu_free_bytes,
    input_device,
    parse_max_memory,
    placement,
    resolve_device,
)
from emogeom.models.embedded import EMBEDDED, embedded_gguf
from emogeom.models.gguf_tokenizer import repair_tokenizer
from emogeom.models.precision import (
    INT8_CPU,
    QUANTISED,
    finish_quantisation,
    load_kwargs,
    precision_device,
    quantisation_path,
)

__all__ = ["DTYPES", "LoadedModel", "ModelSource", "input_device", "load_model", "pad_token_id",
           "resolve_model", "weights_bytes", "wrap"]

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_CONVERT_VERSION = "3"  # bump when conversion output changes: old caches are rebuilt


@dataclass(frozen=True)
class ModelSource:
    """Where a model spec points, resolved without loading anything heavy."""

    spec: str
    kind: str  # "embedded" | "gguf" | "local" | "hub" | "memory" (see ``wrap``)
    path: str | None
    slug: str


@dataclass
class LoadedModel:
    """A loaded causal LM with its tokenizer and the provenance recorded in manifests."""

    model: Any
    tokenizer: Any
    source: ModelSource
    info: dict[str, Any] = field(default_factory=dict)

    def __iter__(self):
        """``model, tokenizer = emogeom.load_model(...)`` unpacks like a pair."""
        return iter((self.model, self.tokenizer))


def cache_dir() -> Path:
    """Cache root: ``$EMOGEOM_CACHE`` or ``~/.cache/emogeom``."""
    return Path(os.environ.get("EMOGEOM_CACHE", Path.home() / ".cache" / "emogeom")).expanduser()


def slugify(text: str) -> str:
    """File-system-safe folder name for a model spec."""
    base = Path(text).name if os.sep in text and Path(text).exists() else text
    base = base.removesuffix(".gguf")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("_.") or "model"


def resolve_model(spec: str) -> ModelSource:
    """Classify a model spec, checking that files exist; raises a one-line error otherwise."""
    if spec in EMBEDDED:
        return ModelSource(spec, "embedded", None, spec)
    path = Path(spec).expanduser()
    if path.exists():
        if path.is_file() and path.suffix == ".gguf":
            return ModelSource(spec, "gguf", str(path.resolve()), slugify(spec))
        if path.is_dir() and (path / "config.json").exists():
            return ModelSource(spec, "local", str(path.resolve()), slugify(path.name))
        raise EmogeomError(
            f"'{spec}' is neither a .gguf file nor a model folder with config.json"
        )
    if spec.endswith(".gguf") or spec.startswith((".", "/", "~")):
        raise EmogeomError(f"model file not found: {spec} (check the path)")
    if _HUB_ID.match(spec):
        return ModelSource(spec, "hub", None, slugify(spec.replace("/", "__")))
    raise EmogeomError(
        f"unknown model '{spec}': use an embedded name ({', '.join(EMBEDDED)}), "
        "a local folder, a .gguf file, or a hub id like org/name"
    )


def converted_gguf_dir(gguf: Path, sha256: str, root: Path | None = None) -> Path:
    """Safetensors folder for a GGUF file, converted on first use and re-used afterwards."""
    root = root or cache_dir()
    target = root / "converted" / f"{gguf.name.removesuffix('.gguf')}-{sha256[:12]}"
    marker = target / "emogeom-source.json"
    if marker.exists() and json.loads(marker.read_text()).get("converter") == _CONVERT_VERSION:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # GGUF tokenizer notices: we repair and record
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        quant = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        # transformers refuses save_pretrained on a GGUF-loaded model: rebuild from its config.
        config_dict = quant.config.to_dict()
        config_dict.pop("quantization_config", None)
        config = AutoConfig.for_model(**config_dict)
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(quant.state_dict())
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        repairs = repair_tokenizer(tmp, gguf)
        (tmp / "emogeom-source.json").write_text(
            json.dumps({"gguf": gguf.name, "sha256": sha256, "converter": _CONVERT_VERSION,
                        "transformers": transformers.__version__,
                        "tokenizer_repairs": repairs}, indent=2)
        )
        if target.exists():  # a half-written folder from a killed run: replace it
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        transformers.logging.set_verbosity(verbosity)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


@contextlib.contextmanager
def no_load_bars(quiet: bool = True):
    """Without transformers 5's per-load "Loading weights" bar while ``quiet`` (a load from
    local files, where nothing is downloaded); the previous setting comes back after."""
    was = transformers.utils.logging.is_progress_bar_enabled()
    if quiet and was:
        transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        if quiet and was:
            transformers.utils.logging.enable_progress_bar()


def embedding_rows(model: Any) -> int | None:
    """How many token ids the model's input embedding has rows for (None if unknown)."""
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    rows = getattr(emb, "num_embeddings", None)
    return int(rows) if rows is not None else None


def pad_token_id(tokenizer: Any, model: Any = None) -> int:
    """The id to pad with (masked, so any real token does): the tokenizer's pad token, else
    eos, unk or bos, else 0. With ``model``, ids the input embedding has no row for are passed
    over (transformers 5 gives some tokenizer classes a default pad token that a small or
    custom vocabulary lacks, appended after the model's last id). The tokenizer itself is
    left as it is."""
    rows = embedding_rows(model) if model is not None else None
    for name in ("pad_token_id", "eos_token_id", "unk_token_id", "bos_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, list):
            value = value[0] if value else None
        if value is not None and (rows is None or 0 <= int(value) < rows):
            return int(value)
    return 0


def _ensure_pad(tokenizer: Any, model: Any) -> None:
    """Give a tokenizer we loaded ourselves a pad token the model has an embedding row for:
    the one ``pad_token_id`` pads with."""
    pad = pad_token_id(tokenizer, model)
    if tokenizer.pad_token is None or tokenizer.pad_token_id != pad:
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad)


def load_dtype(dtype: str, device: str | None = None) -> torch.dtype:
    """The torch dtype weights load in: the dtype itself; fp32 for the CPU int8 path (it
    quantises after loading); fp16 around bitsandbytes (what LLM.int8 and NF4 assume)."""
    if dtype in DTYPES:
        return DTYPES[dtype]
    return torch.float32 if quantisation_path(dtype, device) == INT8_CPU else torch.float16


def weights_bytes(name: str, dtype: str, trust_remote_code: bool = False,
                  **kwargs: Any) -> int | None:
    """Bytes the weights of the model at ``name`` take at ``dtype``: its parameters counted
    on an empty (meta) model built from its config, nothing loaded; None when that fails."""
    try:
        from accelerate import init_empty_weights

        config = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code, **kwargs)
        with init_empty_weights():
            meta = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
        n = sum(p.numel() for p in meta.parameters())
    except Exception:  # noqa: BLE001 - an estimate: without it the model loads on one GPU
        return None
    per = {"int8": 1.0, "int4": 0.5}.get(dtype) or torch.finfo(load_dtype(dtype)).bits / 8
    return int(n * per)


def _dtype_name(dtype: torch.dtype) -> str:
    names = {v: k for k, v in DTYPES.items()}
    return names.get(dtype, str(dtype).removeprefix("torch."))


def describe(model: Any, tokenizer: Any, revision: str | None = None) -> dict[str, Any]:
    """What manifests record about a loaded model and tokenizer (read only, nothing changed)."""
    cfg = model.config
    return {
        "architecture": cfg.model_type,
        "n_layers": int(cfg.get_text_config().num_hidden_layers),
        "d_model": int(cfg.get_text_config().hidden_size),
        "revision": revision or getattr(cfg, "_commit_hash", None),
        "dtype_loaded": str(next(model.parameters()).dtype).removeprefix("torch."),
        "tokenizer_adds_bos": bool(tokenizer("a").input_ids[:1] == [tokenizer.bos_token_id]),
        "has_chat_template": has_chat_template(tokenizer),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }


def wrap(model: Any, tokenizer: Any, name: str | None = None) -> LoadedModel:
    """A ``LoadedModel`` around a transformers causal LM and tokenizer already in memory (from
    a notebook, say), for steering, behaviour and extraction. Neither is changed: a tokenizer
    without a pad token keeps none (padding uses ``pad_token_id``), and the model is used in
    the mode it is in (``from_pretrained`` gives eval mode)."""
    name = name or getattr(model.config, "_name_or_path", None) or type(model).__name__
    source = ModelSource(name, "memory", None, slugify(name))
    info: dict[str, Any] = {"model": name, "kind": "memory",
                            "dtype": _dtype_name(next(model.parameters()).dtype),
                            "trust_remote_code": False, **describe(model, tokenizer),
                            "device": device_info(model)}
    return LoadedModel(model, tokenizer, source, info)


def load_model(
    spec: str | ModelSource,
    dtype: str = "fp32",
    revision: str | None = None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    device: str | None = "auto",
    max_memory: str | dict | None = None,
) -> LoadedModel:
    """Load a causal LM and its tokenizer at ``dtype`` (fp32, bf16, fp16, or int8/int4 via
    ``models.precision``) straight onto ``device`` (``auto``: CUDA, else MPS, else CPU; see
    ``models.devices``): on CPU as a plain load; on one GPU with ``device_map``; spread over
    the visible GPUs (``device_map="auto"``, ``max_memory`` passed through) when the weights
    do not fit one GPU or ``max_memory`` is given. ``trust_remote_code`` stays off unless
    asked for. ``info["device"]`` records where it went."""
    if dtype not in DTYPES and dtype not in QUANTISED:
        raise EmogeomError(f"unknown dtype '{dtype}' (use one of: "
                           f"{', '.join((*DTYPES, *QUANTISED))})")
    target = precision_device(dtype, device, resolve_device(device))
    quant_kwargs = load_kwargs(dtype, target) if dtype in QUANTISED else {}
    n_gpus = torch.cuda.device_count() if target.startswith("cuda") else 0
    memory = parse_max_memory(max_memory, n_gpus) if target.startswith("cuda") else None
    source = spec if isinstance(spec, ModelSource) else resolve_model(spec)
    info: dict[str, Any] = {"model": source.spec, "kind": source.kind, "dtype": dtype,
                            "trust_remote_code": trust_remote_code}
    if source.kind in ("embedded", "gguf"):
        if source.kind == "embedded":
            gguf, sha = embedded_gguf(source.spec, cache_dir())
            info["description"] = EMBEDDED[source.spec].description
        else:
            gguf, sha = Path(source.path), None
        sha = sha or file_sha256(gguf)
        folder = converted_gguf_dir(gguf, sha)
        source_meta = json.loads((folder / "emogeom-source.json").read_text())
        info.update({"gguf_file": gguf.name, "sha256": sha, "loaded_from": str(folder),
                     "tokenizer_repairs": source_meta.get("tokenizer_repairs", []),
                     "note": "weights de-quantised from a 4-bit GGUF file: 'fp32' means "
                             "de-quantised Q4, not original full-precision weights"
                             if "Q4" in gguf.name.upper() else "weights de-quantised from GGUF"})
        name, kwargs = str(folder), {}
    else:
        name = source.path if source.kind == "local" else source.spec
        kwargs = {"revision": revision} if revision else {}
    try:
        with no_load_bars(source.kind != "hub"):
            tokenizer = AutoTokenizer.from_pretrained(
                name, trust_remote_code=trust_remote_code, **kwargs
            )
            size = (weights_bytes(name, dtype, trust_remote_code, **kwargs)
                    if target == "cuda" and not memory else None)
            device_map, rule = placement(
                target, size, gpu_free_bytes() if target == "cuda" else [], memory,
                torch.cuda.current_device() if target.startswith("cuda") else 0)
            place: dict[str, Any] = {} if device_map is None else {"device_map": device_map}
            if device_map == "auto" and memory:
                place["max_memory"] = memory
            model = AutoModelForCausalLM.from_pretrained(
                name, dtype=load_dtype(dtype, target), trust_remote_code=trust_remote_code,
                attn_implementation=attn_implementation, **kwargs, **quant_kwargs, **place,
            )
    except OSError as exc:
        where = "the hub (no network or wrong id?)" if source.kind == "hub" else name
        raise EmogeomError(f"cannot load model '{source.spec}' from {where}: "
                           f"{str(exc).splitlines()[0]}") from None
    model.eval()
    if dtype in QUANTISED:
        info["quantisation"] = finish_quantisation(model, dtype, target)
    _ensure_pad(tokenizer, model)
    info.update(describe(model, tokenizer, revision))
    info["device"] = {"requested": device or "auto", "placement": rule,
                      **({"max_memory": {str(k): v for k, v in memory.items()}}
                         if memory else {}),
                      **device_info(model)}
    if source.kind == "local":
        info["local_path"] = source.path
    return LoadedModel(model, tokenizer, source, info)
