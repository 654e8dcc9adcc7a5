"""The one exception type that the CLI turns into a one-line message instead of a traceback."""
from __future__ import annotations


class CLIError(Exception):
    """A user-facing error: bad input, a missing file, an unusable checkpoint.

    ``main`` prints ``error: <message>`` and exits with ``code`` (2 by default).
    """

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code
