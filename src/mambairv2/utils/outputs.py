"""The one output policy every command that writes calls before it computes anything.

An output never lands on an input of the same command (resolved paths, symbolic and hard links
included), never replaces an existing file without ``--overwrite``, has the expected suffix, and
is written atomically (:mod:`mambairv2.utils.atomic`). A refusal is one line that names the
option and says what to do (:class:`OutputError`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

from ..errors import MambaIRv2Error

PathLike = Union[str, "os.PathLike[str]"]


class OutputError(MambaIRv2Error):
    """An output path the policy refuses; the message names the option and the way out."""


def _same(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file or folder (links followed, hard links included)."""
    try:
        if os.path.realpath(a) == os.path.realpath(b):
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(child: Path, folder: Path) -> bool:
    try:
        Path(os.path.realpath(child)).relative_to(os.path.realpath(folder))
        return True
    except ValueError:
        return False


def is_input(path: PathLike, inputs: Iterable[PathLike]) -> Optional[Path]:
    """The input ``path`` would write over (the same file, or a file inside an input folder), or None."""
    path = Path(path)
    for item in inputs:
        item = Path(item)
        if _same(path, item) or (item.is_dir() and _inside(path, item)):
            return item
    return None


def _nearest_existing(folder: Path) -> Path:
    """``folder``, or its nearest ancestor that exists (the one a write would create folders in)."""
    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def check_writable(folder: Path, option: str, path: Path) -> None:
    """Refuses an output whose folder (or the nearest existing one) cannot be written: a
    read-only file system or missing permission (``access(2)`` reports both, for root too)."""
    where = _nearest_existing(folder)
    if where.is_dir() and not os.access(where, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path}: cannot write in {where} (read-only or no permission); "
                          "choose another place")


def check_output(path: PathLike, option: str, *, inputs: Iterable[PathLike] = (), overwrite: bool = False,
                 suffixes: Optional[Sequence[str]] = None) -> Path:
    """Checks the output file ``path`` of ``option`` (e.g. ``"--json"``) before any work.

    Raises:
        OutputError: a wrong suffix, a folder, an input of the command, an existing file
            without ``overwrite``, or a folder that cannot be written.
    """
    path = Path(path)
    if suffixes and path.suffix.lower() not in tuple(s.lower() for s in suffixes):
        raise OutputError(f"{option} {path}: the name must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise OutputError(f"{option} {path}: is a folder; name a file")
    hit = is_input(path, inputs)
    if hit is not None:
        raise OutputError(f"{option} {path}: would write over the input {hit}; choose another name")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputError(f"{option} {path}: exists (--overwrite replaces it)")
    if path.parent.exists() and not path.parent.is_dir():
        raise OutputError(f"{option} {path}: {path.parent} is not a folder")
    check_writable(path.parent, option, path)
    return path


def check_output_dir(folder: PathLike, option: str, *, inputs: Iterable[PathLike] = ()) -> Path:
    """Checks the output folder ``folder`` of ``option``: not a file, not an input folder nor
    the folder of an input file, not inside an input folder.

    Raises:
        OutputError: with the reason.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{option} {folder}: is a file; name a folder")
    for item in inputs:
        item = Path(item)
        home = item if item.is_dir() else item.parent
        if _same(folder, home) or (item.is_dir() and _inside(folder, item)):
            raise OutputError(f"{option} {folder}: is an input folder ({item}); write elsewhere")
    check_writable(folder, option, folder)
    return folder


def check_written_file(path: PathLike, option: str, *, inputs: Iterable[PathLike] = ()) -> Path:
    """Checks one file about to be written inside an output folder (per-file outputs).

    Raises:
        OutputError: it is one of the inputs.
    """
    hit = is_input(path, inputs)
    if hit is not None:
        raise OutputError(f"{option}: {path} would write over the input {hit}; write elsewhere")
    return Path(path)
