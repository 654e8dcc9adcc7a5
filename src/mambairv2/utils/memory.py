"""How much memory this process may still use: the least of free RAM, the cgroup (v1 or v2)
limit minus its usage, the address-space limit (``ulimit -v``, RLIMIT_AS) minus the address
space already mapped, and, for a GPU, its free memory. Used to choose ``--tile auto``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Union

import torch

#: cgroup files: (limit, usage), v2 first.
_CGROUP_FILES = (("memory.max", "memory.current"), ("memory.limit_in_bytes", "memory.usage_in_bytes"))
_UNLIMITED = 1 << 60  # cgroup v1 reports "no limit" as a number near 2**63


def _read_int(path: Path) -> Optional[int]:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_dirs() -> list:
    """This process's memory cgroup folders (v2 unified path and v1 memory controller)."""
    root = Path("/sys/fs/cgroup")
    dirs = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        rel = rel.lstrip("/")
        if controllers == "":  # v2
            dirs += [root / rel, root]
        elif "memory" in controllers.split(","):
            dirs += [root / "memory" / rel, root / "memory"]
    return dirs


def cgroup_available_bytes() -> Optional[int]:
    """Limit minus usage of the tightest memory cgroup this process is in, or None."""
    best = None
    for folder in _cgroup_dirs():
        for limit_name, usage_name in _CGROUP_FILES:
            limit = _read_int(folder / limit_name)
            if limit is None or limit >= _UNLIMITED:
                continue
            usage = _read_int(folder / usage_name) or 0
            left = max(0, limit - usage)
            best = left if best is None else min(best, left)
    return best


def address_space_available_bytes() -> Optional[int]:
    """RLIMIT_AS (``ulimit -v``) minus the address space already mapped, or None if unlimited."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return None
    mapped = 0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                mapped = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return max(0, soft - mapped)


def ram_available_bytes() -> Optional[int]:
    """The OS's available memory (MemAvailable), or None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def memory_sources(device: Union[str, torch.device] = "cpu") -> Dict[str, int]:
    """Every known bound on the memory still usable on ``device``, by name (bytes)."""
    device = torch.device(device)
    found: Dict[str, Optional[int]] = {}
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        found["gpu free"] = int(free)
    elif device.type == "mps":
        mps = getattr(torch, "mps", None)
        if mps is not None and hasattr(mps, "recommended_max_memory"):
            found["mps free"] = int(mps.recommended_max_memory() - mps.current_allocated_memory())
    else:
        found["free RAM"] = ram_available_bytes()
        found["cgroup limit"] = cgroup_available_bytes()
    # the address-space limit also bounds the host memory a GPU run needs for its tiles
    found["ulimit -v"] = address_space_available_bytes()
    return {k: v for k, v in found.items() if v is not None}


def usable_memory_bytes(device: Union[str, torch.device] = "cpu") -> int:
    """The least of :func:`memory_sources` (4 GiB if nothing is known)."""
    sources = memory_sources(device)
    return min(sources.values()) if sources else 4 << 30
