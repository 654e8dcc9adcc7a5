"""Selective scan: the pure-PyTorch backends and the compiled CPU kernel against the authors'
golden output and each other."""
import pytest
import torch

from mambairv2.ops import implementation, kernel_available, kernel_error, resolve_backend, selective_scan
from mambairv2.ops.native import NativeKernel
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


def test_implementation_context_selects_and_restores():
    u = torch.zeros(1, 2, 3)
    cpu_default = "compiled" if kernel_available() else "chunked"
    assert resolve_backend(u) == cpu_default  # CPU: never the CUDA kernel
    assert resolve_backend(u.double()) == "chunked"  # the kernel is float32 only
    assert resolve_backend(u.requires_grad_(True)) == "chunked"  # and has no backward
    u = u.detach()
    with torch.no_grad():
        assert resolve_backend(u.requires_grad_(True)) == cpu_default
    u = u.detach()
    with implementation("reference"):
        assert resolve_backend(u) == "reference"
        assert resolve_backend(u, "chunked") == "chunked"  # explicit argument wins
        with implementation(selective_scan="chunked"):  # a per-op choice inside a selection
            assert resolve_backend(u) == "chunked"
        assert resolve_backend(u) == "reference"
    with implementation("pytorch"):
        assert resolve_backend(u) == "chunked"
    assert resolve_backend(u) == cpu_default
    with pytest.raises(ValueError, match="unknown implementation"):
        with implementation("fast"):
            pass
    with pytest.raises(ValueError, match="unknown implementation"):
        with implementation(selective_scan="sdpa"):
            pass


def test_bad_shapes_are_reported():
    a = _random()
    a["A"] = a["A"][:3]
    with pytest.raises(ValueError, match="A must be"):
        selective_scan(**a)


needs_kernel = pytest.mark.skipif(not kernel_available(), reason=f"compiled scan kernel unavailable: {kernel_error()}")


@needs_kernel
def test_compiled_golden_float32():
    io = _golden()
    out = selective_scan(*[a.float() if torch.is_tensor(a) else a for a in _args(io)], backend="compiled")
    assert out.dtype == torch.float32
    assert (out.double() - io["out"]).abs().max().item() <= 1e-4


def _token_major(a):
    """The arguments laid out as the model produces them: u, delta ``B×L×D`` and B, C slices of
    one ``B×L×(R+2N)`` projection, passed as transposed views."""
    batch, dim, length = a["u"].shape
    n = a["B"].shape[2]
    u = a["u"].transpose(1, 2).contiguous().transpose(1, 2)
    delta = a["delta"].transpose(1, 2).contiguous().transpose(1, 2)
    proj = torch.cat([torch.zeros(batch, length, 3, dtype=u.dtype), a["B"][:, 0].transpose(1, 2),
                      a["C"][:, 0].transpose(1, 2)], dim=-1)
    return dict(a, u=u, delta=delta, B=proj[..., 3:3 + n].transpose(1, 2), C=proj[..., 3 + n:].transpose(1, 2))


@needs_kernel
@pytest.mark.parametrize("dim", [6, 8, 19])
@pytest.mark.parametrize("layout", ["channel_major", "token_major"])
@pytest.mark.parametrize("softplus", [True, False])
def test_compiled_equals_reference(dim, layout, softplus):
    """float32 kernel against the float64 reference: partial channel blocks (6, 19), strided B/C,
    both memory layouts, with and without the bias/softplus on Δ; y keeps u's layout."""
    a = _random(dim=dim, n=16, length=53)
    if not softplus:
        a["delta"] = a["delta"].abs()
    ref = selective_scan(**a, delta_softplus=softplus, backend="reference")
    f = {k: v.float() for k, v in a.items()}
    if layout == "token_major":
        f = _token_major(f)
    out = selective_scan(**f, delta_softplus=softplus, backend="compiled")
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert (out.stride(1) == 1) == (layout == "token_major")
    err = ((out.double() - ref).abs() / (ref.abs() + 1)).max().item()
    assert err < 2e-5, err


