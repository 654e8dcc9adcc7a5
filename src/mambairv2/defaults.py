"""Defaults and limits shared by the library and the command line.

Kept free of heavy imports (numpy, torch), so that the command line builds its parsers (and
answers ``--help`` and ``--version``) without loading them.
"""
from __future__ import annotations

#: The SR scale of a variant name (random weights) in bench and analyze: the bundled model's.
DEFAULT_VARIANT_SCALE = 4
#: Overlap of neighbouring tiles (input pixels).
DEFAULT_TILE_OVERLAP = 32
#: Largest accepted image (pixels); bigger ones are refused as too large.
DEFAULT_MAX_PIXELS = 1 << 27
#: ``--ext`` words: an output format, or ``same`` (the input's format where it is writable).
EXT_CHOICES = ("png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff", "same")
#: The web page's limits: upload size and input pixels (the output of ×4 SR has 16× more).
APP_MAX_UPLOAD_MB = 50.0
APP_MAX_PIXELS = 4_000_000
