"""MambaIRv2 (CVPR 2025, "Attentive State Space Restoration") in pure PyTorch."""
__version__ = "0.1.0"