@needs_kernel
def test_compiled_softplus_matches_torch_over_its_range():
    """Δ from −50 to 50 through softplus: with A so negative that the state forgets at once,
    y = softplus(Δ)·u·B·C (+ the tiny remainder of the previous state)."""
    x = torch.linspace(-50, 50, 4001, dtype=torch.float64).view(1, 1, -1)
    ones = torch.ones_like(x)
    args = dict(u=ones, delta=x, A=torch.full((1, 1), -1e9, dtype=torch.float64), B=ones, C=ones)
    ref = selective_scan(**args, delta_softplus=True, backend="reference")
    out = selective_scan(**{k: v.float() for k, v in args.items()}, delta_softplus=True, backend="compiled")
    big = ref > 1e-6
    assert ((out.double() - ref)[big].abs() / ref[big]).max() < 1e-6
    assert (out.double() - ref)[~big].abs().max() < 1e-10


@needs_kernel
def test_compiled_is_deterministic_across_thread_counts():
    a = {k: v.float() for k, v in _random(batch=3, dim=40, n=8, length=300).items()}
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            outs.append(selective_scan(**a, delta_softplus=True, backend="compiled"))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


@needs_kernel
def test_compiled_refuses_what_it_cannot_do():
    with pytest.raises(RuntimeError, match="compiled"):
        selective_scan(**_random(), backend="compiled")  # float64
    a = {k: v.float().requires_grad_(True) for k, v in _random().items()}
    with pytest.raises(RuntimeError, match="compiled"):
        selective_scan(**a, backend="compiled")  # autograd


