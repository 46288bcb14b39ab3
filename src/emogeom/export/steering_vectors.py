"""An emotion direction as a ``steering_vectors.SteeringVector`` (the steering-vectors package).

``SteeringVector(layer_activations={layer: [d]}, layer_type="decoder_block").apply(model)``
adds each vector to the output of decoder block ``layer`` (0-based, the package's guessed
block list, e.g. ``model.layers.{num}`` or ``transformer.h.{num}``) at every position from
``min_token_index`` (default 0) on; emogeom's steering adds the same vector to the same
block output at every position, so the two agree when the vectors are the same (exactly in
fp32; in bf16/fp16 the package adds in fp32 before rounding, emogeom rounds the vector first).
No shim is needed for transformers 5: blocks returning a tensor or a tuple both work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from emogeom.errors import EmogeomError
from emogeom.export.directions import chosen_layers, measure_norms, steering_directions


def _package() -> Any:
    """The steering_vectors module, or a one-line error saying how to get it."""
    try:
        import steering_vectors
    except ImportError:
        raise EmogeomError("steering-vectors export needs the package: "
                           "pip install steering-vectors") from None
    return steering_vectors


def layer_config(model: Any) -> dict[str, str]:
    """{'decoder_block': '<path>.{num}'}: emogeom's blocks, for ``apply(layer_config=...)``."""
    from emogeom.extraction.pooled import decoder_layers

    blocks = decoder_layers(model)
    names = {id(m): n for n, m in model.named_modules()}
    first = names.get(id(blocks[0]), "")
    if not first.endswith(".0"):
        raise EmogeomError(f"cannot name the decoder blocks of {type(model).__name__} for "
                           "steering-vectors")
    return {"decoder_block": first[:-2] + ".{num}"}


def check_layer_matching(model: Any) -> None:
    """Raise unless the package's guessed decoder blocks are the ones emogeom steers."""
    from steering_vectors import guess_and_enhance_layer_config

    wanted = layer_config(model)["decoder_block"]
    guessed = guess_and_enhance_layer_config(model, None, "decoder_block").get("decoder_block")
    if guessed != wanted:
        raise EmogeomError(f"steering-vectors guesses decoder blocks '{guessed}' but emogeom "
                           f"steers '{wanted}': pass layer_config={{'decoder_block': "
                           f"'{wanted}'}} to apply()")


def to_steering_vector(geometry: Any, emotion: str, layers: int | Sequence[int] | str | None
                       = None, alpha: float = 1.0, model: Any = None,
                       tokenizer: Any = None) -> Any:
    """``SteeringVector`` of ``emotion`` at ``layers`` (default: the best layer).

    With ``model`` and ``tokenizer``: ``alpha`` in emogeom's units (× the layer's mean residual
    norm on the neutral sentences, measured on this model), so ``sv.apply(model)`` moves the
    model exactly as ``emogeom.steer(model, tokenizer, geometry, emotion, alpha, layers)``.
    Without a model: absolute units, ``alpha × unit(vector)`` (no norm is measured).
    """
    sv = _package()
    import torch

    chosen = chosen_layers(geometry, layers)
    norms = None
    if model is not None:
        if tokenizer is None:
            raise EmogeomError("give the tokenizer with the model: the residual norms are "
                               "measured on the neutral sentences")
        check_layer_matching(model)
        norms = measure_norms(model, tokenizer, chosen)
    directions = steering_directions(geometry, emotion, chosen, alpha, norms)
    return sv.SteeringVector(
        layer_activations={k: torch.from_numpy(v).float() for k, v in directions.items()},
        layer_type="decoder_block")
