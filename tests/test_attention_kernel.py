"""Window attention: every implementation (and the compiled kernel in detail) against the plain
formula in float64."""
import pytest
import torch

from mambairv2.ops import implementation, window_attention
from mambairv2.ops.attention import choose
from mambairv2.ops.attention_compiled import (
    MAX_HEAD_DIM,
    attention_kernel_available,
    attention_kernel_error,
    window_attention_compiled,
)
from mambairv2.ops.dispatch import Probe

needs_kernel = pytest.mark.skipif(not attention_kernel_available(),
                                  reason=f"compiled attention kernel unavailable: {attention_kernel_error()}")


def _inputs(windows, n, heads, hd, masked, seed=0, row_pad=0):
    g = torch.Generator().manual_seed(seed)
    c = heads * hd
    qkv = torch.randn(windows * n, 3 * c + row_pad, generator=g)[:, :3 * c]  # rows may be strided
    bias = torch.randn(heads, n, n, generator=g)
    mask = torch.where(torch.rand(n, n, generator=g) < 0.3, -100.0, 0.0) if masked else None
    return qkv, bias, mask


def _formula(qkv, heads, bias, mask, scale):
    """softmax(q·kᵀ·scale + bias + mask)·v in float64, heads side by side."""
    n = bias.shape[-1]
    c = qkv.shape[1] // 3
    x = qkv.double().view(-1, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)  # 3×W×heads×n×hd
    s = x[0] @ x[1].transpose(-2, -1) * scale + bias.double()
    if mask is not None:
        s = s + mask.double()
    return (s.softmax(-1) @ x[2]).transpose(1, 2).reshape(-1, c)


@needs_kernel
@pytest.mark.parametrize("windows,n,heads,hd", [(3, 256, 4, 12), (2, 64, 6, 29), (2, 49, 2, 12), (2, 46, 2, 12),
                                                (2, 64, 3, 5), (1, 40, 2, 16), (1, 64, 2, 33), (1, 30, 1, 64)])
@pytest.mark.parametrize("masked", [False, True])
def test_kernel_equals_the_formula(windows, n, heads, hd, masked):
    """The light model's shape (16×16 windows, 12-channel heads), the base model's (8×8 windows,
    29 channels), windows whose token count is not a multiple of the vector width nor of the
    rows done at once (46: several rows left over), other head sizes (several vectors of
    channels, up to the largest the kernel takes); strided rows; with and without mask."""
    qkv, bias, mask = _inputs(windows, n, heads, hd, masked, row_pad=5)
    out = window_attention_compiled(qkv, heads, bias, mask, hd ** -0.5)
    ref = _formula(qkv, heads, bias, mask, hd ** -0.5)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert (out.double() - ref).abs().max().item() < 2e-6


@needs_kernel
def test_kernel_writes_into_a_slice_and_leaves_the_rest():
    qkv, bias, _ = _inputs(2, 64, 2, 8, False)
    big = torch.full((3 * 128, 16), 7.0)
    window_attention_compiled(qkv, 2, bias, None, 0.3, out=big[128:256])
    assert torch.equal(big[:128], torch.full((128, 16), 7.0)) and torch.equal(big[256:], big[:128])
    assert (big[128:256].double() - _formula(qkv, 2, bias, None, 0.3)).abs().max() < 2e-6


@needs_kernel
def test_masked_keys_get_exactly_zero_weight():
    """A −1e4 mask (far below exp's range) removes keys exactly: the result equals attention over
    the remaining keys only."""
    qkv, bias, _ = _inputs(1, 32, 1, 12, False, seed=3)
    mask = torch.zeros(32, 32)
    mask[:, 16:] = -1e4
    out = window_attention_compiled(qkv, 1, bias, mask, 0.25)
    v = qkv[:, 24:]
    s = (qkv[:, :12].double() @ qkv[:, 12:24].double().T * 0.25 + bias[0].double())[:, :16]
    ref = s.softmax(-1) @ v[:16].double()
    assert (out.double() - ref).abs().max().item() < 2e-6


@needs_kernel
def test_kernel_is_deterministic_across_thread_counts():
    qkv, bias, mask = _inputs(5, 256, 4, 12, True, seed=1)
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            outs.append(window_attention_compiled(qkv, 4, bias, mask, 0.3))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


@needs_kernel
def test_chosen_only_where_it_is_faster_and_correct():
    qkv, bias, _ = _inputs(1, 16, 1, 12, False)

    def chosen(*tensors, head_dim=12):
        return choose(Probe.of(*tensors), head_dim).name

    assert chosen(qkv, bias) == "compiled"
    assert chosen(qkv, bias, head_dim=29) == "compiled"  # the base model's heads
    assert chosen(qkv, bias, head_dim=MAX_HEAD_DIM + 1) == "sdpa"  # SDPA is as fast there
    assert chosen(qkv.double(), bias.double()) == "sdpa"
    assert chosen(qkv, bias.requires_grad_(True)) == "reference"  # CPU training: the plain formula
    with torch.no_grad():
        assert chosen(qkv, bias) == "compiled"
        with implementation("pytorch"):
            assert chosen(qkv, bias) == "sdpa"
        with implementation("reference"):
            assert chosen(qkv, bias) == "reference"


@pytest.mark.parametrize("selection", ["reference", "pytorch", "auto", "export"])
def test_every_implementation_gives_the_same_attention(selection):
    qkv, bias, mask = _inputs(3, 16, 2, 6, True)
    groups = [(2, None), (1, mask)]
    expected = torch.cat([_formula(qkv[:32], 2, bias, None, 0.4), _formula(qkv[32:], 2, bias, mask, 0.4)])
    with torch.no_grad(), implementation(selection):
        out = window_attention(qkv, 2, bias, groups, 0.4)
    torch.testing.assert_close(out, expected.float(), rtol=0, atol=1e-5)


@needs_kernel
def test_bad_arguments_are_reported():
    qkv, bias, _ = _inputs(1, 16, 2, 4, False)
    with pytest.raises(ValueError, match="do not match"):
        window_attention_compiled(qkv, 3, bias, None, 0.5)
    with pytest.raises(ValueError, match="mask"):
        window_attention_compiled(qkv, 2, bias, torch.zeros(8, 8), 0.5)
    with pytest.raises(ValueError, match="out"):
        window_attention_compiled(qkv, 2, bias, None, 0.5, out=torch.empty(16, 9))


@pytest.mark.parametrize("images,nw,parts", [(2, 5, 2), (1, 3, 8), (3, 7, 7)])
def test_export_attention_in_parts_equals_the_formula_with_per_window_masks(images, nw, parts):
    """The export formulation cuts the windows of every image into runs (more parts than
    windows: empty runs; runs of unequal length); window i takes mask i mod nW."""
    from mambairv2.ops import attention

    qkv, bias, _ = _inputs(images * nw, 16, 2, 4, False, seed=images)
    g = torch.Generator().manual_seed(nw)
    masks = torch.where(torch.rand(nw, 16, 16, generator=g) < 0.3, -100.0, 0.0)
    expected = _formula(qkv, 2, bias, masks.repeat(images, 1, 1).unsqueeze(1), 0.4)
    old, attention.EXPORT_PARTS = attention.EXPORT_PARTS, parts
    try:
        with torch.no_grad(), implementation("export"):
            out = window_attention(qkv, 2, bias, [(None, masks)], 0.4)
    finally:
        attention.EXPORT_PARTS = old
    torch.testing.assert_close(out, expected.float(), rtol=0, atol=1e-5)