def _low_rank(rank=3, dim=19, seed=1):
    """Random inputs with Δ given as ``delta_proj @ delta_low`` (the model's dt projection)."""
    a = _random(dim=dim, n=16, length=53, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    low = torch.randn(a["u"].shape[0], rank, a["u"].shape[2], generator=g, dtype=torch.float64)
    proj = torch.randn(dim, rank, generator=g, dtype=torch.float64) / rank ** 0.5
    return a, low, proj


@pytest.mark.parametrize("backend", ["reference", "chunked"] + (["compiled"] if kernel_available() else []))
@pytest.mark.parametrize("rank", [1, 3, 12])
def test_delta_proj_equals_projecting_first(backend, rank):
    """``delta_proj`` (Δ = W·dt, in the kernel for the compiled backend) gives what projecting
    Δ before the call gives, for token-major dt like the model's."""
    a, low, proj = _low_rank(rank=rank)
    full = torch.einsum("dr,brl->bdl", proj, low)
    ref = selective_scan(**dict(a, delta=full), delta_softplus=True, backend="reference")
    dtype = torch.float64 if backend != "compiled" else torch.float32
    f = {k: v.to(dtype) for k, v in a.items()}
    low_tm = low.to(dtype).transpose(1, 2).contiguous().transpose(1, 2)
    out = selective_scan(**dict(f, delta=low_tm), delta_softplus=True, backend=backend,
                         delta_proj=proj.to(dtype))
    err = ((out.double() - ref).abs() / (ref.abs() + 1)).max().item()
    assert err < (1e-12 if dtype == torch.float64 else 2e-5), err


def test_delta_proj_shape_mismatch_is_reported():
    a, low, proj = _low_rank(rank=3)
    with pytest.raises(ValueError, match="delta_proj"):
        selective_scan(**dict(a, delta=low), delta_proj=proj[:, :2], backend="chunked")


@needs_kernel
def test_delta_proj_rank_beyond_the_kernel_falls_back():
    """A rank the kernel does not take (> 64) still gives the right answer under ``auto``."""
    a, low, proj = _low_rank(rank=70, dim=8)
    full = torch.einsum("dr,brl->bdl", proj, low)
    ref = selective_scan(**dict(a, delta=full), delta_softplus=True, backend="reference")
    f = {k: v.float() for k, v in a.items()}
    out = selective_scan(**dict(f, delta=low.float()), delta_softplus=True, delta_proj=proj.float())
    assert ((out.double() - ref).abs() / (ref.abs() + 1)).max().item() < 2e-5


@pytest.mark.parametrize("needs_grad", ["delta", "C", "D", "delta_bias"])
def test_auto_never_drops_a_gradient(needs_grad):
    """``auto`` must not pick the (autograd-less) compiled kernel when any input needs a
    gradient, not only u, B or A; an explicit ``compiled`` request is refused instead."""
    a = {k: v.float() for k, v in _random(dim=8, n=4).items()}
    a["delta_bias"] = torch.zeros(8)
    a[needs_grad] = a[needs_grad].clone().requires_grad_(True)
    y = selective_scan(**a, delta_softplus=True)
    assert y.requires_grad
    y.sum().backward()
    ref = {k: v.detach().double().requires_grad_(k == needs_grad) for k, v in a.items()}
    selective_scan(**ref, delta_softplus=True, backend="reference").sum().backward()
    assert (a[needs_grad].grad.double() - ref[needs_grad].grad).abs().max().item() < 1e-3
    if kernel_available():
        with pytest.raises(RuntimeError, match="compiled"):
            selective_scan(**a, delta_softplus=True, backend="compiled")


def test_auto_keeps_the_gradient_of_delta_proj():
    a, low, proj = _low_rank(rank=3, dim=8)
    f = {k: v.float() for k, v in a.items()}
    w = proj.float().requires_grad_(True)
    y = selective_scan(**dict(f, delta=low.float()), delta_softplus=True, delta_proj=w)
    y.sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0


def _fresh_scan_kernel() -> NativeKernel:
    """A kernel object that has not tried to build yet (the package's own is built once)."""
    from mambairv2.ops import scan_compiled

    k = scan_compiled._KERNEL
    return NativeKernel(k.source.name, k.what, k.symbol, k.argtypes)


def test_a_missing_or_failing_compiler_falls_back(tmp_path, monkeypatch):
    monkeypatch.setenv("MAMBAIRV2_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("PATH", "/nonexistent")
    kernel = _fresh_scan_kernel()
    assert not kernel.available() and "no C compiler" in kernel.error()
    failing = tmp_path / "cc"
    failing.write_text("#!/bin/sh\necho 'cc: broken' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setenv("CC", str(failing))
    monkeypatch.setenv("MAMBAIRV2_CACHE_DIR", str(tmp_path / "cache2"))
    kernel = _fresh_scan_kernel()
    assert not kernel.available()
    assert "building the scan kernel failed" in kernel.error()
    assert "cc: broken" in kernel.error() and not list((tmp_path / "cache2").glob("*.so"))


def test_kernel_build_is_cached(tmp_path, monkeypatch):
    if not kernel_available():
        pytest.skip(f"compiled scan kernel unavailable: {kernel_error()}")
    monkeypatch.setenv("MAMBAIRV2_CACHE_DIR", str(tmp_path))
    for _ in range(2):
        assert _fresh_scan_kernel().available()
    assert len(list(tmp_path.glob("scan_kernel-*.so"))) == 1


@pytest.mark.parametrize("block", [None, 1, 5, 36])
@pytest.mark.parametrize("groups", [(1, 1), (2, 2), (1, 2)])
def test_chunked_inference_token_major_inputs_and_blocks(block, groups):
    """The CPU inference scan (blocks of tokens, log-depth within a block) on the network's
    layout: u and Δ as ``B×D×L`` views of token-major ``B×L×D`` memory, B and C as views of a
    ``B×L×N`` projection, with as many or fewer B groups than C groups."""
    a = _random(length=37)
    g = torch.Generator().manual_seed(3)
    a["B"] = torch.randn(2, 37, groups[0], 4, generator=g, dtype=torch.float64).permute(0, 2, 3, 1)
    a["C"] = torch.randn(2, 37, groups[1], 4, generator=g, dtype=torch.float64).permute(0, 2, 3, 1)
    ref = selective_scan(**a, delta_softplus=True, backend="reference")
    a["u"] = a["u"].transpose(1, 2).contiguous().transpose(1, 2)
    a["delta"] = a["delta"].transpose(1, 2).contiguous().transpose(1, 2)
    with torch.no_grad():
        out = selective_scan_chunked(ScanInputs.prepare(**a, delta_softplus=True), chunk_size=block)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
