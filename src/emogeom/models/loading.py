"""One ``load_model`` for an embedded name, a GGUF file, a local folder or a hub id.

GGUF files are de-quantised once by transformers and saved as a safetensors folder under the
cache directory (``EMOGEOM_CACHE``, default ``~/.cache/emogeom``); later loads read that folder.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from emogeom.artefacts import checksums, current_umask, file_sha256, first_damage
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

__all__ = ["DTYPES", "LoadedModel", "ModelSource", "check_gguf_file", "input_device",
           "load_model", "load_tokenizer_config", "pad_token_id", "resolve_model",
           "weights_bytes", "wrap"]

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_CONVERT_VERSION = "3"  # bump when conversion output changes: old caches are rebuilt
_GGUF_MAGIC = b"GGUF"
_STALE_TMP_S = 24 * 3600  # a .convert-* folder this old was left by a killed conversion
# What reading a damaged GGUF raises inside transformers / gguf / numpy / torch.
_READ_ERRORS = (ValueError, TypeError, IndexError, KeyError, OSError, EOFError, RuntimeError,
                struct.error)


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


def gguf_error(path: Path | str, reason: str) -> EmogeomError:
    """The one-line error for a GGUF file that cannot be read."""
    return EmogeomError(f"{path}: not a readable GGUF file ({reason}); re-download it or "
                        "convert it again")


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message, short enough for a one-line error."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= 160 else text[:157] + "..."


def check_gguf_file(path: Path | str) -> None:
    """Cheap checks before a GGUF file is parsed: not empty, starts with the magic bytes
    ``GGUF``; raises the one-line ``gguf_error`` otherwise."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise gguf_error(path, _reason(exc)) from None
    if not head:
        raise gguf_error(path, "empty file")
    if head[:4] != _GGUF_MAGIC:
        raise gguf_error(path, "it does not start with the GGUF magic bytes")
    if len(head) < 8:
        raise gguf_error(path, "truncated header")


def conversion_error(gguf: Path, exc: BaseException) -> EmogeomError:
    """The one-line error for a GGUF file whose conversion failed: an architecture this
    transformers cannot load, or a damaged (truncated) file."""
    reason = _reason(exc)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EACCES, errno.EROFS):
        return EmogeomError(f"cannot write the model converted from {gguf} under "
                            f"{cache_dir()}: {reason}; free space there or set EMOGEOM_CACHE to "
                            "a writable folder")
    if "not supported" in reason.lower():
        return EmogeomError(f"{gguf}: transformers {transformers.__version__} cannot load this "
                            f"GGUF ({reason}); use the original (safetensors) model or a newer "
                            "transformers")
    return gguf_error(gguf, f"truncated or damaged: {reason}")


def _clear_stale_conversions(folder: Path) -> None:
    """Remove temporary conversion folders left by a killed run (older than a day)."""
    for old in folder.glob(".convert-*"):
        with contextlib.suppress(OSError):
            if time.time() - old.stat().st_mtime > _STALE_TMP_S:
                shutil.rmtree(old, ignore_errors=True)


def converted_path(gguf: Path, sha256: str, root: Path | None = None) -> Path:
    """Where the safetensors folder converted from a GGUF file lives (or will)."""
    root = root or cache_dir()
    return root / "converted" / f"{gguf.name.removesuffix('.gguf')}-{sha256[:12]}"


def is_converted(folder: Path) -> bool:
    """Whether ``folder`` holds a finished conversion by this converter version whose files
    all match the checksums recorded beside them (a damaged copy is said and redone)."""
    marker = folder / "emogeom-source.json"
    try:
        meta = json.loads(marker.read_text())
        if meta.get("converter") != _CONVERT_VERSION or not isinstance(meta.get("files"), dict):
            return False
    except (OSError, ValueError, AttributeError):
        return False
    damage = first_damage(folder, meta["files"])
    if damage:
        logging.getLogger("emogeom").warning(
            "warning: the converted copy %s is damaged (%s); converting it again", folder,
            damage)
        return False
    return True


