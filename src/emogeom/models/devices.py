"""Where a model runs: ``--device auto|cpu|cuda|cuda:N|mps``, how its weights are placed, and
what the manifest records about the hardware.

- ``resolve_device("auto")`` is ``cuda`` when a CUDA device is visible, else ``mps``, else
  ``cpu``; an explicit device that is not there is a one-line ``EmogeomError``.
- ``placement`` decides ``from_pretrained``'s ``device_map``: none on CPU (weights load as
  before, bit for bit), the one device otherwise, and ``"auto"`` (spread over the visible GPUs,
  ``max_memory`` passed through) when the weights do not fit the free memory of one GPU or
  ``max_memory`` is given.
- ``input_device`` is where inputs go (the input embedding's device); ``device_info`` is what
  manifests record (devices used, device map when spread, GPU names, CUDA and driver versions).
- ``job_device`` is the device a study job's worker uses (``$EMOGEOM_DEVICE`` first);
  ``worker_gpu`` pins local worker processes to GPUs round-robin.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from typing import Any

import torch

from emogeom.errors import EmogeomError

DEVICE_HELP = "auto (CUDA if present, else MPS, else CPU) | cpu | cuda | cuda:N | mps"
MAX_MEMORY_HELP = ("With device_map='auto' over several GPUs: memory per device, e.g. "
                   "'0=20GiB,1=20GiB,cpu=64GiB', or one size for every GPU ('20GiB').")
DEVICE_ENV = "EMOGEOM_DEVICE"
HEADROOM = 1.2  # weights × this must fit a GPU's free memory (activations, CUDA context)

_CUDA_N = re.compile(r"^cuda:(\d+)$")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(spec: str | None = "auto") -> str:
    """``auto`` → ``cuda`` | ``mps`` | ``cpu`` (first present); ``cpu``, ``cuda``, ``cuda:N`` and
    ``mps`` are checked against what this machine has. Raises a one-line EmogeomError for an
    unknown or absent device."""
    name = (spec or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if _mps_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name == "mps":
        if not _mps_available():
            raise EmogeomError("--device mps: no MPS device here (torch.backends.mps."
                               "is_available() is False); use --device cpu or auto")
        return "mps"
    match = _CUDA_N.match(name)
    if name == "cuda" or match:
        if not torch.cuda.is_available():
            raise EmogeomError(f"--device {name}: no CUDA device is visible here "
                               "(torch.cuda.is_available() is False); use --device cpu or auto")
        if match:
            index, count = int(match.group(1)), torch.cuda.device_count()
            if index >= count:
                raise EmogeomError(f"--device {name}: only {count} CUDA device(s) are visible "
                                   f"(cuda:0..cuda:{count - 1})")
        return name
    raise EmogeomError(f"--device {spec}: unknown device (use {DEVICE_HELP})")


def job_device(spec_device: str | None = None) -> str:
    """The ``device`` a study job passes to ``load_model``, checked here (an absent device is
    the usual one-line error): the study's or model's ``device`` (default ``auto``), except
    that in a worker pinned to a GPU (``$EMOGEOM_DEVICE`` set by the executor, with
    ``CUDA_VISIBLE_DEVICES`` showing that GPU alone) ``cuda`` and ``cuda:N`` mean that GPU;
    ``auto`` stays ``auto`` (there it resolves to that GPU), ``cpu`` and ``mps`` stay as
    asked."""
    asked = (spec_device or "auto").strip().lower()
    pinned = os.environ.get(DEVICE_ENV)
    if pinned and asked.startswith("cuda"):
        asked = pinned
    resolve_device(asked)
    return asked


def input_device(model: Any) -> torch.device:
    """Where a model's inputs go: the device of its input embedding (the first block of a
    model spread over devices), else of its first parameter."""
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    weight = getattr(emb, "weight", None)
    return weight.device if weight is not None else next(model.parameters()).device


def is_oom(exc: BaseException) -> bool:
    """True for a device out-of-memory error (``torch.OutOfMemoryError``, or a RuntimeError
    whose message says so, as MPS and older CUDA builds raise)."""
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_cached_memory() -> None:
    """Hand cached blocks back after an out-of-memory error (no-op without CUDA)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---- placement -------------------------------------------------------------------------------


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B)?\s*$", re.IGNORECASE)


def max_memory_option(text: str | None) -> dict[int | str, str] | None:
    """``--max-memory`` text → a ``max_memory`` dict as a study stores it (checked, no torch
    needed): ``'0=20GiB,cpu=64GiB'`` → {0: '20GiB', 'cpu': '64GiB'}; one size for every GPU
    (``'20GiB'``) → {'*': '20GiB'}."""
    if text is None or not str(text).strip():
        return None
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if len(parts) == 1 and "=" not in parts[0]:
        items: list[tuple[Any, str]] = [("*", parts[0])]
    else:
        items = []
        for part in parts:
            key, sep, size = part.partition("=")
            if not sep:
                raise EmogeomError(f"--max-memory {text}: '{part}' is not DEVICE=SIZE "
                                   "(e.g. 0=20GiB,cpu=64GiB)")
            items.append((key.strip(), size.strip()))
    return _checked_memory(items)


def _checked_memory(items: list[tuple[Any, Any]]) -> dict[int | str, str]:
    out: dict[int | str, str] = {}
    for key, size in items:
        key = str(key).strip().lower().removeprefix("cuda:")
        if key.isdigit():
            dev: int | str = int(key)
        elif key in ("cpu", "mps", "disk", "*"):
            dev = key
        else:
            raise EmogeomError(f"--max-memory: unknown device '{key}' (use a GPU index, cpu, "
                               "disk, or one size for every GPU)")
        size = str(size).strip()
        if not _SIZE.match(size):
            raise EmogeomError(f"--max-memory: '{size}' is not a size like 20GiB or 500MB")
        out[dev] = size.replace(" ", "")
    return out


