"""ComfyUI custom node folder for MambaIRv2 and MambaIR.

It ships inside the installed package: ``python -c "import mambairv2.integrations.comfyui as m,
os; print(os.path.dirname(m.__file__))"`` prints the folder; symlink it into
``ComfyUI/custom_nodes/`` (with ``mambairv2[spandrel]`` installed in ComfyUI's Python).
Importing it adds both families to spandrel's registry, so ComfyUI's stock "Load Upscale Model"
and "Upscale Image (using Model)" nodes load and run MambaIRv2 and MambaIR checkpoints (``.pth``
or ``.safetensors`` in ``models/upscale_models``). It defines no nodes of its own.
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
