"""Small C kernels built on first use by the system's C compiler and loaded with ``ctypes``.

No Python headers or torch build tools are needed: a kernel is one C file next to this module,
compiled with ``cc -O3 -march=native -fopenmp`` (retried without OpenMP, then without
``-march=native``) into
``$MAMBAIRV2_CACHE_DIR`` (default ``~/.cache/mambairv2``) under a name that hashes the source, the
flags, the compiler and the CPU, so a rebuilt or moved installation never loads a stale or foreign
library. Where no compiler works the kernel is reported unavailable (with the reason) and callers
keep their pure-PyTorch path. Whether a kernel is used at all is decided by ``ops.dispatch``
(``ops.implementation("pytorch")`` uses none).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import logging
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch

from ..utils.cache_dir import cache_dir

# OpenMP first: the kernels then share PyTorch's thread pool (see kernel_parallel.h)
_FLAG_SETS = (["-O3", "-march=native", "-fno-math-errno", "-fopenmp"],
              ["-O3", "-march=native", "-fno-math-errno"], ["-O3", "-fno-math-errno"])


def _cpu_signature() -> str:
    """The CPU model and feature flags (``-march=native`` code must not run on another CPU)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    keep = [ln for ln in lines if ln.startswith(("model name", "flags", "Features", "CPU part"))]
    return "\n".join(sorted(set(keep)))


def _compiler() -> Optional[str]:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _build(cc: str, source: Path) -> Tuple[Path, List[str]]:
    code = b"".join(p.read_bytes() for p in [source, *sorted(source.parent.glob("*.h"))])
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    errors: List[str] = []
    for flags in _FLAG_SETS:
        key = hashlib.sha256(b"\0".join([code, " ".join(flags).encode(), version.encode(),
                                         _cpu_signature().encode(), platform.machine().encode()]))
        target = cache_dir() / f"{source.stem}-{key.hexdigest()[:16]}.so"
        if target.is_dir() and not target.is_symlink():
            try:
                target.rmdir()  # an empty folder in its place: built anew below
            except OSError:
                raise RuntimeError(f"{target} is a folder where the compiled kernel belongs; remove it") from None
        if target.exists():
            return target, flags
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            cmd = [cc, *flags, "-shared", "-fPIC", "-pthread", str(source), "-o", tmp, "-lm"]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if proc.returncode == 0:
                os.replace(tmp, target)  # atomic: concurrent builders never see a partial file
                return target, flags
            errors.append(f"{' '.join(cmd)}: {proc.stderr.strip()[-500:]}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise RuntimeError("; ".join(errors))


_SAID: set = set()


def _say_once(message: str) -> None:
    """One stderr line per process, however many kernels fail the same way (an unwritable
    cache made every kernel warn, with Python's two-line warning format)."""
    if _SAID:
        return
    _SAID.add(message)
    logging.getLogger("mambairv2").warning(message)


# ctypes argument types of the kernels' entry points
PTR, I64, I64_PTR, F32, INT = (ctypes.c_void_p, ctypes.c_int64, ctypes.POINTER(ctypes.c_int64),
                               ctypes.c_float, ctypes.c_int)


class NativeKernel:
    """One C file, built and loaded on first use, with one entry point ``symbol`` taking
    ``argtypes`` and returning an int status."""

    def __init__(self, filename: str, what: str, symbol: str, argtypes: Sequence[type]) -> None:
        self.source = Path(__file__).with_name(filename)
        self.what = what  # for messages, e.g. "scan kernel"
        self.symbol = symbol
        self.argtypes = list(argtypes)
        self._lock = threading.Lock()
        self._lib: Optional[ctypes.CDLL] = None
        self._error: Optional[str] = None
        self.flags: List[str] = []  #: the compiler flags of the loaded build

    def load(self) -> Optional[ctypes.CDLL]:
        """The loaded library, or None (then :meth:`error` says why)."""
        with self._lock:
            if self._lib is not None or self._error is not None:
                return self._lib
            cc = _compiler()
            if cc is None:
                self._error = "no C compiler found (cc, gcc or clang; or set CC)"
                return None
            try:
                path, flags = _build(cc, self.source)
                try:
                    lib = ctypes.CDLL(str(path))
                except OSError:  # a damaged library in the cache (truncated, overwritten): rebuilt once
                    path.unlink(missing_ok=True)
                    path, flags = _build(cc, self.source)
                    lib = ctypes.CDLL(str(path))
                fn = getattr(lib, self.symbol)
                fn.argtypes, fn.restype = self.argtypes, ctypes.c_int
            except Exception as exc:  # noqa: BLE001 - any failure means: use the PyTorch path
                self._error = f"building the {self.what} failed: {exc}"
                _say_once(f"mambairv2: cannot build the C kernels ({' '.join(str(exc).split())[:160]}); "
                          "using the pure-PyTorch path (set MAMBAIRV2_CACHE_DIR to a writable folder)")
                return None
            self._lib, self.flags = lib, flags
            return lib

    def available(self) -> bool:
        """Whether the kernel is (or can be) built and loaded here."""
        return self.load() is not None

    def error(self) -> Optional[str]:
        """Why the kernel is unavailable (None if it is available or was not tried yet)."""
        return self._error

    def native(self) -> bool:
        """Whether it is loaded and was built for this CPU's vector units (-march=native)."""
        return self.load() is not None and "-march=native" in self.flags


def as_dtype(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t.to(dtype)``, without the operator call where ``t`` has that dtype already (the usual
    case for the kernels' float32 inputs: a no-op ``to`` still costs a dispatch)."""
    return t if t.dtype == dtype else t.to(dtype)
