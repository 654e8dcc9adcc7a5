"""The base class of every error this package raises for a user's mistake or a bad input.

Each such error carries a one-line message that says what is wrong; the command line prints it
as ``error: <message>`` (no traceback) and exits with the error's ``code``.
"""
from __future__ import annotations


class MambaIRv2Error(Exception):
    """A user-facing error: bad input, a missing or unusable file, an invalid option."""

    code: int = 2  #: exit status of the command line


class NonFiniteOutputError(MambaIRv2Error, ValueError):
    """A model produced NaN or infinite values: the result is not written (exit status 1)."""

    code = 1


class CheckpointError(MambaIRv2Error, ValueError):
    """A file or state dict that cannot be used as a checkpoint of this package's networks."""
