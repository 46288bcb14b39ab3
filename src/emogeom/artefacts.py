"""Atomic artefact I/O: JSON, CSV and safetensors written to a temp file, then renamed."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save

from emogeom.errors import EmogeomError

_META_KEY = "__emogeom_meta__"


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets under the current umask (0644 under the usual 022):
    ``mkstemp`` makes 0600 files, which would leave a shared report unreadable to others."""
    return 0o666 & ~current_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (artefact checksums in manifests)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksums(root: Path, names: list[str]) -> dict[str, str]:
    """sha256 of each file named (folders: every file under them), keyed by path under
    ``root``; names that do not exist are skipped."""
    sums: dict[str, str] = {}
    for name in names:
        path = root / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else \
            ([path] if path.is_file() else [])
        for f in files:
            sums[f.relative_to(root).as_posix()] = file_sha256(f)
    return sums


def first_damage(root: Path, sums: dict[str, str]) -> str | None:
    """The first file of ``sums`` that is missing or differs from its checksum, said in a few
    words (None when all match)."""
    for name, digest in sums.items():
        path = root / name
        if not path.is_file():
            return f"{name} missing"
        if file_sha256(path) != digest:
            return f"{name} does not match its checksum"
    return None


def write_json(path: Path, obj: Any) -> None:
    """Strict JSON (NaN and inf become null), written atomically."""
    text = json.dumps(_finite(obj), indent=2, default=_jsonable, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def json_data(obj: Any) -> Any:
    """``obj`` as it reads back from ``write_json`` (arrays → lists, NaN/inf → None)."""
    return json.loads(json.dumps(_finite(obj), default=_jsonable, allow_nan=False))


def _finite(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, np.ndarray):
        return _finite(x.tolist())
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    return x


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x)}")


def csv_cell(value: Any) -> str:
    """CSV text: 6 significant digits for floats, empty for missing or NaN."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_tensors(path: Path, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> str:
    """Save float arrays as safetensors with JSON metadata; returns the file's sha256.

    The metadata goes in as one sorted JSON string: safetensors writes a metadata map in no
    fixed order, and one key keeps the same inputs giving byte-identical files."""
    text = json.dumps(_finite(meta), sort_keys=True, default=_jsonable)
    data = save({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                metadata={_META_KEY: text})
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def read_tensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load a safetensors file and its decoded metadata (no pickle involved)."""
    from safetensors import safe_open

    if not path.exists():
        raise EmogeomError(f"artefact missing: {path}")
    with safe_open(str(path), framework="numpy") as fh:
        raw = fh.metadata() or {}
    meta = json.loads(raw[_META_KEY]) if _META_KEY in raw else {
        k: json.loads(v) for k, v in raw.items()}
    return load_file(str(path)), meta


def write_rdm_csv(path: Path, rdm: np.ndarray, emotions: list[str]) -> None:
    rows = [[e, *[f"{v:.6f}" for v in row]] for e, row in zip(emotions, rdm)]
    write_csv(path, ["emotion", *emotions], rows)


def read_rdm_csv(path: Path) -> tuple[np.ndarray, list[str]]:
    rows = read_csv(path)
    emotions = [r["emotion"] for r in rows]
    return np.array([[float(r[e]) for e in emotions] for r in rows]), emotions


def read_json(path: Path) -> Any:
    if not path.exists():
        raise EmogeomError(f"artefact missing: {path}")
    return json.loads(path.read_text())
