"""The U-Net discriminator with spectral normalisation of Real-ESRGAN (``UNetDiscriminatorSN``:
three stride-2 4×4 convolutions down, three bilinear ×2 + 3×3 convolutions up with skip
connections, two more 3×3 convolutions, a per-pixel real/fake logit; LeakyReLU 0.2).

Spectral normalisation divides each normalised weight by its largest singular value, estimated
by power iteration. The state-dict layout is torch's ``spectral_norm`` one (``weight_orig``,
``weight_u``, ``weight_v``), so Real-ESRGAN's ``net_d`` files load. Unlike torch's hook, which
runs one power iteration per forward call, :meth:`UNetDiscriminatorSN.power_iteration` runs one
per training step: the estimate then does not depend on how many forward calls (micro-batches,
ranks) a step is split into, which keeps accumulation and multi-process runs equal.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

Tensor = torch.Tensor


class SNConv2d(nn.Module):
    """A convolution whose weight is divided by its spectral norm (estimate held in ``u``, ``v``)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0,
                 bias: bool = True, eps: float = 1e-12) -> None:
        super().__init__()
        conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=bias)
        self.stride, self.padding, self.eps = stride, padding, eps
        self.weight_orig = nn.Parameter(conv.weight.detach().clone())
        self.bias = nn.Parameter(conv.bias.detach().clone()) if bias else None
        self.register_buffer("weight_u", F.normalize(torch.randn(cout), dim=0, eps=eps))
        self.register_buffer("weight_v", F.normalize(torch.randn(cin * kernel * kernel), dim=0, eps=eps))

    @torch.no_grad()
    def power_iteration(self) -> None:
        """One step of the power iteration for the largest singular value of the weight."""
        w = self.weight_orig.flatten(1)
        self.weight_v.copy_(F.normalize(w.t() @ self.weight_u, dim=0, eps=self.eps))
        self.weight_u.copy_(F.normalize(w @ self.weight_v, dim=0, eps=self.eps))

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight_orig
        sigma = torch.dot(self.weight_u, w.flatten(1) @ self.weight_v)
        return F.conv2d(x, w / sigma, self.bias, self.stride, self.padding)


class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN's discriminator: N×C×H×W (H, W multiples of 8) → N×1×H×W logits."""

    def __init__(self, in_channels: int = 3, num_feat: int = 64, skip_connection: bool = True) -> None:
        super().__init__()
        f = num_feat
        self.skip_connection = skip_connection
        self.conv0 = nn.Conv2d(in_channels, f, 3, 1, 1)
        self.conv1 = SNConv2d(f, f * 2, 4, 2, 1, bias=False)
        self.conv2 = SNConv2d(f * 2, f * 4, 4, 2, 1, bias=False)
        self.conv3 = SNConv2d(f * 4, f * 8, 4, 2, 1, bias=False)
        self.conv4 = SNConv2d(f * 8, f * 4, 3, 1, 1, bias=False)
        self.conv5 = SNConv2d(f * 4, f * 2, 3, 1, 1, bias=False)
        self.conv6 = SNConv2d(f * 2, f, 3, 1, 1, bias=False)
        self.conv7 = SNConv2d(f, f, 3, 1, 1, bias=False)
        self.conv8 = SNConv2d(f, f, 3, 1, 1, bias=False)
        self.conv9 = nn.Conv2d(f, 1, 3, 1, 1)

    def power_iteration(self) -> None:
        """Refreshes every spectral-norm estimate (once per training step)."""
        for m in self.modules():
            if isinstance(m, SNConv2d):
                m.power_iteration()

    def forward(self, x: Tensor) -> Tensor:
        act = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
        up = lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
        x0 = act(self.conv0(x))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))
        x4 = act(self.conv4(up(x3)))
        if self.skip_connection:
            x4 = x4 + x2
        x5 = act(self.conv5(up(x4)))
        if self.skip_connection:
            x5 = x5 + x1
        x6 = act(self.conv6(up(x5)))
        if self.skip_connection:
            x6 = x6 + x0
        out = act(self.conv7(x6))
        out = act(self.conv8(out))
        return self.conv9(out)
