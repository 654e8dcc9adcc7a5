"""Triton selective scan (``backend="triton"``) run by Triton's CPU interpreter, against the
reference backend and the authors' golden scan vector: forward and every gradient.

Triton chooses interpreter or compiler when a function is decorated with ``triton.jit``, its
own standard library included (decorated when triton is first imported). So this module sets
``TRITON_INTERPRET=1`` when it is collected, if nothing has imported triton yet, and leaves it
set: the process then stays consistently in interpreter mode (CPU-only ``torch.compile`` is
unaffected; it does not run Triton kernels). Where triton was imported earlier without it, the
interpreter tests skip with that reason.

The interpreter runs ``tl.associative_scan`` and reductions with a custom combine function
(``tl.flip`` uses one) one element at a time (minutes for the golden case); the
``interpreter`` fixture swaps in a log-depth scan over whole blocks and a fold over whole slices,
both calling the same combine functions (the same results up to rounding, checked by
``test_fast_interpreter_scan_agrees_with_triton_s``).
"""
from __future__ import annotations

import importlib
import os
import sys

import numpy as np
import pytest
import torch

if "triton" not in sys.modules:
    os.environ["TRITON_INTERPRET"] = "1"

from mambairv2.ops import implementation, resolve_backend, selective_scan
from mambairv2.ops import scan_triton

from conftest import shared_path

KERNELS = "mambairv2.ops.scan_triton_kernels"
NAMES = ["u", "delta", "A", "B", "C", "D", "delta_bias"]


def _log_depth_scan(self, inputs):
    """Hillis–Steele inclusive scan along ``self.axis``: log2(n) calls of the combine function on
    whole (rolled) blocks instead of one call per element; block shapes stay powers of two."""
    dtypes = [x.dtype for x in inputs]
    data = [np.moveaxis(np.asarray(x.handle.data), self.axis, -1) for x in inputs]
    n = data[0].shape[-1]
    shift = 1
    while shift < n:
        left = [self.to_tensor(np.roll(d, shift, axis=-1), t) for d, t in zip(data, dtypes)]
        right = [self.to_tensor(d, t) for d, t in zip(data, dtypes)]
        out = self.combine_fn.fn(*left, *right)
        out = out if isinstance(out, tuple) else (out,)
        new = []
        for d, o in zip(data, out):
            d = d.copy()
            d[..., shift:] = np.asarray(o.handle.data)[..., shift:]  # the first `shift` wrap around
            new.append(d)
        data, shift = new, shift * 2
    return [self.to_tensor(np.ascontiguousarray(np.moveaxis(d, -1, self.axis)), t)
            for d, t in zip(data, dtypes)]


def _sliced_reduce(self, inputs):
    """The interpreter's generic reduction (a left fold along ``self.axis``) with one call of
    the combine function per slice instead of per element (``tl.flip`` reduces with xor)."""
    if self.axis is None:
        return _sliced_reduce.original(self, inputs)
    dtypes = [x.dtype for x in inputs]
    data = [np.moveaxis(np.asarray(x.handle.data), self.axis, 0) for x in inputs]
    acc = [d[0] for d in data]
    for k in range(1, data[0].shape[0]):
        out = self.combine_fn.fn(*[self.to_tensor(a, t) for a, t in zip(acc, dtypes)],
                                 *[self.to_tensor(d[k], t) for d, t in zip(data, dtypes)])
        out = out if isinstance(out, tuple) else (out,)
        acc = [np.asarray(o.handle.data).reshape(a.shape) for o, a in zip(out, acc)]
    if self.keep_dims:
        acc = [np.expand_dims(a, self.axis) for a in acc]
    return [self.to_tensor(np.ascontiguousarray(a), t) for a, t in zip(acc, dtypes)]


@pytest.fixture(scope="module")
def interpreter():
    pytest.importorskip("triton", reason="triton is not installed (pip install triton): Triton scan untested")
    import triton.language as tl
    from triton.runtime import interpreter as interp

    if not isinstance(tl.standard.zeros, interp.InterpretedFunction):
        pytest.skip("triton was imported before this module could set TRITON_INTERPRET=1 "
                    "(run with TRITON_INTERPRET=1 set)")
    importlib.import_module(KERNELS)
    assert scan_triton.interpreting()
    saved_scan = interp.ScanOps.generic_scan
    _sliced_reduce.original = interp.ReduceOps.generic_reduce
    interp.ScanOps.generic_scan = _log_depth_scan
    interp.ReduceOps.generic_reduce = _sliced_reduce
    try:
        yield saved_scan
    finally:
        interp.ScanOps.generic_scan = saved_scan
        interp.ReduceOps.generic_reduce = _sliced_reduce.original