def converted_gguf_dir(gguf: Path, sha256: str, root: Path | None = None) -> Path:
    """Safetensors folder for a GGUF file, converted on first use and re-used afterwards.
    The conversion is written to a temporary folder and renamed into place, so a failed or
    damaged file leaves nothing behind; a damaged file is a one-line error."""
    target = converted_path(gguf, sha256, root)
    if is_converted(target):
        return target
    check_gguf_file(gguf)
    target.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale_conversions(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes 0700; the cache follows the umask
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
        files = checksums(tmp, sorted(p.name for p in tmp.iterdir()))
        (tmp / "emogeom-source.json").write_text(
            json.dumps({"gguf": gguf.name, "sha256": sha256, "converter": _CONVERT_VERSION,
                        "transformers": transformers.__version__,
                        "tokenizer_repairs": repairs, "files": files}, indent=2)
        )
        if target.exists():  # a half-written folder from a killed run: replace it
            shutil.rmtree(target)
        os.replace(tmp, target)
    except _READ_ERRORS as exc:
        raise conversion_error(gguf, exc) from None
    finally:
        transformers.logging.set_verbosity(verbosity)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def remote_code_error(spec: str) -> EmogeomError:
    """The one-line refusal of a model that ships its own code, asked without trust."""
    return EmogeomError(f"{spec}: this model ships its own code (auto_map); rerun with "
                        "--trust-remote-code (study file: trust_remote_code: true) only if you "
                        "trust it")


def needs_remote_code(folder: str | Path) -> bool:
    """Whether a local model folder can only load with its own code: its config.json has an
    ``auto_map`` and a model type this transformers does not know (transformers loads a known
    type with its own classes, as it does itself)."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(config, dict) or not config.get("auto_map"):
        return False
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    return config.get("model_type") not in CONFIG_MAPPING


@contextlib.contextmanager
def load_errors(source: ModelSource, name: str, trust_remote_code: bool):
    """Turn what transformers raises on a model it cannot load into one-line errors: a
    missing or unreachable model, and custom code without ``trust_remote_code``."""
    if (not trust_remote_code and source.kind == "local" and source.path
            and needs_remote_code(source.path)):
        raise remote_code_error(source.spec)
    try:
        yield
    except OSError as exc:
        where = "the hub (no network or wrong id?)" if source.kind == "hub" else name
        raise EmogeomError(f"cannot load model '{source.spec}' from {where}: "
                           f"{_reason(exc)}") from None
    except ValueError as exc:
        if not trust_remote_code and "trust_remote_code" in str(exc):
            raise remote_code_error(source.spec) from None
        raise


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
            info["description"] = EMBEDDED[source.spec].description
        gguf, sha = _gguf_of(source)
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
    with load_errors(source, name, trust_remote_code), no_load_bars(source.kind != "hub"):
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


def _gguf_of(source: ModelSource) -> tuple[Path, str]:
    """The GGUF file of an embedded or GGUF source and its sha256."""
    if source.kind == "embedded":
        gguf, sha = embedded_gguf(source.spec, cache_dir())
    else:
        gguf, sha = Path(source.path), None
    return gguf, sha or file_sha256(gguf)


def _gguf_tokenizer_config(gguf: Path) -> tuple[Any, Any]:
    """Tokenizer (repaired as a conversion would) and config read from a GGUF file's metadata,
    without its weights; a damaged file is a one-line error."""
    check_gguf_file(gguf)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        with tempfile.TemporaryDirectory(prefix="emogeom-tok-") as tmp:
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            tok.save_pretrained(tmp)
            repair_tokenizer(Path(tmp), gguf)
            tokenizer = AutoTokenizer.from_pretrained(tmp)
        config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except _READ_ERRORS as exc:
        raise conversion_error(gguf, exc) from None
    finally:
        transformers.logging.set_verbosity(verbosity)
    return tokenizer, config


def load_tokenizer_config(spec: str | ModelSource, revision: str | None = None,
                          trust_remote_code: bool = False) -> tuple[Any, Any, ModelSource]:
    """(tokenizer, config, source) of a model without its weights: from the converted folder
    of a GGUF file when there is one, else from the GGUF metadata; from config.json and the
    tokenizer files of a folder or hub id. For counting tokens against the context."""
    source = spec if isinstance(spec, ModelSource) else resolve_model(spec)
    if source.kind in ("embedded", "gguf"):
        gguf, sha = _gguf_of(source)
        folder = converted_path(gguf, sha)
        if not is_converted(folder):
            return (*_gguf_tokenizer_config(gguf), source)
        name, kwargs = str(folder), {}
    else:
        name = source.path if source.kind == "local" else source.spec
        kwargs = {"revision": revision} if revision else {}
    with load_errors(source, name, trust_remote_code), no_load_bars(source.kind != "hub"):
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code,
                                                  **kwargs)
        config = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code, **kwargs)
    return tokenizer, config, source
