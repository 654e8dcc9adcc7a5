"""The package's one cache folder: ``$MAMBAIRV2_CACHE_DIR``, else ``$XDG_CACHE_HOME/mambairv2``,
else ``~/.cache/mambairv2``. The compiled CPU kernels and the record of verified downloads
live in it."""
from __future__ import annotations

import os
from pathlib import Path

ENV = "MAMBAIRV2_CACHE_DIR"


def cache_dir() -> Path:
    """The cache folder (not created here)."""
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mambairv2"
