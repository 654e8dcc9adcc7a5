"""The command line's own user-facing error (see :class:`mambairv2.errors.MambaIRv2Error`)."""
from __future__ import annotations

from ..errors import MambaIRv2Error


class CLIError(MambaIRv2Error):
    """A bad option or argument of a command; ``main`` prints ``error: <message>`` and exits with
    ``code`` (2 by default)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def parse_size(text: str, flag: str) -> "tuple[int, int]":
    """``WIDTHxHEIGHT`` (as image sizes are written, e.g. ``1280x720``) → ``(height, width)``."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise CLIError(f"{flag} must be WIDTHxHEIGHT, e.g. 1280x720, got {text!r}") from None
    if w < 1 or h < 1:
        raise CLIError(f"{flag} must be positive, got {text!r}")
    return h, w
