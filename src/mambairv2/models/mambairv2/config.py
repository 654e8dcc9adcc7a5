"""Configuration of a MambaIRv2 network and the paper's named variants."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from ..degradation import check_degradation
from ...errors import ConfigError
from .. import checks as C

UPSAMPLERS = ("pixelshuffle", "pixelshuffledirect", "nearest+conv", "")
FFN_KINDS = ("conv", "gated")
#: Where ASE's prompt joins the scan (paper Table 2): the input matrix B, the step Δ (before
#: its softplus), the output y (before out_norm) or the output matrix C (released, Eq. 7).
PROMPT_POSITIONS = ("B", "delta", "y", "C")
PROMPT_BASES = ("layer", "shared")
PROMPT_ORDERS = ("raster", "sgn")
#: The ablation switches and their released values; :meth:`MambaIRv2Config.to_dict` writes a
#: switch only where it differs, so the released models' stored configurations are unchanged.
SWITCH_DEFAULTS: Dict[str, Any] = {"ase": True, "sgn": True, "prompt_position": "C",
                                   "prompt_basis": "layer", "prompt_order": "raster"}


@dataclass(frozen=True)
class MambaIRv2Config:
    """Hyper-parameters of one network. The fields are the released ``network_g`` keys, plus
    ``ffn``: ``"conv"`` (conv-FFN, class MambaIRv2) or ``"gated"`` (gated MLP, MambaIRv2Light),
    plus the ablation switches below (their defaults are the released networks; ``num_tokens``
    T and ``inner_rank`` r are Table A.2's).

    - ``ase``: Attentive State-space Equation (Sec. 4.2, Eq. 7): a learnable prompt per token,
      chosen by the routing, joins the scan. False: no prompt pool (no ``embeddingA``/``embeddingB``
      parameters); with ``sgn`` also False, no routing either: a plain one-direction scan (the
      "MHSA only" row of Table 1).
    - ``sgn``: Semantic Guided Neighbouring: tokens sorted by their routed prompt before the
      scan, put back after it. False: the scan runs in raster order (Table 1's "+ ASE" row).
      Without ``ase`` the routing gets no gradient (its labels only feed the sort).
    - ``prompt_position``: where the prompt joins the scan (Table 2): ``"B"``, ``"delta"``,
      ``"y"`` or ``"C"`` (released). B and C prompts have ``d_state`` entries; Δ and y prompts
      have the scan's channel count (``int(embed_dim · mlp_ratio)``), so their ``embeddingA`` is
      ``inner_rank × channels``.
    - ``prompt_basis``: the low-rank basis N of the prompt pool P = M·N (Eq. 6): ``"layer"``
      (released: one ``embeddingA`` per attentive layer) or ``"shared"`` (the paper's Eq. 6:
      one ``embeddingA`` for the whole network, csguoh/MambaIR#108).
    - ``prompt_order``: ``"raster"`` (released: the prompts, computed in raster order, are
      added to the SGN-sorted sequence, csguoh/MambaIR#115) or ``"sgn"`` (each prompt is sorted
      with its token, as the paper describes).

    ``hidden_dim``: the ASSM/FFN hidden width when it is not ``int(embed_dim · mlp_ratio)``
    (None: that product, as the authors' option files give it).

    ``degradation``: what the network was trained on when it is not the task's standard
    synthetic degradation: ``"realsr"`` (real-world SR, :mod:`mambairv2.models.degradation`).
    Not part of the network: configs that differ only there compare equal.
    """

    embed_dim: int = 48
    d_state: int = 8
    depths: Tuple[int, ...] = (5, 5, 5, 5)
    num_heads: Tuple[int, ...] = (4, 4, 4, 4)
    window_size: int = 16
    inner_rank: int = 32
    num_tokens: int = 64
    convffn_kernel_size: int = 5
    mlp_ratio: float = 1.0
    upscale: int = 2
    in_chans: int = 3
    img_range: float = 1.0
    upsampler: str = "pixelshuffledirect"
    resi_connection: str = "1conv"
    ffn: str = "gated"
    hidden_dim: Optional[int] = None
    # ablation switches (see the class docstring); defaults = the released networks
    ase: bool = True
    sgn: bool = True
    prompt_position: str = "C"
    prompt_basis: str = "layer"
    prompt_order: str = "raster"
    degradation: Optional[str] = field(default=None, compare=False)

    def __post_init__(self) -> None:
        """Checks every field (a :class:`~mambairv2.errors.ConfigError` naming it otherwise) and
        brings numbers to their types."""
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - frozen
        for name in ("embed_dim", "d_state", "window_size", "inner_rank", "num_tokens", "upscale", "in_chans"):
            set_(name, C.integer(name, getattr(self, name)))
        set_("convffn_kernel_size", C.integer("convffn_kernel_size", self.convffn_kernel_size, odd=True))
        set_("depths", C.integers("depths", self.depths))
        set_("num_heads", C.integers("num_heads", self.num_heads))
        set_("mlp_ratio", C.number("mlp_ratio", self.mlp_ratio))
        set_("img_range", C.number("img_range", self.img_range))
        set_("hidden_dim", C.optional_integer("hidden_dim", self.hidden_dim))
        if len(self.depths) != len(self.num_heads):
            raise ConfigError(f"num_heads must have one entry per group of depths ({len(self.depths)}), "
                              f"got {list(self.num_heads)}", field="num_heads")
        C.choice("upsampler", self.upsampler, UPSAMPLERS)
        C.choice("ffn", self.ffn, FFN_KINDS)
        C.choice("resi_connection", self.resi_connection, ("1conv", "3conv"))
        if self.upsampler == "" and self.upscale != 1:
            raise ConfigError("upsampler '' (denoise/JPEG) needs upscale 1", field="upscale")
        if self.upsampler == "nearest+conv" and self.upscale != 4:
            raise ConfigError("upsampler 'nearest+conv' supports upscale 4 only", field="upscale")
        if self.upsampler == "pixelshuffle" and self.upscale not in (2, 3, 4, 8):
            raise ConfigError("upsampler 'pixelshuffle' supports upscale 2, 3, 4 and 8", field="upscale")
        if any(self.embed_dim % h for h in self.num_heads):
            raise ConfigError(f"num_heads entries must each divide embed_dim ({self.embed_dim}), got "
                              f"{list(self.num_heads)}", field="num_heads")
        if self.hidden_dim is not None and self.hidden_dim == int(self.embed_dim * self.mlp_ratio):
            set_("hidden_dim", None)  # one spelling per network
        if self.hidden < (2 if self.ffn == "gated" else 1) or (self.ffn == "gated" and self.hidden % 2):
            field = "hidden_dim" if self.hidden_dim is not None else "mlp_ratio"
            width = "hidden_dim" if self.hidden_dim is not None else "int(embed_dim × mlp_ratio)"
            what = "even and ≥ 2 (the gated FFN splits it in halves)" if self.ffn == "gated" else "≥ 1"
            raise ConfigError(f"the hidden width {width} = {self.hidden} must be {what}; change {field}",
                              field=field)

        for name, choices in (("prompt_position", PROMPT_POSITIONS), ("prompt_basis", PROMPT_BASES),
                              ("prompt_order", PROMPT_ORDERS)):
            C.choice(name, getattr(self, name), choices)
        for name in ("ase", "sgn"):
            C.flag(name, getattr(self, name))
        check_degradation(self.degradation, self.upscale)

    def switches(self) -> Dict[str, Any]:
        """The ablation switches that differ from the released networks (empty for those)."""
        return {k: getattr(self, k) for k, v in SWITCH_DEFAULTS.items() if getattr(self, k) != v}

    @property
    def hidden(self) -> int:
        """The hidden width of the ASSM and the FFNs."""
        return self.hidden_dim if self.hidden_dim is not None else int(self.embed_dim * self.mlp_ratio)

    @property
    def prompt_dim(self) -> int:
        """Entries of one prompt: ``d_state`` (into B or C) or the scan's channels (Δ or y)."""
        return self.d_state if self.prompt_position in ("B", "C") else self.hidden

    @property
    def arch(self) -> str:
        """The authors' class name for this configuration."""
        return "MambaIRv2Light" if self.ffn == "gated" else "MambaIRv2"

    @property
    def task(self) -> str:
        """``sr``, ``denoise`` (colour, upscale 1) or ``jpeg`` (grayscale, upscale 1)."""
        if self.upscale > 1:
            return "sr"
        return "denoise" if self.in_chans == 3 else "jpeg"

    def to_dict(self) -> Dict[str, Any]:
        """The fields; ablation switches only where they differ from the released value, the
        degradation only where it is set."""
        d = dataclasses.asdict(self)
        d["depths"] = list(self.depths)
        d["num_heads"] = list(self.num_heads)
        for k in SWITCH_DEFAULTS:
            if k not in self.switches():
                del d[k]
        if self.degradation is None:
            del d["degradation"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MambaIRv2Config":
        """Builds a config from a dict; unknown keys are an error, missing ones take defaults."""
        C.unknown_fields(cls, d, "MambaIRv2Config")
        return cls(**dict(d))

    def replace(self, **changes: Any) -> "MambaIRv2Config":
        return dataclasses.replace(self, **changes)


_LIGHT = dict(embed_dim=48, d_state=8, depths=(5, 5, 5, 5), num_heads=(4, 4, 4, 4), inner_rank=32,
              num_tokens=64, mlp_ratio=1.0, upsampler="pixelshuffledirect", ffn="gated")
_CLASSIC = dict(d_state=16, inner_rank=64, num_tokens=128, mlp_ratio=2.0, upsampler="pixelshuffle",
                ffn="conv")
_BASE = dict(_CLASSIC, embed_dim=174, depths=(6,) * 6, num_heads=(6,) * 6)

#: The paper's variants: name → config fields (the scale is given separately for SR).
VARIANTS: Dict[str, Dict[str, Any]] = {
    "light": _LIGHT,
    "small": dict(_CLASSIC, embed_dim=132, depths=(4,) * 6, num_heads=(4,) * 6),
    "base": _BASE,
    "large": dict(_CLASSIC, embed_dim=174, depths=(6,) * 9, num_heads=(6,) * 9),
    "denoise": dict(_BASE, upsampler="", upscale=1, in_chans=3),
    "jpeg": dict(_BASE, upsampler="", upscale=1, in_chans=1),
}
SR_VARIANTS = ("light", "small", "base", "large")


def variant_config(name: str, scale: int = 4, **overrides: Any) -> MambaIRv2Config:
    """Config of a named variant (``light``, ``small``, ``base``, ``large``, ``denoise``, ``jpeg``)."""
    if name not in VARIANTS:
        raise ConfigError(f"unknown variant {name!r}; choose one of {', '.join(VARIANTS)}")
    fields = dict(VARIANTS[name])
    if name in SR_VARIANTS:
        if scale not in (2, 3, 4):
            raise ConfigError(f"the released {name} models exist for scale 2, 3 and 4, got {C.show(scale)}")
        fields["upscale"] = scale
    C.unknown_fields(MambaIRv2Config, overrides, "MambaIRv2Config")
    fields.update(overrides)
    return MambaIRv2Config(**fields)


def variant_name(config: MambaIRv2Config) -> str:
    """The paper variant a config equals (ignoring the scale of SR variants), or ``custom``."""
    for name, fields in VARIANTS.items():
        probe = dict(fields)
        if name in SR_VARIANTS:
            probe["upscale"] = config.upscale
        try:
            if MambaIRv2Config(**probe) == config:
                return name
        except ValueError:
            continue
    return "custom"
