"""The compiled routing and layer-norm kernels against PyTorch."""
import pytest
import torch
import torch.nn.functional as F

from mambairv2.ops import LayerNorm, implementation, sgn_order, sgn_route
from mambairv2.ops.dispatch import Probe
from mambairv2.ops.layer_norm import choose as choose_layer_norm
from mambairv2.ops.routing import choose as choose_routing
from mambairv2.ops.layer_norm_compiled import (
    layer_norm_compiled,
    layer_norm_kernel_available,
    layer_norm_kernel_error,
)
from mambairv2.ops.routing_compiled import routing_kernel_available, routing_kernel_error, sgn_route_compiled

needs_routing = pytest.mark.skipif(not routing_kernel_available(),
                                   reason=f"routing kernel unavailable: {routing_kernel_error()}")
needs_norm = pytest.mark.skipif(not layer_norm_kernel_available(),
                                reason=f"layer-norm kernel unavailable: {layer_norm_kernel_error()}")


@needs_routing
@pytest.mark.parametrize("tokens", [64, 128, 7, 20, 1])
@pytest.mark.parametrize("ties", [False, True])
def test_routing_equals_argmax_and_stable_sort(tokens, ties):
    """First index of the maximum (ties included: rounded logits tie often), the stable order
    and its inverse, as ``argmax`` and :func:`sgn_order` give them; two images in the batch."""
    g = torch.Generator().manual_seed(tokens)
    logits = torch.randn(2, 301, tokens, generator=g) * 2
    if ties:
        logits = logits.round()
    groups, order, inverse = sgn_route_compiled(logits)
    expected = logits.argmax(-1)
    assert torch.equal(groups, expected)
    ref_order, ref_inverse = sgn_order(expected)
    assert torch.equal(order, ref_order) and torch.equal(inverse, ref_inverse)


@needs_routing
def test_routing_reads_strided_logits_and_refuses_autograd():
    logits = torch.randn(1, 50, 40)[..., :32]  # rows strided by 40
    groups, _, _ = sgn_route_compiled(logits)
    assert torch.equal(groups, logits.argmax(-1))
    with torch.no_grad():
        assert choose_routing(Probe.of(logits)).name == "compiled"
        assert choose_routing(Probe.of(logits.double())).name == "pytorch"
        with implementation("pytorch"):
            assert choose_routing(Probe.of(logits)).name == "pytorch"
    assert choose_routing(Probe.of(logits.clone().requires_grad_(True))).name == "pytorch"


@pytest.mark.parametrize("selection", ["pytorch", "auto"])
def test_sgn_route_under_every_selection(selection):
    logits = (torch.randn(2, 97, 16) * 2).round()  # many ties
    with torch.no_grad(), implementation(selection):
        groups, order, inverse = sgn_route(logits)
    assert torch.equal(groups, logits.argmax(-1))
    ref_order, ref_inverse = sgn_order(groups)
    assert torch.equal(order, ref_order) and torch.equal(inverse, ref_inverse)


@needs_norm
@pytest.mark.parametrize("c", [48, 96, 174, 5])
def test_layer_norm_equals_torch(c):
    g = torch.Generator().manual_seed(c)
    x = torch.randn(3, 77, c, generator=g) * 4 + 2
    w, b = torch.randn(c, generator=g), torch.randn(c, generator=g)
    ref = F.layer_norm(x.double(), (c,), w.double(), b.double(), 1e-5)
    out = layer_norm_compiled(x, w, b, 1e-5)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert (out.double() - ref).abs().max().item() < 1e-5


@needs_norm
def test_layer_norm_module_keeps_nn_layernorm_behaviour():
    """Same state dict as ``nn.LayerNorm``; the kernel only without autograd; gradients flow."""
    torch.manual_seed(0)
    m, plain = LayerNorm(48), torch.nn.LayerNorm(48)
    with torch.no_grad():
        m.weight.normal_(), m.bias.normal_()
    plain.load_state_dict(m.state_dict(), strict=True)
    x = torch.randn(2, 10, 48)
    with torch.no_grad():
        assert (m(x) - plain(x)).abs().max() < 1e-5
        assert choose_layer_norm(Probe.of(x, m.weight, m.bias)).name == "compiled"
        with implementation("pytorch"):
            assert torch.equal(m(x), plain(x))
    assert choose_layer_norm(Probe.of(x, m.weight, m.bias)).name == "pytorch"  # parameters require grad
    m(x.requires_grad_(True)).sum().backward()
    assert x.grad is not None and m.weight.grad is not None
