"""How the app is started (the options of ``mambairv2 app``); standard library only."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ..defaults import APP_MAX_PIXELS, APP_MAX_UPLOAD_MB

if TYPE_CHECKING:
    from .jobs import Limits


@dataclass
class Settings:
    """How the app is started (see ``mambairv2 app --help``)."""

    host: str = "127.0.0.1"
    port: int = 7860
    weights_dir: Optional[Path] = None
    max_upload_mb: float = APP_MAX_UPLOAD_MB
    max_pixels: int = APP_MAX_PIXELS
    work_dir: Optional[Path] = None

    @property
    def limits(self) -> "Limits":
        from .jobs import Limits

        return Limits(max_upload_bytes=int(self.max_upload_mb * 1e6), max_pixels=int(self.max_pixels))
