"""The CLI's outer edge: any exception a user can cause becomes one ``error:`` line and exit 2.

``emogeom --debug ...`` or ``EMOGEOM_DEBUG=1`` lets the traceback through instead. Errors the
user cannot have caused (bugs) still get one line, with exit 1 and a pointer to ``--debug``.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable

from emogeom.errors import EmogeomError

DEBUG_ENV = "EMOGEOM_DEBUG"
KEPT = "finished jobs are kept; run the same command again to resume"


def debug_requested(argv: list[str]) -> bool:
    """True when ``--debug`` is among the arguments or ``$EMOGEOM_DEBUG`` is set."""
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _where(exc: OSError) -> str:
    return f" {exc.filename}" if exc.filename else ""


def os_error_line(exc: OSError) -> str:
    """One line for a file-system error: what happened, to which file, and what to do."""
    code = exc.errno
    if code == errno.ENOSPC or code == getattr(errno, "EDQUOT", -1):
        return (f"no space left on the device while writing{_where(exc)}; free some space or "
                f"choose another --out ({KEPT})")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"permission denied:{_where(exc) or ' a file'} cannot be written or read; "
                "check its permissions or choose another --out")
    if code == errno.ENOENT:
        return f"file not found:{_where(exc) or ' (unnamed)'}; check the path"
    if code == errno.EISDIR:
        return f"{exc.filename or 'path'} is a folder where a file was expected; give a file"
    if code == errno.ENOTDIR:
        return f"{exc.filename or 'path'} is a file where a folder was expected; give a folder"
    return f"{exc.strerror or type(exc).__name__}:{_where(exc)}"


def error_line(exc: BaseException) -> tuple[str, int]:
    """(one-line message, exit code) for an exception that reached the CLI boundary."""
    if isinstance(exc, EmogeomError):
        return str(exc).splitlines()[0] if str(exc) else "failed", 2
    if isinstance(exc, OSError):
        return os_error_line(exc), 2
    if isinstance(exc, UnicodeDecodeError):
        return (f"a file is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as "
                "UTF-8"), 2
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return (f"out of memory ({type(exc).__name__}); lower --max-batch-tokens, choose a "
                f"lower precision or another --device ({KEPT})"), 2
    first = str(exc).splitlines()[0] if str(exc) else ""
    return (f"unexpected {type(exc).__name__}: {first} (this is a bug in emogeom: rerun with "
            "--debug for the traceback and report it)"), 1


def guarded(app: Callable[[], object], argv: list[str] | None = None) -> None:
    """Run the typer ``app``; turn what escapes it into one ``error:`` line on stderr."""
    from emogeom.commands import print_error

    argv = sys.argv if argv is None else argv
    if debug_requested(argv):
        app()
        return
    try:
        app()
    except KeyboardInterrupt:
        print_error(f"interrupted; {KEPT}")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the one place every error is turned into a line
        line, code = error_line(exc)
        print_error(line)
        sys.exit(code)
