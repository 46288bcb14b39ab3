"""llama.cpp control vectors (GGUF) from an emogeom geometry.

The file holds ``general.architecture = "controlvector"``, ``controlvector.model_hint`` (the
model's llama.cpp architecture name), ``controlvector.layer_count`` and one 1-D F32 tensor
``direction.N`` of length n_embd per exported layer, plus a few ``emogeom.*`` keys that say
what the vectors are (llama.cpp ignores keys it does not know).

Layer indexing, read from llama.cpp's source (ggml-org/llama.cpp, and the same code in the
copy vendored by llama-cpp-python 0.3.36), not assumed:

- ``common/common.cpp``, ``common_control_vector_load_one``: parses the ``N`` of each
  ``direction.N`` tensor, rejects ``N == 0`` (the whole file is then skipped) and any tensor
  that is not 1-D F32, and adds ``strength × values`` into one flat buffer at offset
  ``n_embd × (N − 1)`` ("layer 1 at [0]"). ``common_control_vector_load`` sums several files.
- ``src/llama-adapter.cpp``, ``llama_adapter_cvec::apply``: for ``il = 1 .. n_layer − 1`` it
  fills the graph's per-layer tensor ``tensors[il]`` from buffer offset ``n_embd × (il − 1)``;
  ``tensors[0]`` is never created. ``tensor_for(il)`` returns nothing outside
  ``[layer_start, layer_end]`` or at ``il ≥ n_layer``, and ``apply_to`` then adds
  ``tensors[il]`` to its input with ``ggml_add``. The two ``− 1`` cancel: ``direction.N`` goes
  to graph layer ``il = N``.
- ``src/models/llama.cpp`` (also ``gemma3.cpp``, ``qwen2.cpp``, ``gpt2.cpp``), the per-layer
  graph loop ``for il in 0..n_layer``: ``build_cvec(cur, il)`` (``llm_graph_context::build_cvec``
  → ``apply_to``) is called after the FFN residual add, right before the tensor named
  ``l_out`` that becomes the next layer's input, i.e. on the output of decoder block ``il``
  before the final norm. llama.cpp's ``il`` is the 0-based block index, as in HF.
- ``include/llama.h``, the comment on ``llama_set_adapter_cvec``: the buffer is
  "n_embd x n_layers starting from layer 1".

So emogeom layer ``i`` (output of HF decoder block ``i``, 0-based; HF ``hidden_states[i + 1]``)
is written as ``direction.i`` — no offset. Layer 0 cannot be exported: llama.cpp never steers
block 0 and refuses ``direction.0``. A ``direction.N`` with ``N ≥ n_layer`` loads but is never
applied.

Scale: ``--control-vector FILE`` loads with strength 1.0 and ``--control-vector-scaled FILE
S`` (newer builds: ``FILE:S``) with strength ``S``; the loader multiplies every element by it
(linear, nothing normalised). The file stores ``scale × norm × unit(v)`` exactly as
``emogeom steer`` adds it (``export.directions.steering_directions``), so strength 1.0
reproduces emogeom's steering at ``alpha = scale``, and with ``scale = 1`` in residual-norm
units llama.cpp's ``S`` is emogeom's alpha. ``--control-vector-layer-range A B`` narrows the
layers (default 1 .. n_layer).

Metadata: neither ``controlvector.model_hint`` nor ``controlvector.layer_count`` is read by
llama.cpp's loader (it reads tensors only), so ``layer_count`` need not equal the model's
layer count. As llama.cpp's own ``cvector-generator`` (``export_gguf``) does, it is written as
an int32 holding the number of ``direction`` tensors in the file, and ``model_hint`` holds the
architecture name the model's GGUF has in ``general.architecture``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emogeom.artefacts import atomic_write_bytes, file_sha256
from emogeom.errors import EmogeomError
from emogeom.export.directions import chosen_layers, steering_directions

ARCHITECTURE = "controlvector"

# HF ``model_type`` → llama.cpp architecture, where the two names differ beyond "_text" and
# underscores (llama.cpp's convert_hf_to_gguf.py converts these to the named architecture).
_RENAMED = {
    "mistral": "llama", "mixtral": "llama", "phi": "phi2", "cohere": "command-r",
    "deepseek_v2": "deepseek2", "deepseek_v3": "deepseek2", "gpt_bigcode": "starcoder",
}


def _llamacpp_architectures() -> set[str]:
    """The architecture names this ``gguf`` package knows (the ones llama.cpp uses)."""
    import gguf

    return set(gguf.MODEL_ARCH_NAMES.values())


def model_hint_for(model_type: str | None) -> str | None:
    """llama.cpp's architecture name for an HF ``model_type`` ('gemma3_text' → 'gemma3',
    'mistral' → 'llama'); the model type itself when no known name fits, None when absent."""
    if not model_type:
        return None
    kind = str(model_type).lower()
    if kind in _RENAMED:
        return _RENAMED[kind]
    known = _llamacpp_architectures()
    base = kind.removesuffix("_text")
    for name in (kind, base, base.replace("_", ""), base.replace("_", "-")):
        if name in known:
            return name
    return kind


def geometry_model_hint(geometry: Any) -> str | None:
    """The model hint for a geometry, from the HF model type in its ``model_info``."""
    return model_hint_for((geometry.model_info or {}).get("architecture"))


def control_vector_tensors(directions: Mapping[int, np.ndarray]) -> dict[str, np.ndarray]:
    """{'direction.N': float32 [d]} for {emogeom layer N: vector}, in layer order; layer 0,
    unequal lengths, non-1-D or non-finite vectors are refused."""
    if not directions:
        raise EmogeomError("no layers to export")
    out: dict[str, np.ndarray] = {}
    sizes = set()
    for layer in sorted(int(k) for k in directions):
        if layer < 1:
            raise EmogeomError(f"layer {layer} cannot go into a llama.cpp control vector: "
                               "llama.cpp never steers the output of block 0 and rejects "
                               "'direction.0'; choose layers from 1")
        v = np.asarray(directions[layer], dtype=np.float32)
        if v.ndim != 1 or not np.isfinite(v).all():
            raise EmogeomError(f"the vector for layer {layer} is not a finite 1-D vector "
                               f"(shape {v.shape})")
        sizes.add(v.shape[0])
        out[f"direction.{layer}"] = np.ascontiguousarray(v)
    if len(sizes) != 1:
        raise EmogeomError(f"the vectors have different lengths {sorted(sizes)}; a control "
                           "vector holds one n_embd for every layer")
    return out


def control_vector_bytes(tensors: Mapping[str, np.ndarray], model_hint: str,
                         extra: Mapping[str, Any] | None = None) -> bytes:
    """The GGUF bytes of a control vector: architecture, model hint, layer count, any
    ``extra`` string/float/int/float-list keys, then the tensors."""
    import gguf

    with tempfile.TemporaryDirectory(prefix="emogeom-cvec-") as tmp:
        path = Path(tmp) / "cvec.gguf"
        writer = gguf.GGUFWriter(str(path), ARCHITECTURE)
        writer.add_string(f"{ARCHITECTURE}.model_hint", model_hint)
        writer.add_int32(f"{ARCHITECTURE}.layer_count", len(tensors))
        for key, value in (extra or {}).items():
            _add_value(writer, key, value)
        for name, array in tensors.items():
            writer.add_tensor(name, np.asarray(array, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path.read_bytes()


def _add_value(writer: Any, key: str, value: Any) -> None:
    """Add one metadata key to a GGUF writer, typed by the Python value."""
    if isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, (int, np.integer)):
        writer.add_int32(key, int(value))
    elif isinstance(value, (float, np.floating)):
        writer.add_float32(key, float(value))
    elif isinstance(value, str):
        writer.add_string(key, value)
    elif isinstance(value, Sequence) and all(isinstance(x, (int, float)) for x in value):
        writer.add_array(key, [float(x) for x in value])
    else:
        raise EmogeomError(f"cannot store metadata '{key}' of type {type(value).__name__}")


def export_layers(geometry: Any, layers: int | Sequence[int] | str | None) -> list[int]:
    """The layers to export; 'all' means every layer llama.cpp can steer (1..L-1)."""
    if isinstance(layers, str) and layers.strip() == "all":
        if geometry.n_layers < 2:
            raise EmogeomError("this geometry has only layer 0, which llama.cpp cannot steer")
        return list(range(1, geometry.n_layers))
    return chosen_layers(geometry, layers)


def write_control_vector(path: str | Path, geometry: Any, emotion: str,
                         layers: int | Sequence[int] | str | None = None, scale: float = 1.0,
                         norms: Mapping[int, float] | None = None,
                         model_hint: str | None = None) -> dict[str, Any]:
    """Write ``emotion``'s steering vectors (``scale × norms[layer] × unit(v)``; norms None:
    absolute units) at ``layers`` (None: best layer; 'all': 1..L-1) as a llama.cpp control
    vector, atomically; returns what was written."""
    from emogeom import __version__
    from emogeom.analysis.geometry import LAYER_DEFINITION

    if not np.isfinite(scale):
        raise EmogeomError(f"scale {scale} is not a finite number")
    picked = export_layers(geometry, layers)
    if norms is not None:
        missing = [x for x in picked if x not in norms]
        if missing:
            raise EmogeomError(f"no residual norm for layer(s) {missing}")
    directions = steering_directions(geometry, emotion, picked, scale, norms)
    tensors = control_vector_tensors(directions)
    hint = model_hint or geometry_model_hint(geometry)
    if not hint:
        raise EmogeomError("the geometry does not record its model's architecture: give "
                           "model_hint (llama.cpp's name for it, e.g. 'llama', 'gemma3')")
    units = "absolute" if norms is None else "residual-norm"
    extra: dict[str, Any] = {
        "emogeom.version": __version__, "emogeom.emotion": emotion, "emogeom.scale": scale,
        "emogeom.units": units, "emogeom.layer_definition": LAYER_DEFINITION,
        "emogeom.model": str((geometry.model_info or {}).get("model") or geometry.name),
        "emogeom.direction_index": "direction.N = output of decoder block N (0-based)",
    }
    if norms is not None:
        extra["emogeom.residual_norms"] = [float(norms[x]) for x in picked]
    data = control_vector_bytes(tensors, hint, extra)
    path = Path(path)
    atomic_write_bytes(path, data)
    return {"path": str(path), "emotion": emotion, "layers": picked,
            "tensors": list(tensors), "d": int(next(iter(tensors.values())).shape[0]),
            "scale": float(scale), "units": units,
            "norms": None if norms is None else {x: float(norms[x]) for x in picked},
            "model_hint": hint, "sha256": file_sha256(path)}
