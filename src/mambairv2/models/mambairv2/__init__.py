"""The MambaIRv2 network, in files mirroring the paper: window attention, ASSM (ASE + SGN),
FFNs, attentive layers and groups, heads, and the network; :data:`FAMILY` describes it to the
rest of the package."""
from ..family import Family
from .assm import ASSM, SelectiveScan, permute_tokens
from .attention import WindowAttention
from .blocks import AttentiveLayer, ResidualGroup
from .config import SR_VARIANTS, VARIANTS, MambaIRv2Config, variant_config, variant_name
from .detect import detect_config, owns_state_dict
from .network import MambaIRv2
from .size import state_size

FAMILY = Family(
    name="mambairv2", display="MambaIRv2", config_class=MambaIRv2Config, network_class=MambaIRv2,
    variants=VARIANTS, sr_variants=SR_VARIANTS, variant_config=variant_config, variant_name=variant_name,
    owns=owns_state_dict, detect=lambda sd, source="state dict": detect_config(sd, source),
    arch_names=frozenset({"MambaIRv2", "MambaIRv2Light"}),
    state_size=state_size, analyses=frozenset({"attention", "sgn"}),
    routing=True, parts={"ASSM": ASSM, "SelectiveScan": SelectiveScan, "WindowAttention": WindowAttention,
                         "permute_tokens": permute_tokens})

__all__ = ["ASSM", "AttentiveLayer", "FAMILY", "MambaIRv2", "MambaIRv2Config", "ResidualGroup",
           "SelectiveScan", "WindowAttention", "detect_config"]
