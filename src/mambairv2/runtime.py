"""Process-level settings that make CPU inference faster.

The network allocates and frees many large tensors per layer. With glibc's default malloc
settings every such buffer above 128 KiB is a fresh ``mmap`` whose pages fault in one by one
when first written and go back to the kernel when freed, so the same memory is faulted in
again for every layer: on a 2-core machine that cost 25% of a base x4 forward.
:func:`tune_allocator` raises glibc's mmap and trim thresholds so freed buffers are reused.
The commands call it; library users may call it once at start-up (it changes the whole
process's allocator, which is why the library does not do it on import).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

_done = False


def tune_allocator(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30,
                   top_pad: int = 64 << 20) -> bool:
    """Sets glibc ``mallopt`` thresholds (Linux with glibc only; a no-op returning False
    elsewhere). Returns whether the settings were applied."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_THRESHOLD, mmap_threshold), (_M_TRIM_THRESHOLD, trim_threshold), (_M_TOP_PAD, top_pad)))
    _done = ok
    return ok
