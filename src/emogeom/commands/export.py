"""CLI commands for the export room: ``emogeom export`` (llama.cpp control vectors, rsatoolbox
RDMs) and ``emogeom inspect`` (what an emogeom .safetensors or a .gguf holds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from emogeom.commands import device_option, fail
from emogeom.errors import EmogeomError

console = Console()

FORMATS = ("gguf-control-vector", "rsatoolbox")
UNITS = ("norm", "absolute")
_MAX_VALUE = 200  # characters of one metadata value that ``inspect`` prints
_MAX_ROWS = 64  # tensors ``inspect`` lists before it summarises the rest


def _say(text: str) -> None:
    """Print one plain line (no markup, no highlighting, no wrapping)."""
    console.print(escape(text), soft_wrap=True, highlight=False)


def _model_spec(geometry: Any) -> str:
    """The model a geometry was measured on, as a spec ``load_model`` takes."""
    info = geometry.model_info or {}
    local = info.get("local_path")
    if local and Path(local).exists():
        return str(local)
    spec = info.get("model")
    if not spec:
        raise EmogeomError("the geometry does not record its model: pass --model (the model "
                           "it was measured on) or --units absolute")
    return str(spec)


def _norms(geometry: Any, layers: list[int], model: str | None,
           device: str | None) -> tuple[dict[int, float], str]:
    """Mean residual norms at ``layers`` measured on the geometry's model, and the spec."""
    from emogeom.export.directions import measure_norms
    from emogeom.models import load_model

    spec = model or _model_spec(geometry)
    try:
        lm = load_model(spec, "fp32", device=device)
    except Exception as exc:  # noqa: BLE001 - any load failure becomes the one advice line
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EmogeomError(f"cannot load model '{spec}' to measure residual norms ({first}); "
                           "pass --model (the model the geometry was measured on) or "
                           "--units absolute") from None
    n_layers, d = lm.info.get("n_layers"), lm.info.get("d_model")
    if (n_layers, d) != (geometry.n_layers, int(geometry.vectors.shape[-1])):
        raise EmogeomError(f"model '{spec}' has {n_layers} layers, d={d} but the geometry has "
                           f"{geometry.n_layers} layers, d={geometry.vectors.shape[-1]}: pass "
                           "--model with the model the geometry was measured on")
    return measure_norms(lm.model, lm.tokenizer, layers), spec


def _export_gguf(geometry: Any, out: Path, emotion: str | None, layers: str | None,
                 scale: float, units: str, model: str | None, device: str | None) -> str:
    """Write a llama.cpp control vector; returns the summary line."""
    from emogeom.export.llamacpp import export_layers, write_control_vector

    if not emotion:
        raise EmogeomError("--emotion is required for --format gguf-control-vector "
                           f"(one of: {', '.join(geometry.emotions)})")
    if emotion not in geometry.emotions:
        raise EmogeomError(f"unknown emotion '{emotion}' (this geometry has: "
                           f"{', '.join(geometry.emotions)})")
    picked = export_layers(geometry, layers)
    norms, source = (None, None) if units == "absolute" else _norms(geometry, picked, model,
                                                                    device)
    done = write_control_vector(out, geometry, emotion, picked, scale, norms)
    size = (f"scale {scale:g} × mean residual norm ("
            + ", ".join(f"L{k} {v:.4g}" for k, v in done["norms"].items())
            + f", measured on {source})" if norms else f"scale {scale:g} in absolute units")
    return (f"wrote {done['path']}: llama.cpp control vector, '{emotion}', model_hint "
            f"{done['model_hint']}, layers {done['layers']} as "
            f"{', '.join(done['tensors'])} (direction.N = output of block N), d={done['d']}, "
            f"{size}")


def _export_rsa(geometry: Any, out: Path) -> str:
    """Write the geometry's RDMs for rsatoolbox; returns the summary line."""
    try:
        from emogeom.export.rsa import save_rsatoolbox
    except ImportError as exc:
        raise EmogeomError(f"rsatoolbox export is not available in this install ({exc})") \
            from None
    result = save_rsatoolbox(geometry, out)
    where = result if isinstance(result, (str, Path)) else out
    return (f"wrote {where}: rsatoolbox RDMs of '{geometry.name}' ({geometry.n_layers} "
            f"layers, {len(geometry.emotions)} emotions)")


