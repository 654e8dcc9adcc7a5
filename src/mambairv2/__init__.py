"""MambaIRv2 (CVPR 2025, "Attentive State Space Restoration") in pure PyTorch.

>>> import mambairv2
>>> model = mambairv2.load_model("MambaIRv2Light_SRx4.pth")   # configuration detected
>>> model = mambairv2.create_model("light", scale=4)           # fresh network
>>> sharp = mambairv2.restore(model, image, tile=256)           # NumPy array, PIL image or tensor
"""
__version__ = "0.1.0"

from .checkpoint import CheckpointError, load_model, save_safetensors
from .config import MambaIRv2Config, VARIANTS
from .factory import create_model
from .model import MambaIRv2
from .restore import restore  # the function; its helpers: ``from mambairv2.restore import ...``

__all__ = ["CheckpointError", "MambaIRv2", "MambaIRv2Config", "VARIANTS", "__version__", "create_model",
           "load_model", "restore", "save_safetensors"]
