"""The base class of every error this package raises for a user's mistake or a bad input.

Each such error carries a one-line message that says what is wrong; the command line prints it
as ``error: <message>`` (no traceback) and exits with the error's ``code``.
"""
from __future__ import annotations

from typing import Optional


class MambaIRv2Error(Exception):
    """A user-facing error: bad input, a missing or unusable file, an invalid option."""

    code: int = 2  #: exit status of the command line


class NonFiniteOutputError(MambaIRv2Error, ValueError):
    """A model produced NaN or infinite values: the result is not written (exit status 1)."""

    code = 1


class CheckpointError(MambaIRv2Error, ValueError):
    """A file or state dict that cannot be used as a checkpoint of this package's networks."""


class ConfigError(MambaIRv2Error, ValueError):
    """An unusable configuration: a training config key, or a network hyper-parameter (the
    overrides of ``create_model``, training's ``model.overrides``, a stored configuration).
    ``field``: the offending field's name, where one is to blame."""

    def __init__(self, message: str, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.field = field
