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
#: Data loader processes per rank: at most this many per CPU core (``data.num_workers``), and
#: never fewer than ``MIN_WORKERS_BOUND`` (the shipped recipes' 8 load on a small machine).
MAX_WORKERS_PER_CPU = 4
MIN_WORKERS_BOUND = 16
#: Most seeds one ablation row trains (``ablate --seeds N``).
MAX_SEEDS = 1000
#: Largest filter of the real-world degradations, in pixels (``realsr.usm_radius``, kernel sizes).
MAX_FILTER_SIZE = 255
#: Bytes per parameter while training: the weights, their gradients, Adam's two moments and the
#: EMA copy, in float32 (activations come on top).
TRAIN_BYTES_PER_PARAM = 20
#: Largest fixed input of an ONNX export (``export --size``, pixels): the graph is traced and
#: verified at that size, whole, without tiles.
MAX_EXPORT_PIXELS = 1 << 24
