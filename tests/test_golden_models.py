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


def test_golden_float32_without_compiled_kernels(index):
    """With every C kernel disabled (no compiler on the machine), float32 CPU inference runs on
    PyTorch alone (chunked scan, SDPA, torch's LayerNorm and sort) and still matches the authors."""
    import os
    import subprocess
    import sys

    code = (
        "import torch, mambairv2\n"
        "from mambairv2.ops.attention_compiled import attention_kernel_available\n"
        "from mambairv2.ops.layer_norm_compiled import layer_norm_kernel_available\n"
        "from mambairv2.ops.routing_compiled import routing_kernel_available\n"
        "from mambairv2.ops import kernel_available\n"
        "assert not (attention_kernel_available() or layer_norm_kernel_available()\n"
        "            or routing_kernel_available() or kernel_available())\n"
        f"io = torch.load({str(shared_path('golden', 'light_x2_io.pt'))!r}, weights_only=True)\n"
        f"model = mambairv2.load_model({str(shared_path('golden', 'light_x2.pth'))!r}, dtype=torch.float32)\n"
        "with torch.no_grad():\n"
        "    out = model(io['input_a'].float())\n"
        "print((out.double() - io['output_a']).abs().max().item())\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "MAMBAIRV2_NO_KERNEL": "1"})
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.strip().splitlines()[-1]) <= 1e-4
