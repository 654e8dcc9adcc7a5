"""Atomic file writes: a temporary file in the target's folder, renamed into place, so a
crash or Ctrl-C never leaves a half-written file under the final name.

Temporary files are named ``.NAME.HOST.PID.RANDOM.part``. A process killed by SIGKILL cannot
remove its own; :func:`remove_stale_parts` removes those whose writer is gone (a dead process
on this host, or a file untouched for an hour when written from another host).
"""
from __future__ import annotations

import os
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, List, Union

PathLike = Union[str, "os.PathLike[str]"]
PART_SUFFIX = ".part"
#: A temporary file from another host is taken as abandoned after this many seconds untouched.
FOREIGN_PART_AGE_S = 3600.0


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _host() -> str:
    return socket.gethostname().replace(".", "_") or "host"


def _temporary(path: Path) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_host()}.{os.getpid()}.", suffix=PART_SUFFIX,
                               dir=str(path.parent))
    os.close(fd)
    return tmp


def _publish(tmp: str, path: Path, overwrite: bool) -> None:
    """Gives ``tmp`` the usual permissions (0666 minus the umask; ``mkstemp`` makes 0600) and
    moves it to ``path``; without ``overwrite`` an existing ``path`` is never replaced."""
    os.chmod(tmp, 0o666 & ~current_umask())
    if overwrite:
        os.replace(tmp, path)
        return
    try:  # a hard link fails if the target appeared meanwhile: never clobber it
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(f"{path} exists") from None
    except OSError:  # file systems without hard links
        if path.exists():
            raise FileExistsError(f"{path} exists") from None
        os.replace(tmp, path)


@contextmanager
def atomic_path(path: PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yields a temporary path next to ``path`` for the caller to write; when the block ends
    normally the file is flushed to disk and moved to ``path``. On any exception (Ctrl-C
    included) it is removed.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false (checked before and after).
        OSError: the folder cannot be created or written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} exists")
    tmp = _temporary(path)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _publish(tmp, path, overwrite)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: PathLike, data: bytes, overwrite: bool = False) -> Path:
    """Writes ``data`` to ``path`` atomically: ``path`` is always absent, the old file, or the
    complete new one.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        OSError: the folder cannot be created or written.
    """
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return path


def check_writable(folder: PathLike) -> None:
    """Creates ``folder`` if needed and proves a file can be created in it (then removes it).

    Raises:
        OSError: with the reason (permission denied, read-only file system, not a folder…).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder")
    tmp = _temporary(folder / "write-test")
    os.unlink(tmp)


def _writer_gone(name: str, mtime: float) -> bool:
    """Whether the process that made the temporary file ``name`` no longer runs."""
    parts = name[: -len(PART_SUFFIX)].split(".")
    if len(parts) < 4 or not parts[-2].isdigit():  # not ours, or an older naming: age decides
        return time.time() - mtime > FOREIGN_PART_AGE_S
    host, pid = parts[-3], int(parts[-2])
    if host != _host():
        return time.time() - mtime > FOREIGN_PART_AGE_S
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def remove_stale_parts(targets: Iterable[PathLike]) -> List[Path]:
    """Removes the temporary files that interrupted writes of ``targets`` left behind (only
    those whose writer is gone) and returns them."""
    by_folder: dict = {}
    for target in targets:
        target = Path(target)
        by_folder.setdefault(target.parent, set()).add(target.name)
    removed: List[Path] = []
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            n = entry.name
            if not (n.startswith(".") and n.endswith(PART_SUFFIX)):
                continue
            if not any(n.startswith(f".{name}.") for name in names):
                continue
            try:
                if entry.is_file(follow_symlinks=False) and _writer_gone(n, entry.stat(follow_symlinks=False).st_mtime):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
            except OSError:
                continue
    return removed
