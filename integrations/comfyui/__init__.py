"""ComfyUI custom node folder for MambaIRv2.

Copy or symlink this folder into ``ComfyUI/custom_nodes/`` (and ``pip install "mambairv2[spandrel]"``
into ComfyUI's Python). Importing it adds the MambaIRv2 architecture to spandrel's registry, so
ComfyUI's stock "Load Upscale Model" and "Upscale Image (using Model)" nodes load and run
MambaIRv2 / MambaIRv2Light checkpoints (``.pth`` or ``.safetensors`` in ``models/upscale_models``).
It defines no nodes of its own.
"""
import logging

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}

try:
    from mambairv2.integrations.spandrel import install
except ImportError as exc:  # ComfyUI keeps running; the message says what to install
    logging.error("MambaIRv2 upscale models unavailable: %s (pip install 'mambairv2[spandrel]' "
                  "into ComfyUI's Python environment)", exc)
else:
    install(ignore_duplicates=True)
    logging.info("MambaIRv2: spandrel architecture installed (Load Upscale Model accepts MambaIRv2 checkpoints)")