def export_command(
    folder: Path = typer.Argument(..., help="A saved geometry: a Geometry.save folder or a "
                                            "study job folder."),
    format: str = typer.Option(..., "--format", "-f", help="gguf-control-vector | rsatoolbox"),
    out: Path = typer.Option(..., "--out", "-o", help="File to write."),
    emotion: str | None = typer.Option(None, help="Emotion to export (gguf-control-vector)."),
    layers: str | None = typer.Option(
        None, help="Layer, range 'a-b', list 'a,b' or 'all' (= 1..L-1: llama.cpp never steers "
                   "block 0). Default: the geometry's best layer."),
    scale: float = typer.Option(
        1.0, help="Strength: in units of the layer's mean residual norm (as `emogeom steer`'s "
                  "alpha), or of the residual stream with --units absolute. llama.cpp "
                  "multiplies it again by its --control-vector-scaled factor."),
    units: str = typer.Option("norm", help="norm (measure residual norms on the model) | "
                                           "absolute (no model needed)"),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Model to measure residual norms on. Default: the model "
                                    "recorded in the geometry."),
    device: str = device_option(),
) -> None:
    """Write a saved geometry in another tool's format: a llama.cpp control vector that
    steers like `emogeom steer`, or the RDMs for rsatoolbox."""
    from emogeom.analysis import Geometry

    try:
        if format not in FORMATS:
            raise EmogeomError(f"unknown --format '{format}' (use one of: {', '.join(FORMATS)})")
        if units not in UNITS:
            raise EmogeomError(f"unknown --units '{units}' (use one of: {', '.join(UNITS)})")
        geometry = Geometry.load(folder)
        if format == "rsatoolbox":
            line = _export_rsa(geometry, out)
        else:
            line = _export_gguf(geometry, out, emotion, layers, scale, units, model, device)
    except EmogeomError as exc:
        fail(exc)
    _say(line)


def _rounded(value: Any) -> Any:
    """Floats (also inside lists) cut to 7 significant digits: float32 fields print cleanly."""
    if isinstance(value, float):
        return float(f"{value:.7g}")
    if isinstance(value, list):
        return [_rounded(x) for x in value]
    return value


def _short(value: Any) -> str:
    """A metadata value as one line, cut to a readable length."""
    text = value if isinstance(value, str) else json.dumps(_rounded(value), default=str)
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


def _inspect_safetensors(path: Path) -> list[str]:
    """Lines describing an emogeom safetensors file: tensors, then metadata."""
    from emogeom.artefacts import read_tensors

    try:
        tensors, meta = read_tensors(path)
    except EmogeomError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged file can fail in many ways
        raise EmogeomError(f"{path}: not a readable safetensors file ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    lines = [f"{path}: safetensors, {len(tensors)} tensor(s)"]
    lines += _tensor_rows((name, list(a.shape), str(a.dtype)) for name, a in tensors.items())
    lines.append(f"metadata ({len(meta)} keys):" if meta else "metadata: none")
    lines += [f"  {k}: {_short(v)}" for k, v in sorted(meta.items())]
    return lines


def _field_value(field: Any) -> Any:
    """A GGUF field's value (strings decoded, arrays as lists)."""
    try:
        return field.contents()
    except Exception:  # noqa: BLE001 - an odd field is shown by its raw parts
        return [p.tolist() for p in field.parts[-1:]]


def _inspect_gguf(path: Path) -> list[str]:
    """Lines describing a GGUF file (a control vector or any other): KV fields, tensors."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:  # noqa: BLE001 - a damaged file can fail in many ways
        raise EmogeomError(f"{path}: not a readable GGUF file ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    fields = {k: f for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    arch = _field_value(fields["general.architecture"]) if "general.architecture" in fields \
        else None
    kind = "llama.cpp control vector" if arch == "controlvector" else f"architecture {arch}"
    lines = [f"{path}: GGUF, {kind}, {len(reader.tensors)} tensor(s)",
             f"fields ({len(fields)}):"]
    lines += [f"  {k} [{f.types[0].name.lower() if f.types else '?'}]: "
              f"{_short(_field_value(f))}" for k, f in fields.items()]
    lines += _tensor_rows((t.name, [int(x) for x in t.shape], t.tensor_type.name)
                          for t in reader.tensors)
    return lines


def _tensor_rows(rows: Any) -> list[str]:
    """'tensors:' then one line per tensor (name, shape, dtype), the rest summarised."""
    rows = list(rows)
    lines = ["tensors:"] + [f"  {name}  shape {shape}  {dtype}"
                            for name, shape, dtype in rows[:_MAX_ROWS]]
    if len(rows) > _MAX_ROWS:
        lines.append(f"  … {len(rows) - _MAX_ROWS} more")
    return lines


def inspect_command(
    file: Path = typer.Argument(..., help="A .safetensors written by emogeom or a .gguf "
                                          "(control vector or model)."),
) -> None:
    """Print what an emogeom .safetensors or a .gguf file holds: tensors (name, shape,
    dtype) and metadata."""
    try:
        if not file.is_file():
            raise EmogeomError(f"file not found: {file}")
        suffix = file.suffix.lower()
        if suffix == ".safetensors":
            lines = _inspect_safetensors(file)
        elif suffix == ".gguf":
            lines = _inspect_gguf(file)
        else:
            raise EmogeomError(f"{file}: give a .safetensors or .gguf file")
    except EmogeomError as exc:
        fail(exc)
    for line in lines:
        _say(line)


def register(app: typer.Typer) -> None:
    """Add this room's commands to app."""
    app.command("export")(export_command)
    app.command("inspect")(inspect_command)
