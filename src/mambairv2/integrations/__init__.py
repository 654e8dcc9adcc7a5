"""Bridges to the tools people already use: spandrel (ComfyUI, chaiNNer) and ONNX.

Each module imports its optional library lazily (extras ``[spandrel]`` and ``[onnx]``)."""
