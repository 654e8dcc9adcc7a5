"""MambaIR (v1, ECCV 2024): configuration, network and detection; :data:`FAMILY` describes it
to the rest of the package."""
from ..family import Family
from .config import V1_ARCH, V1_SR_VARIANTS, V1_VARIANTS, MambaIRConfig, v1_variant_config, v1_variant_name
from .detect import detect_v1_config, is_v1_state_dict
from .network import MambaIR
from .size import state_size

FAMILY = Family(
    name="mambair", display="MambaIR", config_class=MambaIRConfig, network_class=MambaIR,
    variants=V1_VARIANTS, sr_variants=V1_SR_VARIANTS, variant_config=v1_variant_config,
    variant_name=v1_variant_name, owns=is_v1_state_dict, detect=detect_v1_config,
    arch_names=frozenset({V1_ARCH}), state_size=state_size, tile_defaults=lambda config: config.tile_defaults)

__all__ = ["FAMILY", "V1_SR_VARIANTS", "V1_VARIANTS", "MambaIR", "MambaIRConfig", "detect_v1_config", "v1_variant_config",
           "v1_variant_name"]
