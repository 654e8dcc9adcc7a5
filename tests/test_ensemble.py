import torch
import torch.nn.functional as F

from mambairv2.inference.ensemble import self_ensemble


def test_equivariant_function_is_unchanged():
    x = torch.rand(2, 3, 7, 5, dtype=torch.float64)
    up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")  # commutes with flips/transposes
    torch.testing.assert_close(self_ensemble(up, x), up(x), rtol=0, atol=1e-12)


def test_averages_a_non_equivariant_function():
    x = torch.rand(1, 1, 4, 6, dtype=torch.float64)
    kernel = torch.tensor([[[[0.0, 0.0, 1.0]]]], dtype=torch.float64)  # shift: not flip-equivariant
    f = lambda t: F.conv2d(t, kernel, padding=(0, 1))
    out = self_ensemble(f, x)
    assert out.shape == x.shape
    assert not torch.allclose(out, f(x))
    # the average over all 8 transforms is itself invariant under the group
    g = lambda t: self_ensemble(f, t)
    torch.testing.assert_close(g(x.flip(-1)).flip(-1), out, rtol=0, atol=1e-12)
