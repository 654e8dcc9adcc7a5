"""Selective scan: both pure-PyTorch backends against the authors' golden output and each other."""
import pytest
import torch

from mambairv2.ops import resolve_backend, scan_backend, selective_scan
from mambairv2.ops.scan_chunked import selective_scan_chunked
from mambairv2.ops.scan_common import ScanInputs

from conftest import shared_path

BACKENDS = ["reference", "chunked"]


def _golden():
    return torch.load(shared_path("golden", "selective_scan_io.pt"), weights_only=True)


def _args(io):
    return (io["u"], io["delta"], io["A"], io["B"], io["C"], io["D"], io["delta_bias"], True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_golden_float64(backend):
    io = _golden()
    out = selective_scan(*_args(io), backend=backend)
    assert out.dtype == torch.float64
    assert (out - io["out"]).abs().max().item() <= 1e-10


@pytest.mark.parametrize("backend", BACKENDS)
def test_golden_float32(backend):
    io = _golden()
    out = selective_scan(*[a.float() if torch.is_tensor(a) else a for a in _args(io)], backend=backend)
    assert out.dtype == torch.float32
    assert (out.double() - io["out"]).abs().max().item() <= 1e-4


def _random(batch=2, dim=6, n=4, length=37, groups=1, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)
    return dict(u=r(batch, dim, length), delta=r(batch, dim, length) * 0.5,
                A=-torch.rand(dim, n, generator=g, dtype=dtype) * 3, B=r(batch, groups, n, length),
                C=r(batch, groups, n, length), D=r(dim), delta_bias=r(dim) * 0.1)


@pytest.mark.parametrize("chunk", [1, 3, 8, 37, 64])
@pytest.mark.parametrize("groups", [1, 2])
def test_chunked_equals_reference_any_chunk(chunk, groups):
    a = _random(groups=groups)
    ref = selective_scan(**a, delta_softplus=True, backend="reference")
    s = ScanInputs.prepare(**a, delta_softplus=True)
    torch.testing.assert_close(selective_scan_chunked(s, chunk_size=chunk), ref, rtol=0, atol=1e-12)


def test_three_dim_B_C_accepted():
    a = _random()
    ref = selective_scan(**a, delta_softplus=True, backend="reference")
    a["B"], a["C"] = a["B"][:, 0], a["C"][:, 0]
    torch.testing.assert_close(selective_scan(**a, delta_softplus=True, backend="chunked"), ref,
                               rtol=0, atol=1e-12)


def test_gradients_chunked_equal_reference():
    io = _golden()
    names = ["u", "delta", "A", "B", "C", "D", "delta_bias"]
    grads = {}
    g_out = torch.randn_like(io["out"], generator=torch.Generator().manual_seed(1))
    for backend in BACKENDS:
        leaves = {k: io[k].clone().requires_grad_(True) for k in names}
        out = selective_scan(leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"],
                             leaves["D"], leaves["delta_bias"], True, backend=backend)
        (out * g_out).sum().backward()
        grads[backend] = {k: v.grad for k, v in leaves.items()}
    for k in names:
        diff = (grads["chunked"][k] - grads["reference"][k]).abs().max().item()
        assert diff <= 1e-8, (k, diff)
        assert grads["reference"][k].abs().max() > 0, k


@pytest.mark.parametrize("chunk", [1, 5, 16, 64])
@pytest.mark.parametrize("groups", [1, 2])
def test_chunked_backward_equals_reference_any_chunk(chunk, groups):
    """The hand-written backward of the chunked scan, with and without padding of the last chunk,
    one chunk or many, B/C shared by all channels or per group."""
    a = _random(groups=groups)
    g_out = torch.randn(a["u"].shape, generator=torch.Generator().manual_seed(2), dtype=a["u"].dtype)
    grads = []
    for run in ("reference", "chunked"):
        leaves = {k: v.clone().requires_grad_(True) for k, v in a.items()}
        if run == "reference":
            out = selective_scan(**leaves, delta_softplus=True, backend="reference")
        else:
            out = selective_scan_chunked(ScanInputs.prepare(**leaves, delta_softplus=True), chunk_size=chunk)
        (out * g_out).sum().backward()
        grads.append({k: v.grad for k, v in leaves.items()})
    for k in a:
        assert grads[0][k].abs().max() > 0, k
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=0, atol=1e-11, msg=k)


def test_half_inputs_are_upcast_and_returned_in_their_dtype():
    a = {k: v.float() for k, v in _random().items()}
    ref = selective_scan(**a, backend="reference")
    out = selective_scan(**{k: v.bfloat16() if k in ("u", "delta", "B", "C") else v for k, v in a.items()},
                         backend="chunked")
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() < 0.1 * ref.abs().max()


def test_scan_backend_context_selects_and_restores():
    u = torch.zeros(1, 2, 3)
    assert resolve_backend(u) == "chunked"  # CPU: never the CUDA kernel
    with scan_backend("reference"):
        assert resolve_backend(u) == "reference"
        assert resolve_backend(u, "chunked") == "chunked"  # explicit argument wins
    assert resolve_backend(u) == "chunked"
    with pytest.raises(ValueError, match="unknown scan backend"):
        with scan_backend("fast"):
            pass


def test_bad_shapes_are_reported():
    a = _random()
    a["A"] = a["A"][:3]
    with pytest.raises(ValueError, match="A must be"):
        selective_scan(**a)