@pytest.fixture
def blocks(monkeypatch):
    """Sets the kernels' chunk length, the channels per program and whether the forward splits
    the sequence into segments (small values exercise several chunks and segments, partial
    last ones, and partial channel blocks)."""
    def set_blocks(block_l: int, block_d: int, n: int, segments: bool = True) -> None:
        bn = 1 << max(0, n - 1).bit_length()
        for prefix in ("FORWARD", "BACKWARD"):
            monkeypatch.setattr(scan_triton, f"{prefix}_BLOCK_L", block_l)
            monkeypatch.setattr(scan_triton, f"{prefix}_ELEMENTS", block_d * bn * block_l)
        monkeypatch.setattr(scan_triton, "TARGET_PROGRAMS", 10 ** 6 if segments else 0)
        monkeypatch.setattr(scan_triton, "MIN_SEGMENT", 2 * block_l)
    return set_blocks


def _random(batch=2, dim=6, n=4, length=37, groups=1, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    a = dict(u=r(batch, dim, length), delta=r(batch, dim, length) * 0.5,
             A=-torch.rand(dim, n, generator=g, dtype=torch.float64) * 3, B=r(batch, groups, n, length),
             C=r(batch, groups, n, length), D=r(dim), delta_bias=r(dim) * 0.1)
    return {k: v.to(dtype) for k, v in a.items()}


def _run(args, backend, softplus=True, g_out=None):
    """y and the gradients of (y·g_out).sum() w.r.t. every tensor argument."""
    leaves = {k: v.clone().requires_grad_(True) if v is not None else None for k, v in args.items()}
    y = selective_scan(**leaves, delta_softplus=softplus, backend=backend)
    if g_out is None:
        g_out = torch.randn(y.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    (y * g_out.to(y.dtype)).sum().backward()
    return y.detach(), {k: v.grad for k, v in leaves.items() if v is not None}


def _rel(x, ref):
    return ((x.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


def _compare(args, softplus=True, y_tol=1e-5, g_tol=1e-4):
    ref_y, ref_g = _run({k: None if v is None else v.double() for k, v in args.items()}, "reference", softplus)
    y, grads = _run(args, "triton", softplus)
    assert y.dtype == args["u"].dtype and y.shape == ref_y.shape
    assert _rel(y, ref_y) <= y_tol, ("y", _rel(y, ref_y))
    assert grads.keys() == ref_g.keys()
    for k, g in grads.items():
        assert g.dtype == args[k].dtype and g.shape == args[k].shape, k
        assert ref_g[k].abs().max() > 0, k
        assert _rel(g, ref_g[k]) <= g_tol, (k, _rel(g, ref_g[k]))


SHAPES = {  # batch, dim, n, length, groups
    "odd_L": (2, 6, 4, 37, 1),
    "odd_dim_n": (1, 5, 3, 19, 1),
    "groups": (2, 8, 4, 23, 2),
}


@pytest.mark.parametrize("dtype, y_tol, g_tol", [(torch.float32, 1e-5, 1e-4), (torch.float64, 1e-10, 1e-10)],
                         ids=["float32", "float64"])
@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
def test_forward_and_gradients_equal_reference(interpreter, blocks, shape, dtype, y_tol, g_tol):
    batch, dim, n, length, groups = SHAPES[shape]
    blocks(block_l=8, block_d=2, n=n)  # several chunks and segments, the last partial; partial channel blocks
    _compare(_random(batch, dim, n, length, groups, dtype), y_tol=y_tol, g_tol=g_tol)


def test_without_softplus_bias_and_skip(interpreter, blocks):
    blocks(block_l=16, block_d=4, n=4)
    a = _random(length=29)
    a["delta"] = a["delta"].abs()
    a["D"] = a["delta_bias"] = None
    _compare(a, softplus=False, y_tol=1e-10, g_tol=1e-10)


def test_golden_vector(interpreter, blocks):
    """The authors' scan vector: float64 to 1e-10 (absolute) and float32 to 1e-5 (relative);
    the float64 gradients equal the reference backend's to 1e-10 (relative)."""
    io = torch.load(shared_path("golden", "selective_scan_io.pt"), weights_only=True)
    # one program per batch item, one segment: fast to interpret
    blocks(block_l=128, block_d=32, n=io["A"].shape[1], segments=False)
    args = {k: io[k] for k in NAMES}
    y = selective_scan(**args, delta_softplus=True, backend="triton")
    assert y.dtype == torch.float64 and (y - io["out"]).abs().max().item() <= 1e-10
    y32 = selective_scan(**{k: v.float() for k, v in args.items()}, delta_softplus=True, backend="triton")
    assert y32.dtype == torch.float32 and _rel(y32, io["out"]) <= 1e-5
    _compare(args, y_tol=1e-10, g_tol=1e-10)


def test_fast_interpreter_scan_agrees_with_triton_s(interpreter, blocks):
    """The fixture's stand-ins for the interpreter's element-wise associative scan and reduction
    give the same forward and gradients on a tiny case."""
    blocks(block_l=8, block_d=2, n=2)
    a = _random(batch=1, dim=3, n=2, length=11)
    fast = _run(a, "triton")
    from triton.runtime.interpreter import ReduceOps, ScanOps

    # the interpreter's own scan and reduction, one element at a time
    ScanOps.generic_scan, ReduceOps.generic_reduce = interpreter, _sliced_reduce.original
    try:
        slow = _run(a, "triton")
    finally:
        ScanOps.generic_scan, ReduceOps.generic_reduce = _log_depth_scan, _sliced_reduce
    torch.testing.assert_close(fast[0], slow[0], rtol=0, atol=1e-13)
    for k in fast[1]:
        torch.testing.assert_close(fast[1][k], slow[1][k], rtol=1e-12, atol=1e-13, msg=k)


def test_half_inputs_keep_float32_state(interpreter, blocks):
    """bf16 u/Δ/B/C with float32 A, D, bias (as under autocast): y and the gradients come back in
    each input's dtype, and y matches the float64 reference of the same (rounded) values to
    bf16 output rounding."""
    blocks(block_l=16, block_d=4, n=4)
    a = _random(length=33, dtype=torch.float32)
    for k in ("u", "delta", "B", "C"):
        a[k] = a[k].bfloat16()
    y, grads = _run(a, "triton")
    ref_y, ref_g = _run({k: v.double() for k, v in a.items()}, "reference")
    assert y.dtype == torch.bfloat16
    assert _rel(y, ref_y) < 1e-2
    for k, g in grads.items():
        assert g.dtype == a[k].dtype
        assert _rel(g, ref_g[k]) < 2e-2, k


def test_strided_inputs_and_output_layout(interpreter, blocks):
    """u, Δ token-major (transposed views) and B, C slices of one projection, as the model passes
    them: the same result as contiguous inputs, and y keeps u's layout."""
    blocks(block_l=8, block_d=2, n=4)
    a = _random(length=21)
    batch, dim, length = a["u"].shape
    n = a["A"].shape[1]
    proj = torch.cat([torch.zeros(batch, length, 3, dtype=torch.float64), a["B"][:, 0].transpose(1, 2),
                      a["C"][:, 0].transpose(1, 2)], dim=-1)
    strided = dict(a, u=a["u"].transpose(1, 2).contiguous().transpose(1, 2),
                   delta=a["delta"].transpose(1, 2).contiguous().transpose(1, 2),
                   B=proj[..., 3:3 + n].transpose(1, 2), C=proj[..., 3 + n:].transpose(1, 2))
    y = selective_scan(**strided, delta_softplus=True, backend="triton")
    assert y.stride(1) == 1
    assert torch.equal(y, selective_scan(**a, delta_softplus=True, backend="triton"))


def test_backend_selection(interpreter):
    u = torch.zeros(1, 2, 3)
    assert scan_triton.triton_available() and scan_triton.triton_unavailable_reason() is None
    assert resolve_backend(u, "triton") == "triton"
    assert resolve_backend(u) != "triton"  # auto picks triton for CUDA tensors only
    with implementation(selective_scan="triton"):
        assert resolve_backend(u) == "triton"


def test_unavailable_reason_without_triton(monkeypatch):
    """Without triton the package still imports and the reason says so; the backend refuses."""
    monkeypatch.setitem(sys.modules, "triton", None)  # makes `import triton` fail
    scan_triton._import_error.cache_clear()
    try:
        reason = scan_triton.triton_unavailable_reason()
        assert reason is not None and "triton is not importable" in reason
        assert not scan_triton.triton_available()
        a = _random(length=5)
        with pytest.raises(RuntimeError, match="triton"):
            selective_scan(**a, backend="triton")
    finally:
        monkeypatch.undo()
        scan_triton._import_error.cache_clear()


def test_bad_group_shapes_are_reported():
    a = _random(groups=2)
    a["C"] = a["C"][:, :1]
    with pytest.raises(ValueError, match="groups"):
        scan_triton.selective_scan_triton(**a)


def test_segments_split_long_sequences():
    """Few programs and a long sequence: the forward cuts it into segments of whole chunks."""
    assert scan_triton._segments(programs=10 ** 6, length=10 ** 6, block_l=64) == (1, 15625 * 64)
    segs, seg_len = scan_triton._segments(programs=12, length=262144, block_l=64)
    assert segs > 1 and seg_len % 64 == 0 and segs * seg_len >= 262144 > (segs - 1) * seg_len
    assert segs * 12 >= scan_triton.TARGET_PROGRAMS and seg_len >= scan_triton.MIN_SEGMENT
