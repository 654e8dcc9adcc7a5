"""LPIPS (Zhang et al. 2018), VGG16 version 0.1, from weights the user supplies: the distance of
two images as the channel-normalised differences of five VGG16 activations (relu1_2, relu2_2,
relu3_3, relu4_3, relu5_3) weighted per channel by learned 1×1 layers, averaged over the image
and summed over the layers. Inputs in [0, 1] are mapped to [-1, 1] and scaled as the reference
implementation does.

Two files, never downloaded: torchvision's ``vgg16`` state dict (``features.N.weight/bias``,
e.g. ``vgg16-397923af.pth``) and the ``lpips`` package's linear layers (``weights/v0.1/vgg.pth``:
``lin0.model.1.weight`` … ``lin4``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import torch
import torch.nn as nn

from .task import EvaluationError

Tensor = torch.Tensor

_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
#: ``features`` indices after which LPIPS taps VGG16 (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3).
TAPS = (3, 8, 15, 22, 29)
CHANNELS = (64, 128, 256, 512, 512)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def _load(path: str, what: str) -> Dict[str, Tensor]:
    p = Path(path)
    if not p.is_file():
        raise EvaluationError(f"{what} {path}: no such file")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(p))
        sd = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - one line for any unreadable file
        raise EvaluationError(f"{what} {path}: cannot read it ({type(exc).__name__})") from None
    if not isinstance(sd, dict):
        raise EvaluationError(f"{what} {path}: not a state dict")
    return sd


class LPIPS(nn.Module):
    """LPIPS-VGG; :meth:`forward` gives one distance per image pair (N×3×H×W in [0, 1])."""

    def __init__(self) -> None:
        super().__init__()
        mods: List[nn.Module] = []
        cin = 3
        for v in _VGG16:
            if v == "M":
                mods.append(nn.MaxPool2d(2, 2))
            else:
                mods += [nn.Conv2d(cin, int(v), 3, 1, 1), nn.ReLU(inplace=False)]
                cin = int(v)
        self.features = nn.Sequential(*mods)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_files(cls, vgg16_path: str, lin_path: str) -> "LPIPS":
        """The metric with torchvision's VGG16 and the lpips package's linear layers; raises
        :class:`~mambairv2.protocol.task.EvaluationError` (one line) for a missing or unfit file."""
        m = cls()
        vgg = _load(vgg16_path, "LPIPS VGG16 weights")
        own = m.features.state_dict()
        try:
            m.features.load_state_dict({k: vgg[f"features.{k}"].float() for k in own})
        except (KeyError, RuntimeError):
            raise EvaluationError(f"LPIPS VGG16 weights {vgg16_path}: not torchvision's vgg16 layout "
                                  "(features.N.weight/bias)") from None
        lin = _load(lin_path, "LPIPS linear layers")
        for i, layer in enumerate(m.lins):
            w = lin.get(f"lin{i}.model.1.weight", lin.get(f"lin{i}.model.0.weight"))
            if w is None or tuple(w.shape) != tuple(layer.weight.shape):
                raise EvaluationError(f"LPIPS linear layers {lin_path}: no lin{i}.model.1.weight of shape "
                                      f"{tuple(layer.weight.shape)} (the lpips package's weights/v0.1/vgg.pth)")
            layer.weight.data.copy_(w.float())
        return m

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        xa = (a * 2 - 1 - self.shift) / self.scale
        xb = (b * 2 - 1 - self.shift) / self.scale
        total = a.new_zeros(a.shape[0])
        tap = 0
        for i, layer in enumerate(self.features):
            xa, xb = layer(xa), layer(xb)
            if i in TAPS:
                na = xa / (xa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                nb = xb / (xb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                total = total + self.lins[tap]((na - nb) ** 2).mean(dim=(1, 2, 3))
                tap += 1
                if tap == len(TAPS):
                    break
        return total


def random_lpips_files(folder: Path, seed: int = 0) -> tuple:
    """Writes random-weight LPIPS files in the two expected layouts (tests; a pipeline check
    before the real weights are at hand); returns ``(vgg16_path, lin_path)``."""
    g = torch.Generator().manual_seed(seed)
    m = LPIPS()
    vgg = {f"features.{k}": (torch.randn(v.shape, generator=g) * 0.05 if k.endswith("weight") else torch.zeros(v.shape))
           for k, v in m.features.state_dict().items()}
    lin = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for i, c in enumerate(CHANNELS)}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(vgg, folder / "vgg16.pth")
    torch.save(lin, folder / "lpips_vgg.pth")
    return folder / "vgg16.pth", folder / "lpips_vgg.pth"


def lpips_distance(metric: LPIPS, a, b) -> float:
    """LPIPS of two H×W×3 uint8 images."""
    ta = torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float().div(255)
    tb = torch.from_numpy(b.copy()).permute(2, 0, 1)[None].float().div(255)
    dev = next(metric.parameters()).device
    with torch.no_grad():
        return float(metric(ta.to(dev), tb.to(dev))[0])
