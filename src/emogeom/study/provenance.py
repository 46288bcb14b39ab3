"""What determines a job's numbers, and the hash that names its folder.

Model weights are identified by content (sha256 of a GGUF file, or of every file in a local
folder, cached by size and modification time) or, for hub ids, by the commit the revision
resolves to. Anything unpinned is said so in the key (``pinned: false``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from emogeom import artefacts as io
from emogeom.models.loading import _CONVERT_VERSION, ModelSource, cache_dir

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def _hash_cache_file() -> Path:
    return cache_dir() / "file-hashes.json"


def cached_sha256(path: Path, memo: dict[str, Any] | None = None) -> str:
    """sha256 of a file, re-read only when its size or modification time changed."""
    path = path.resolve()
    stat = path.stat()
    memo = memo if memo is not None else {}
    entry = memo.get(str(path))
    if entry and entry["size"] == stat.st_size and entry["mtime_ns"] == stat.st_mtime_ns:
        return entry["sha256"]
    digest = io.file_sha256(path)
    memo[str(path)] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    return digest


def _with_memo(fn):
    """Run ``fn(memo)`` with the on-disk hash memo loaded before and saved after."""
    file = _hash_cache_file()
    try:
        memo = json.loads(file.read_text()) if file.exists() else {}
    except (OSError, ValueError):
        memo = {}
    before = json.dumps(memo, sort_keys=True)
    result = fn(memo)
    if json.dumps(memo, sort_keys=True) != before:
        with contextlib.suppress(OSError):  # a read-only cache only costs re-hashing
            io.write_json(file, memo)
    return result


def folder_sha256(folder: Path, memo: dict[str, Any]) -> str:
    """One hash over every non-hidden file of a model folder (weights, config, tokenizer,
    chat template), by relative path and content."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        digest.update(f"{rel}\0{cached_sha256(path, memo)}\n".encode())
    return digest.hexdigest()


def hub_commit(repo_id: str, revision: str | None) -> tuple[str, bool]:
    """(commit or revision name, pinned?) for a hub model: a 40-hex revision is already a
    commit; otherwise ask the hub, then the local hub cache; else keep the name, unpinned."""
    rev = revision or "main"
    if _COMMIT.match(rev):
        return rev, True
    if os.environ.get("HF_HUB_OFFLINE") not in ("1", "true", "True"):
        try:
            from huggingface_hub import HfApi

            return HfApi().model_info(repo_id, revision=rev).sha, True
        except Exception:  # noqa: BLE001 - no network, gated, or unknown: fall back below
            pass
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        ref = Path(HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs" / rev
        if ref.is_file():
            return ref.read_text().strip(), True
    except Exception:  # noqa: BLE001 - an odd cache layout is not an error
        pass
    return rev, False


def model_fingerprint(source: ModelSource, revision: str | None) -> dict[str, Any]:
    """The identity of a model's weights and tokenizer, without loading it."""
    if source.kind == "hub":
        commit, pinned = hub_commit(source.spec, revision)
        return {"hub_id": source.spec, "commit": commit, "pinned": pinned}

    def compute(memo: dict[str, Any]) -> dict[str, Any]:
        if source.kind == "embedded":
            from emogeom.models.embedded import embedded_gguf

            gguf, sha = embedded_gguf(source.spec, cache_dir())
            return {"embedded": source.spec, "gguf_sha256": sha or cached_sha256(gguf, memo),
                    "converter": _CONVERT_VERSION, "pinned": True}
        if source.kind == "gguf":
            return {"gguf_sha256": cached_sha256(Path(source.path), memo),
                    "converter": _CONVERT_VERSION, "pinned": True}
        return {"folder_sha256": folder_sha256(Path(source.path), memo), "pinned": True}

    return _with_memo(compute)


def job_hash(key: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a job key."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
