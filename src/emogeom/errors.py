"""User-facing errors: one line that names the problem and the fix."""


class EmogeomError(Exception):
    """An error caused by bad input or setup; the CLI prints it as one line and exits non-zero."""