def parse_max_memory(value: str | dict | None, n_gpus: int) -> dict[int | str, str] | None:
    """accelerate's ``max_memory`` from ``--max-memory`` text or a study's dict: GPU indices,
    ``cpu``, ``disk``; ``*`` (or a single size) sets each of the ``n_gpus`` GPUs."""
    if value is None or value == "" or value == {}:
        return None
    memory = _checked_memory(list(value.items())) if isinstance(value, dict) \
        else max_memory_option(value)
    if memory and "*" in memory:
        every = memory.pop("*")
        for i in range(max(n_gpus, 1)):
            memory.setdefault(i, every)
    return memory or None


def placement(device: str, weights_bytes: int | None, free_bytes: list[int],
              max_memory: dict | None = None, current: int = 0
              ) -> tuple[str | dict | None, str]:
    """``from_pretrained``'s ``device_map`` for a resolved ``device`` and a reason:
    ``None`` on CPU (plain load, as before); ``{"": device}`` for one device; ``"auto"``
    (layers spread over the visible GPUs, CPU offload last) on ``cuda`` when ``max_memory`` is
    given or the weights × HEADROOM exceed the free memory of the current GPU
    (``free_bytes[0]``, GPU ``current``). ``cuda:N`` always pins to GPU N."""
    if device == "cpu":
        return None, "cpu"
    if device != "cuda":
        return {"": device}, f"one device ({device})"
    if max_memory:
        return "auto", "max_memory given: spread over the visible GPUs"
    if weights_bytes is not None and free_bytes and weights_bytes * HEADROOM > free_bytes[0]:
        gib = 2 ** 30
        return "auto", (f"weights {weights_bytes / gib:.1f} GiB do not fit one GPU "
                        f"({free_bytes[0] / gib:.1f} GiB free): spread over "
                        f"{len(free_bytes)} GPU(s), CPU offload if they are not enough")
    return {"": f"cuda:{current}"}, "one GPU"


def gpu_free_bytes() -> list[int]:
    """Free memory of each visible GPU, current device first (empty without CUDA)."""
    if not torch.cuda.is_available():
        return []
    current = torch.cuda.current_device()
    order = [current] + [i for i in range(torch.cuda.device_count()) if i != current]
    return [int(torch.cuda.mem_get_info(i)[0]) for i in order]


# ---- what the manifest records ---------------------------------------------------------------


def _device_name(value: Any) -> str:
    if isinstance(value, int):
        return f"cuda:{value}"
    if isinstance(value, torch.device):
        return f"cuda:{value.index or 0}" if value.type == "cuda" else str(value)
    return str(value)


def model_devices(model: Any) -> list[str]:
    """The devices a model's weights live on: its ``hf_device_map`` values when it has one
    (``cuda:N``, ``cpu``, ``disk``), else the devices of its parameters."""
    device_map = getattr(model, "hf_device_map", None)
    if isinstance(device_map, dict) and device_map:
        names = {_device_name(v) for v in device_map.values()}
    else:
        names = {_device_name(p.device) for p in model.parameters()}
    return sorted(names)


@functools.lru_cache(maxsize=1)
def nvidia_driver() -> str | None:
    """The NVIDIA driver version from ``nvidia-smi`` (None when it is not installed)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [x.strip() for x in out.splitlines() if x.strip()]
    return lines[0] if lines else None


def device_info(model: Any) -> dict[str, Any]:
    """Where a model runs, for the manifest: ``devices`` (and the ``device_map`` when spread
    over several), and on CUDA the GPUs' names and memory, CUDA and driver versions and
    ``CUDA_VISIBLE_DEVICES``."""
    devices = model_devices(model)
    info: dict[str, Any] = {"devices": devices, "input_device": str(input_device(model))}
    device_map = getattr(model, "hf_device_map", None)
    if isinstance(device_map, dict) and len(devices) > 1:
        info["device_map"] = {k: _device_name(v) for k, v in device_map.items()}
    gpus = sorted({int(d.split(":")[1]) for d in devices if d.startswith("cuda:")})
    if gpus and torch.cuda.is_available():
        info["gpus"] = [{"device": f"cuda:{i}", "name": torch.cuda.get_device_name(i),
                         "memory_gib": round(torch.cuda.get_device_properties(i).total_memory
                                             / 2 ** 30, 1)} for i in gpus]
        info["cuda"] = torch.version.cuda
        info["driver"] = nvidia_driver()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            info["cuda_visible_devices"] = visible
    elif "mps" in devices:
        info["gpus"] = [{"device": "mps", "name": "Apple MPS"}]
    return info


# ---- workers ---------------------------------------------------------------------------------


def visible_gpus() -> list[str]:
    """The GPU ids a worker may be pinned to: the entries of ``CUDA_VISIBLE_DEVICES`` when it
    is set, else ``0..device_count-1`` (empty without CUDA)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [x.strip() for x in visible.split(",") if x.strip() and x.strip() != "-1"]
    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() \
        else []


def worker_gpu(index: int, gpus: list[str]) -> str | None:
    """The ``CUDA_VISIBLE_DEVICES`` value of local worker ``index``: its own GPU, round-robin
    over ``gpus``; None (leave the environment alone) when there is no GPU."""
    return gpus[index % len(gpus)] if gpus else None
