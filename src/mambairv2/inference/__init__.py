"""Restoring images with a loaded model: :func:`restore` (arrays, Pillow images, tensors; tiles,
self-ensemble), the batch runner behind ``mambairv2 restore`` (:mod:`.files`, :mod:`.plan`).
No submodule is named ``restore``, so ``mambairv2.restore`` stays the function."""
from .api import restore, restore_tensor

__all__ = ["restore", "restore_tensor"]
