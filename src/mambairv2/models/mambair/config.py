"""Configuration of a MambaIR (v1) network and the released variants."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from ..degradation import check_degradation
from ...errors import ConfigError
from .. import checks as C

V1_ARCH = "MambaIR"
UPSAMPLERS = ("pixelshuffle", "pixelshuffledirect", "")
#: Channel-attention block layouts: ``auto`` is the released rule (``light`` with the direct
#: pixel-shuffle head, ``classic`` otherwise); the two older light layouts are those of the
#: authors' commits 06dc6cd and 3ad5892 (the "MambaIR-n" rows of MambaIRv2's Table 8 use 06dc6cd).
CAB_LAYOUTS = ("auto", "classic", "light", "light-06dc6cd", "light-3ad5892")
SCAN_DIRECTIONS = (1, 2, 4)
#: The ablation switches and their released values (written by :meth:`MambaIRConfig.to_dict`
#: only where they differ).
SWITCH_DEFAULTS: Dict[str, Any] = {"scan_directions": 4, "cab": "auto"}


@dataclass(frozen=True)
class MambaIRConfig:
    """Hyper-parameters of one MambaIR (v1) network: the authors' ``network_g`` keys that change
    the network. The light CAB is chosen by ``upsampler == "pixelshuffledirect"``, as released.

    Ablation switches (defaults: the released networks):

    - ``scan_directions``: 4 (released: row-major, column-major and both reversed), 2 (row- and
      column-major) or 1 (row-major): the first n of the released order; the scan's parameters
      (``x_proj_weight``, ``dt_projs_*``, ``A_logs``, ``Ds``) have one slice per direction.
      MambaIRv2's Table 8 compares "MambaIR-1/2/4" built this way.
    - ``cab``: the channel-attention block (see :data:`CAB_LAYOUTS`): ``auto`` (released rule),
      ``classic`` (3×3 conv to dim/3, GELU, 3×3 conv back, channel attention), ``light``
      (released light: 1×1 to dim/2, depthwise 3×3, GELU, 1×1 back, dilated depthwise 3×3,
      channel attention), ``light-06dc6cd`` (the light layout of 2024-03-19..11-07: the classic
      block with a 3×3 conv to dim/6; released with d_state 16, mlp_ratio 1.5) or
      ``light-3ad5892`` (before 2024-03-19: depthwise 3×3 + channel attention; d_state 16).

    ``degradation``: ``"realsr"`` for a real-world SR model (the authors' MambaIR-real, or one
    trained with ``data.task: realsr``), None otherwise (:mod:`mambairv2.models.degradation`).
    Not part of the network: configs that differ only there compare equal.
    """

    embed_dim: int = 60
    d_state: int = 16
    depths: Tuple[int, ...] = (6, 6, 6, 6)
    mlp_ratio: float = 2.0
    upscale: int = 1
    in_chans: int = 3
    img_range: float = 1.0
    upsampler: str = ""
    resi_connection: str = "1conv"
    # ablation switches (see the class docstring); defaults = the released networks
    scan_directions: int = 4
    cab: str = "auto"
    hidden_dim: Optional[int] = None  # the scan width when it is not int(mlp_ratio · embed_dim)
    degradation: Optional[str] = field(default=None, compare=False)

    def __post_init__(self) -> None:
        """Checks every field (a :class:`~mambairv2.errors.ConfigError` naming it otherwise) and
        brings numbers to their types."""
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - frozen
        for name in ("d_state", "upscale", "in_chans"):
            set_(name, C.integer(name, getattr(self, name)))
        # channel attention squeezes the width by 30
        set_("embed_dim", C.integer("embed_dim", self.embed_dim, minimum=30))
        set_("depths", C.integers("depths", self.depths))
        set_("mlp_ratio", C.number("mlp_ratio", self.mlp_ratio))
        set_("img_range", C.number("img_range", self.img_range))
        set_("hidden_dim", C.optional_integer("hidden_dim", self.hidden_dim))
        C.choice("upsampler", self.upsampler, UPSAMPLERS)
        C.choice("resi_connection", self.resi_connection, ("1conv", "3conv"))
        if self.upsampler == "" and self.upscale != 1:
            raise ConfigError("upsampler '' (denoise/JPEG) needs upscale 1", field="upscale")
        if self.upsampler == "pixelshuffle" and self.upscale not in (2, 3, 4, 8):
            raise ConfigError("upsampler 'pixelshuffle' supports upscale 2, 3, 4 and 8", field="upscale")
        if self.upsampler and self.upscale < 2:
            raise ConfigError(f"upsampler {self.upsampler!r} needs upscale >= 2", field="upscale")
        if self.hidden_dim is not None and self.hidden_dim == int(self.mlp_ratio * self.embed_dim):
            set_("hidden_dim", None)  # one spelling per network
        if self.d_inner < 1:
            raise ConfigError(f"the scan width int(mlp_ratio × embed_dim) = {self.d_inner} must be ≥ 1; change "
                              "mlp_ratio", field="mlp_ratio")
        C.choice("scan_directions", self.scan_directions, SCAN_DIRECTIONS)
        C.choice("cab", self.cab, CAB_LAYOUTS)
        if self.cab == self._released_cab():  # one spelling per network: configs compare equal
            set_("cab", "auto")
        check_degradation(self.degradation, self.upscale)

    def _released_cab(self) -> str:
        return "light" if self.upsampler == "pixelshuffledirect" else "classic"

    @property
    def cab_layout(self) -> str:
        """The channel-attention block this network builds (``auto`` resolved)."""
        return self._released_cab() if self.cab == "auto" else self.cab

    def switches(self) -> Dict[str, Any]:
        """The ablation switches that differ from the released networks (empty for those)."""
        return {k: getattr(self, k) for k, v in SWITCH_DEFAULTS.items() if getattr(self, k) != v}

    @property
    def arch(self) -> str:
        """The authors' class name."""
        return V1_ARCH

    @property
    def light(self) -> bool:
        """Whether the blocks use the (released) light CAB."""
        return self.cab_layout == "light"

    @property
    def d_inner(self) -> int:
        """Channels of the scan (per direction): ``hidden_dim``, else as released
        ``int(mlp_ratio · embed_dim)``."""
        return self.hidden_dim if self.hidden_dim is not None else int(self.mlp_ratio * self.embed_dim)

    @property
    def task(self) -> str:
        """``sr``, ``denoise`` (colour, upscale 1) or ``jpeg`` (grayscale, upscale 1)."""
        if self.upscale > 1:
            return "sr"
        return "denoise" if self.in_chans == 3 else "jpeg"

    @property
    def tile_defaults(self) -> Dict[str, int]:
        """Tiling the authors' test code (``MambaIRModel.test``) applies to every v1 model: each
        side of an image of 200 px or more is cut into ``size // 200 + 1`` tiles (at most ~200
        px) overlapping by a tenth of a tile. The real-world SR model (``mambair`` x4) is meant
        for large photos, where it also bounds memory. ``tile`` and ``tile_overlap`` in input
        pixels, as ``restore`` takes them."""
        return {"tile": 200, "tile_overlap": 20}

    def to_dict(self) -> Dict[str, Any]:
        """The fields, plus ``arch`` (so a stored configuration says which family it is);
        ablation switches only where they differ from the released value, the degradation only
        where it is set."""
        d = dataclasses.asdict(self)
        d["depths"] = list(self.depths)
        for k in SWITCH_DEFAULTS:
            if k not in self.switches():
                del d[k]
        if self.degradation is None:
            del d["degradation"]
        return {"arch": V1_ARCH, **d}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MambaIRConfig":
        """From :meth:`to_dict` output; unknown keys are an error."""
        d = dict(d)
        if d.pop("arch", V1_ARCH) != V1_ARCH:
            raise ConfigError(f"not a {V1_ARCH} configuration")
        C.unknown_fields(cls, d, "MambaIRConfig")
        return cls(**d)

    @classmethod
    def from_network_g(cls, network_g: Mapping[str, Any]) -> "MambaIRConfig":
        """From an authors' option-file ``network_g``. Keys the released class ignores or that do
        not change the network (``type``, ``img_size``, ``patch_size``, ``window_size``, ...) are
        dropped, as the released class does."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in network_g.items() if k in names})

    def replace(self, **changes: Any) -> "MambaIRConfig":
        return dataclasses.replace(self, **changes)


_LIGHT = dict(embed_dim=60, d_state=10, depths=(6,) * 4, mlp_ratio=1.2, upsampler="pixelshuffledirect")
_CLASSIC = dict(embed_dim=180, d_state=16, depths=(6,) * 6, mlp_ratio=2.0, upsampler="pixelshuffle")
_RESTORATION = dict(_CLASSIC, mlp_ratio=1.2, upsampler="", upscale=1)

#: The released MambaIR (v1) configurations: name → config fields (SR scale given separately).
#: ``mambair`` x4 is also the architecture of the released real-world SR model (MambaIR-real).
V1_VARIANTS: Dict[str, Dict[str, Any]] = {
    "mambair-light": _LIGHT,
    "mambair": _CLASSIC,
    "mambair-denoise": dict(_RESTORATION, in_chans=3),
    "mambair-jpeg": dict(_RESTORATION, in_chans=1),
}
V1_SR_VARIANTS = ("mambair-light", "mambair")


def v1_variant_config(name: str, scale: int = 4, **overrides: Any) -> MambaIRConfig:
    """Config of a released v1 variant (``mambair-light``, ``mambair`` (classic SR),
    ``mambair-denoise``, ``mambair-jpeg``)."""
    if name not in V1_VARIANTS:
        raise ConfigError(f"unknown MambaIR variant {name!r}; choose one of {', '.join(V1_VARIANTS)}")
    fields = dict(V1_VARIANTS[name])
    if name in V1_SR_VARIANTS:
        if scale not in (2, 3, 4):
            raise ConfigError(f"the released {name} models exist for scale 2, 3 and 4, got {C.show(scale)}")
        fields["upscale"] = scale
    C.unknown_fields(MambaIRConfig, overrides, "MambaIRConfig")
    fields.update(overrides)
    return MambaIRConfig(**fields)


def v1_variant_name(config: MambaIRConfig) -> str:
    """The released v1 variant a config equals (ignoring the scale of SR variants), or ``custom``."""
    for name, fields in V1_VARIANTS.items():
        probe = dict(fields)
        if name in V1_SR_VARIANTS:
            probe["upscale"] = config.upscale
        try:
            if MambaIRConfig(**probe) == config:
                return name
        except ValueError:
            continue
    return "custom"


