"""MambaIR (v1): every golden case of the authors' v1 code loads with no configuration and
matches (float64 with the reference and chunked scans, float32 with the default and compiled
ones); the v1 scan vector (four B/C groups in one call) is reproduced by every scan backend."""
import json

import pytest
import torch

import mambairv2
from mambairv2.models.mambair import MambaIRConfig
from mambairv2.ops import implementation, kernel_available, kernel_error, mamba_ssm_available, selective_scan

from conftest import shared_path

CASES = ["light_x2", "light_x4", "classic_x2", "classic_x3", "classic_x4", "denoise", "jpeg_gray",
         "realsr_x4"]
#: (label, ops.implementation arguments, dtype, tolerance): every operator's reference path and
#: the pure-PyTorch paths (chunked scan) in float64; float32 with the default selection (compiled
#: kernels and oneDNN fusions where they build) and with the compiled scan forced
RUNS = [("reference", dict(name="reference"), torch.float64, 1e-8),
        ("pytorch", dict(name="pytorch"), torch.float64, 1e-8),
        ("auto", dict(name="auto"), torch.float32, 1e-4),
        ("compiled", dict(selective_scan="compiled"), torch.float32, 1e-4)]


@pytest.fixture(scope="module")
def index():
    return json.loads(shared_path("golden_v1", "index.json").read_text())


@pytest.mark.parametrize("label,selection,dtype,tol", RUNS, ids=[r[0] for r in RUNS])
@pytest.mark.parametrize("case", CASES)
def test_golden_outputs(case, label, selection, dtype, tol, index):
    if label == "compiled" and not kernel_available():
        pytest.skip(f"compiled scan kernel unavailable: {kernel_error()}")
    io = torch.load(shared_path("golden_v1", f"{case}_io.pt"), weights_only=True)
    model = mambairv2.load_model(shared_path("golden_v1", f"{case}.pth"), dtype=dtype)
    assert model.config == MambaIRConfig.from_network_g(index[case]["network_g"])
    assert model.config.arch == index[case]["arch"]
    assert sum(p.numel() for p in model.parameters()) == index[case]["num_params"]
    for k in "ab":
        with torch.no_grad(), implementation(**selection):
            out = model(io[f"input_{k}"].to(dtype))
        assert out.dtype == dtype and out.shape == io[f"output_{k}"].shape
        err = (out.double() - io[f"output_{k}"]).abs().max().item()
        assert err <= tol, (case, label, k, err)


@pytest.mark.parametrize("backend", ["reference", "chunked", "auto", "compiled", "mamba_ssm", "triton"])
def test_v1_scan_vector(backend):
    """u, delta: 2×48×50; B, C: 2×4×6×50 (channel c uses group c // 12): the authors' v1 call."""
    io = torch.load(shared_path("golden_v1", "selective_scan_v1_io.pt"), weights_only=True)
    args = {k: io[k] for k in ("u", "delta", "A", "B", "C", "D", "delta_bias")}
    device, dtype, tol = "cpu", torch.float64, 1e-10
    if backend == "compiled":
        if not kernel_available():
            pytest.skip(f"compiled scan kernel unavailable: {kernel_error()}")
        dtype, tol = torch.float32, 1e-5  # float32 only; |out| reaches 11.7
    if backend == "mamba_ssm":
        if not (mamba_ssm_available() and torch.cuda.is_available()):
            pytest.skip("mamba_ssm with a CUDA device is not available here")
        device, dtype, tol = "cuda", torch.float32, 1e-4
    if backend == "triton":
        from mambairv2.ops.scan_triton import triton_available

        if not (triton_available() and torch.cuda.is_available()):
            pytest.skip("triton with a CUDA device is not available here")
        device, dtype, tol = "cuda", torch.float64, 1e-10
    args = {k: v.to(device, dtype) for k, v in args.items()}
    out = selective_scan(**args, delta_softplus=True, backend=backend)
    assert out.shape == io["out"].shape and out.dtype == dtype
    assert (out.double().cpu() - io["out"]).abs().max().item() <= tol
