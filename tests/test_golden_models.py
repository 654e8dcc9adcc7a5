"""Every golden case of the authors' code: loaded with no configuration, every CPU scan backend
(float32 inference also through the fused oneDNN operators)."""
import json

import pytest
import torch

import mambairv2
from mambairv2.ops import kernel_available, kernel_error, scan_backend

from conftest import shared_path

CASES = ["light_x2", "light_x3", "light_x4", "full_x2", "full_x3", "full_x4", "full_denoise",
         "full_jpeg_gray", "full_real_x4"]


@pytest.fixture(scope="module")
def index():
    return json.loads(shared_path("golden", "index.json").read_text())


@pytest.mark.parametrize("backend", ["chunked", "reference", "compiled"])
@pytest.mark.parametrize("case", CASES)
def test_golden_outputs(case, backend, index):
    if backend == "compiled" and not kernel_available():
        pytest.skip(f"compiled scan kernel unavailable: {kernel_error()}")
    io = torch.load(shared_path("golden", f"{case}_io.pt"), weights_only=True)
    dtypes = ((torch.float64, 1e-8), (torch.float32, 1e-4))
    for dtype, tol in dtypes[1:] if backend == "compiled" else dtypes:  # the kernel is float32
        model = mambairv2.load_model(shared_path("golden", f"{case}.pth"), dtype=dtype)
        assert sum(p.numel() for p in model.parameters()) == index[case]["num_params"]
        assert model.config.arch == index[case]["arch"]
        for k in "ab":
            with torch.no_grad(), scan_backend(backend):
                out = model(io[f"input_{k}"].to(dtype))
            assert out.shape == io[f"output_{k}"].shape
            err = (out.double() - io[f"output_{k}"]).abs().max().item()
            assert err <= tol, (case, backend, dtype, k, err)
