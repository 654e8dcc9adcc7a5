"""The MambaIRv2 network (both released classes: MambaIRv2 and MambaIRv2Light)."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn

from ...ops import LayerNorm, shape_generic
from ..layers.heads import HEADS
from ..layers.layout import image_to_tokens, tokens_to_image
from ..layers.stem import RGB_MEAN, PatchEmbedNorm, init_weights, mirror_pad
from .assm import ASSM, ROUTING_MODES
from .attention import WindowPlan, relative_position_index, rolled_windows, window_plan
from .blocks import ResidualGroup
from .config import MambaIRv2Config

Tensor = torch.Tensor


class MambaIRv2(nn.Module):
    """MambaIRv2 for super-resolution (x2/x3/x4), colour denoising and JPEG artifact removal.

    Input ``B×C×H×W`` in [0, 1], any ``H, W ≥ 1``; output ``B×C×(H·s)×(W·s)``.
    Parameter and buffer names equal the authors' release, so their state dicts load strictly.
    """

    def __init__(self, config: Optional[MambaIRv2Config] = None, **fields) -> None:
        super().__init__()
        if config is None:
            config = MambaIRv2Config(**fields)
        elif fields:
            config = config.replace(**fields)
        self.config = config
        c = config
        self.window_size = c.window_size
        self.upscale = c.upscale
        self.img_range = c.img_range
        mean = torch.tensor(RGB_MEAN, dtype=torch.float32) if c.in_chans == 3 else torch.zeros(1)
        self.register_buffer("mean", mean.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("relative_position_index_SA", relative_position_index(c.window_size))

        self.conv_first = nn.Conv2d(c.in_chans, c.embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbedNorm(c.embed_dim)
        layer_kwargs = dict(d_state=c.d_state, window_size=c.window_size, inner_rank=c.inner_rank,
                            num_tokens=c.num_tokens, convffn_kernel_size=c.convffn_kernel_size,
                            hidden=c.hidden, ffn=c.ffn, ase=c.ase, sgn=c.sgn,
                            prompt_position=c.prompt_position, prompt_basis=c.prompt_basis,
                            prompt_order=c.prompt_order)
        self.layers = nn.ModuleList(
            ResidualGroup(c.embed_dim, depth, c.resi_connection, dict(layer_kwargs, num_heads=heads))
            for depth, heads in zip(c.depths, c.num_heads))
        if c.ase and c.prompt_basis == "shared":  # Eq. 6: one basis N for every layer (#108)
            self.embeddingA = nn.Embedding(c.inner_rank, c.prompt_dim)
            nn.init.uniform_(self.embeddingA.weight, -1 / c.inner_rank, 1 / c.inner_rank)
        self.norm = LayerNorm(c.embed_dim)
        if c.resi_connection == "1conv":
            self.conv_after_body = nn.Conv2d(c.embed_dim, c.embed_dim, 3, 1, 1)
        else:
            d = c.embed_dim
            self.conv_after_body = nn.Sequential(
                nn.Conv2d(d, d // 4, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(d // 4, d // 4, 1, 1, 0), nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(d // 4, d, 3, 1, 1))
        HEADS[c.upsampler].build(self, c.embed_dim, c.in_chans, c.upscale)
        self._plans: Dict[Tuple, Tuple[WindowPlan, WindowPlan]] = {}
        self.apply(init_weights)

    # -- routing -------------------------------------------------------------------------
    def set_routing(self, mode: str = "argmax", seed: Optional[int] = None) -> "MambaIRv2":
        """Eval-mode routing: ``"argmax"`` (deterministic, default) or ``"gumbel"`` (the released
        stochastic sampling; ``seed`` makes it reproducible). Training always uses Gumbel."""
        if mode not in ROUTING_MODES:
            raise ValueError(f"routing must be one of {ROUTING_MODES}, got {mode!r}")
        generator = None
        if mode == "gumbel" and seed is not None:
            generator = torch.Generator(device=self.conv_first.weight.device)
            generator.manual_seed(int(seed))
        for m in self.modules():
            if isinstance(m, ASSM):
                m.routing = mode
                m.generator = generator
        return self

    # -- forward -------------------------------------------------------------------------
    def window_plans(self, b: int, h: int, w: int, device: torch.device) -> Tuple[WindowPlan, WindowPlan]:
        """Window plans without and with shift for a padded ``b×h×w`` input (cached)."""
        # plans made under inference mode hold inference tensors, which autograd cannot save
        key = (b, h, w, str(device), torch.is_inference_mode_enabled())
        plans = self._plans.get(key)
        if plans is None:
            if len(self._plans) > 16:
                self._plans.clear()
            ws = self.window_size
            plans = (window_plan(b, h, w, ws, 0, device), window_plan(b, h, w, ws, ws // 2, device))
            self._plans[key] = plans
        return plans

    def forward_features(self, x: Tensor) -> Tensor:
        size = (x.shape[2], x.shape[3])
        if shape_generic():  # traced: Swin's roll + a mask computed in the graph from the size
            ws = self.window_size
            plans = (rolled_windows(*size, ws, 0, x.device), rolled_windows(*size, ws, ws // 2, x.device))
        else:  # cached gathers built from Python integers: faster, one per size
            plans = self.window_plans(x.shape[0], size[0], size[1], x.device)
        rpi = self.relative_position_index_SA
        t = self.patch_embed(image_to_tokens(x))
        basis = self.embeddingA.weight if "embeddingA" in self._modules else None
        for group in self.layers:
            t = group(t, size, rpi, plans, basis)
        return tokens_to_image(self.norm(t), size)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.config.in_chans:
            raise ValueError(f"expected a B×{self.config.in_chans}×H×W tensor, got {tuple(x.shape)}")
        h0, w0 = x.shape[-2:]
        ws = self.window_size
        # rounded up with positive operands: a traced -(-h // ws) becomes ONNX's Div, which
        # truncates negative quotients toward zero
        x = mirror_pad(x, (h0 + ws - 1) // ws * ws, (w0 + ws - 1) // ws * ws)
        mean = self.mean.to(x.dtype)
        x = (x - mean) * self.img_range
        first = self.conv_first(x)
        feat = self.conv_after_body(self.forward_features(first)) + first
        x = HEADS[self.config.upsampler].forward(self, feat, x)
        x = x / self.img_range + mean
        s = self.upscale
        return x[..., : h0 * s, : w0 * s]
