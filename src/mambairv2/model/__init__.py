"""The MambaIRv2 network, in files mirroring the paper: window attention, ASSM (ASE + SGN),
FFNs, attentive layers and groups, heads, and the network."""
from .assm import ASSM, SelectiveScan
from .attention import WindowAttention
from .blocks import AttentiveLayer, ResidualGroup
from .detect import detect_config
from .network import MambaIRv2

__all__ = ["ASSM", "AttentiveLayer", "MambaIRv2", "ResidualGroup", "SelectiveScan", "WindowAttention", "detect_config"]
