"""One writer per study folder: an advisory lock on ``OUT/.emogeom.lock``.

The lock is an ``flock`` on the file, so the operating system releases it when the writer
exits or is killed: no stale lock survives a crash. The file holds the writer's pid, which a
second writer names in its error.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from emogeom.errors import EmogeomError

LOCK_NAME = ".emogeom.lock"

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, one writer assumed
    fcntl = None  # type: ignore[assignment]


def holder(out: Path) -> str:
    """The pid recorded in ``out``'s lock file ('?' when unreadable)."""
    try:
        return (out / LOCK_NAME).read_text().strip() or "?"
    except OSError:
        return "?"


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold ``out``'s writer lock for the block; a second writer gets one clear error. The
    lock file is removed on release, so a finished run leaves no trace of it."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    fd = _acquire(path, out)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        path.unlink(missing_ok=True)  # before closing: a waiting opener then sees a new file
        os.close(fd)


def _acquire(path: Path, out: Path) -> int:
    """An open descriptor of ``path`` holding its flock; retried when the file was replaced
    between opening and locking (its last holder removed it)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        if fcntl is None:
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise EmogeomError(
                f"{out} is being written by pid {holder(out)}; wait for that run to finish "
                "or choose another output folder") from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
