"""The fused oneDNN operators of CPU inference against the plain modules."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mambairv2
from mambairv2.ops import conv_act, conv_gate, implementation, linear_act
from mambairv2.ops.dispatch import Probe
from mambairv2.ops.fused import choose, onednn_available

from test_model_behaviour import TINY


def _fused(x: torch.Tensor) -> bool:
    return choose(Probe.of(x)).name == "onednn"


needs_fusion = pytest.mark.skipif(not onednn_available(), reason="PyTorch built without oneDNN pointwise ops")


@needs_fusion
def test_fused_ops_equal_plain_ones():
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(20, 36)
    conv = nn.Conv2d(36, 36, 5, 1, 2, groups=36)
    x = torch.randn(2, 50, 20, generator=g)
    img = torch.randn(2, 36, 9, 11, generator=g).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(linear_act(x, lin, "gelu"), F.gelu(lin(x)), rtol=0, atol=1e-6)
        torch.testing.assert_close(linear_act(x, lin), lin(x), rtol=0, atol=1e-6)
        for act, f in (("gelu", F.gelu), ("sigmoid", torch.sigmoid)):
            torch.testing.assert_close(conv_act(img, conv, act), f(conv(img)), rtol=0, atol=1e-6)
        torch.testing.assert_close(conv_gate(img, conv), img * torch.sigmoid(conv(img)), rtol=0, atol=1e-6)


def test_conv_gate_keeps_gradients():
    conv = nn.Conv2d(4, 4, 3, 1, 1)
    img = torch.randn(1, 4, 5, 6, requires_grad=True)
    conv_gate(img, conv).sum().backward()
    ref = img.detach().clone().requires_grad_(True)
    (ref * torch.sigmoid(conv(ref))).sum().backward()
    torch.testing.assert_close(img.grad, ref.grad)


@needs_fusion
def test_fusion_only_without_autograd_and_for_float32_cpu():
    x = torch.zeros(3, requires_grad=True)
    assert not _fused(x)  # autograd on
    with torch.no_grad():
        assert _fused(x)
        assert not _fused(x.double())
        with implementation("pytorch"):
            assert not _fused(x)
        with torch.autocast("cpu", dtype=torch.float16):
            assert not _fused(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # oneDNN's GEMMs then run in bfloat16
            assert _fused(x)


@pytest.mark.parametrize("variant", ["light", "base"])
def test_model_output_with_and_without_fusion(variant):
    torch.manual_seed(0)
    kw = dict(TINY, mlp_ratio=1.0) if variant == "light" else dict(TINY, mlp_ratio=2.0)
    m = mambairv2.create_model(variant, scale=2, **kw).eval()
    for p in m.parameters():  # released-like magnitudes: layer scales and biases far from init
        p.data.add_(torch.randn_like(p) * 0.05)
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        fused = m(x)
        with implementation(linear_act="pytorch"):
            plain = m(x)
    torch.testing.assert_close(fused, plain, rtol=0, atol=1e-5)
