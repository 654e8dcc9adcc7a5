"""The command line's own user-facing error (see :class:`mambairv2.errors.MambaIRv2Error`)."""
from __future__ import annotations

from ..errors import MambaIRv2Error


class CLIError(MambaIRv2Error):
    """A bad option or argument of a command; ``main`` prints ``error: <message>`` and exits with
    ``code`` (2 by default)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code
