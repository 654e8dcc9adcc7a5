"""Importing spandrel in the test environment.

spandrel imports torchvision at import time for two architectures only (LaMa: ``rotate``,
``InterpolationMode``; RestoreFormer: ``normalize``). Where torchvision is not importable (PyPI's
CUDA torchvision wheels do not load beside a CPU-only torch), a stand-in module providing just
those names is registered so that spandrel imports; the functions raise if called, so any test
that would depend on them fails instead of passing silently. Nothing here is used by
``mambairv2`` itself: ComfyUI and chaiNNer ship a real torchvision.
"""
from __future__ import annotations

import enum
import importlib
import sys
import types

import pytest

TORCHVISION_STANDIN = "mambairv2-tests: torchvision stand-in"


def _register_torchvision_standin() -> None:
    def unavailable(*args, **kwargs):
        raise RuntimeError("torchvision is not installed; this is the test suite's stand-in")

    class InterpolationMode(enum.Enum):
        NEAREST = "nearest"
        BILINEAR = "bilinear"
        BICUBIC = "bicubic"

    tv = types.ModuleType("torchvision", doc=TORCHVISION_STANDIN)
    transforms = types.ModuleType("torchvision.transforms", doc=TORCHVISION_STANDIN)
    functional = types.ModuleType("torchvision.transforms.functional", doc=TORCHVISION_STANDIN)
    functional.InterpolationMode = InterpolationMode
    functional.rotate = functional.normalize = unavailable
    tv.transforms, transforms.functional = transforms, functional
    sys.modules.update({"torchvision": tv, "torchvision.transforms": transforms,
                        "torchvision.transforms.functional": functional})


def import_spandrel():
    """``spandrel``, or skip the test with the reason."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - missing or not loadable beside this torch
        if importlib.util.find_spec("spandrel") is not None:
            _register_torchvision_standin()
    return pytest.importorskip("spandrel", minversion="0.4",
                               reason="spandrel >= 0.4 is needed (pip install 'mambairv2[spandrel]')")
