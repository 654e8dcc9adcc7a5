"""Perceptual loss on VGG19 features (as BasicSR's ``PerceptualLoss``): the L1 distance of the
outputs of chosen VGG19 layers (before their ReLU), weighted per layer, on inputs normalised with
the ImageNet mean and std.

The VGG19 weights come from a file the user names (``train.vgg19_weights``): torchvision's
``vgg19`` state dict (``features.N.weight`` / ``features.N.bias``; e.g. torchvision's
``vgg19-dcbb9e9d.pth``), as ``.pth`` or ``.safetensors``. Nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import MambaIRv2Error

Tensor = torch.Tensor

#: VGG19's ``features`` in torchvision's order: (name, output channels) per convolution,
#: ``pool`` for each max-pooling. Index N of ``features.N`` counts convolutions, ReLUs and pools.
_VGG19 = [("conv1_1", 64), ("conv1_2", 64), "pool", ("conv2_1", 128), ("conv2_2", 128), "pool",
          ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256), ("conv3_4", 256), "pool",
          ("conv4_1", 512), ("conv4_2", 512), ("conv4_3", 512), ("conv4_4", 512), "pool",
          ("conv5_1", 512), ("conv5_2", 512), ("conv5_3", 512), ("conv5_4", 512), "pool"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layout() -> List[Tuple[str, int, int]]:
    """``(name, features index, channels)`` for every layer (``relu…`` and ``pool…`` too)."""
    out, index, block = [], 0, 1
    for item in _VGG19:
        if item == "pool":
            out.append((f"pool{block}", index, 0))
            index, block = index + 1, block + 1
        else:
            name, ch = item
            out.append((name, index, ch))
            out.append(("relu" + name[4:], index + 1, ch))
            index += 2
    return out


LAYERS = {name: index for name, index, _ in _layout()}


class VGGWeightsError(MambaIRv2Error, ValueError):
    """The VGG19 weights file is missing or does not fit (message: one line)."""


class VGG19Features(nn.Module):
    """VGG19's ``features`` up to the deepest requested layer; returns those layers' outputs."""

    def __init__(self, layers: List[str], input_norm: bool = True) -> None:
        super().__init__()
        unknown = [n for n in layers if n not in LAYERS]
        if unknown:
            raise ValueError(f"unknown VGG19 layer(s) {unknown}; known: {', '.join(LAYERS)}")
        last = max(LAYERS[n] for n in layers)
        mods: List[nn.Module] = []
        cin = 3
        for name, index, ch in _layout():
            if index > last:
                break
            if name.startswith("conv"):
                mods.append(nn.Conv2d(cin, ch, 3, 1, 1))
                cin = ch
            elif name.startswith("relu"):
                mods.append(nn.ReLU(inplace=False))
            else:
                mods.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*mods)
        self.wanted = {LAYERS[n]: n for n in layers}
        self.input_norm = input_norm
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def load_file(self, path: str) -> None:
        """Loads torchvision-layout VGG19 weights; raises :class:`VGGWeightsError` (one line)."""
        p = Path(path)
        hint = "torchvision's vgg19 state dict, e.g. vgg19-dcbb9e9d.pth (see docs/realworld_sr.md)"
        if not p.is_file():
            raise VGGWeightsError(f"train.vgg19_weights {path}: no such file ({hint})")
        try:
            if p.suffix == ".safetensors":
                from safetensors.torch import load_file

                sd = load_file(str(p))
            else:
                sd = torch.load(str(p), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is one line
            raise VGGWeightsError(f"train.vgg19_weights {path}: cannot read it ({type(exc).__name__})") from None
        if isinstance(sd, Mapping) and "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
            sd = sd["state_dict"]
        own = self.features.state_dict()
        try:
            picked = {k: sd[f"features.{k}"] for k in own}
        except (KeyError, TypeError):
            raise VGGWeightsError(f"train.vgg19_weights {path}: no VGG19 features.N.weight/bias tensors "
                                  f"({hint})") from None
        bad = [k for k, v in picked.items() if tuple(v.shape) != tuple(own[k].shape)]
        if bad:
            raise VGGWeightsError(f"train.vgg19_weights {path}: features.{bad[0]} has shape "
                                  f"{tuple(picked[bad[0]].shape)}, VGG19 has {tuple(own[bad[0]].shape)}")
        self.features.load_state_dict({k: v.float() for k, v in picked.items()})

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        if self.input_norm:
            x = (x - self.mean) / self.std
        out: Dict[str, Tensor] = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.wanted:
                out[self.wanted[i]] = x
        return out


class PerceptualLoss(nn.Module):
    """``weight · Σ_layer w_layer · L1(vgg(pred)_layer, vgg(target)_layer)``; VGG frozen."""

    def __init__(self, layer_weights: Mapping[str, float], weight: float = 1.0, input_norm: bool = True) -> None:
        super().__init__()
        self.layer_weights = {k: float(v) for k, v in layer_weights.items()}
        self.weight = float(weight)
        self.vgg = VGG19Features(list(self.layer_weights), input_norm)
        self.vgg.eval()
        for p in self.vgg.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> "PerceptualLoss":  # the VGG stays in eval mode
        return super().train(False)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        fp = self.vgg(pred)
        with torch.no_grad():
            ft = self.vgg(target.detach())
        loss = pred.new_zeros(())
        for name, w in self.layer_weights.items():
            loss = loss + w * F.l1_loss(fp[name], ft[name])
        return loss * self.weight


def random_vgg19_state_dict(seed: int = 0) -> Dict[str, Tensor]:
    """A VGG19 ``features`` state dict in torchvision's layout with random weights (tests, and a
    way to check a pipeline before the real weights are at hand)."""
    g = torch.Generator().manual_seed(seed)
    sd: Dict[str, Tensor] = {}
    cin = 3
    for name, index, ch in _layout():
        if name.startswith("conv"):
            std = (2.0 / (cin * 9)) ** 0.5
            sd[f"features.{index}.weight"] = torch.randn(ch, cin, 3, 3, generator=g) * std
            sd[f"features.{index}.bias"] = torch.zeros(ch)
            cin = ch
    return sd
