"""The compiled window-attention kernel against the plain formula in float64."""
import os
import subprocess
import sys

import pytest
import torch

from mambairv2.ops.attention_compiled import (MAX_HEAD_DIM, attention_kernel_applies,
                                              attention_kernel_available, attention_kernel_error,
                                              window_attention_compiled)

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
@pytest.mark.parametrize("windows,n,heads,hd", [(3, 256, 4, 12), (2, 49, 2, 12), (2, 64, 3, 5), (1, 40, 2, 16)])
@pytest.mark.parametrize("masked", [False, True])
def test_kernel_equals_the_formula(windows, n, heads, hd, masked):
    """The light model's shape (16×16 windows, 12-channel heads), windows whose token count is
    not a multiple of the vector width, other head sizes; strided rows; with and without mask."""
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
def test_applies_only_where_it_is_faster_and_correct():
    qkv, bias, _ = _inputs(1, 16, 1, 12, False)
    assert attention_kernel_applies(qkv, 12, bias)
    assert not attention_kernel_applies(qkv, MAX_HEAD_DIM + 1, bias)  # SDPA is faster there
    assert not attention_kernel_applies(qkv.double(), 12, bias)
    assert not attention_kernel_applies(qkv, 12, bias.requires_grad_(True))
    with torch.no_grad():
        assert attention_kernel_applies(qkv, 12, bias)


@needs_kernel
def test_bad_arguments_are_reported():
    qkv, bias, _ = _inputs(1, 16, 2, 4, False)
    with pytest.raises(ValueError, match="do not match"):
        window_attention_compiled(qkv, 3, bias, None, 0.5)
    with pytest.raises(ValueError, match="mask"):
        window_attention_compiled(qkv, 2, bias, torch.zeros(8, 8), 0.5)
    with pytest.raises(ValueError, match="out"):
        window_attention_compiled(qkv, 2, bias, None, 0.5, out=torch.empty(16, 9))


def test_disabled_kernel_is_never_used():
    code = ("import torch\nfrom mambairv2.ops.attention_compiled import attention_kernel_applies, "
            "attention_kernel_error\n"
            "print(attention_kernel_applies(torch.zeros(4, 36), 12), '|', attention_kernel_error())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "MAMBAIRV2_NO_KERNEL": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("False |") and "MAMBAIRV2_NO_KERNEL" in r.stdout
