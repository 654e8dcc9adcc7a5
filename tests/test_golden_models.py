"""Every golden case of the authors' code: loaded with no configuration, under every
implementation selection of ``ops``."""
import json

import pytest
import torch

import mambairv2
from mambairv2.ops import describe, implementation, kernel_available

from conftest import shared_path

CASES = ["light_x2", "light_x3", "light_x4", "full_x2", "full_x3", "full_x4", "full_denoise",
         "full_jpeg_gray", "full_real_x4"]


@pytest.fixture(scope="module")
def index():
    return json.loads(shared_path("golden", "index.json").read_text())


@pytest.mark.parametrize("selection", ["reference", "pytorch", "auto"])
@pytest.mark.parametrize("case", CASES)
def test_golden_outputs(case, selection, index):
    """Every implementation selection, switched in process: float64 to 1e-8, float32 to 1e-4
    (with ``auto``, float32 CPU inference runs the compiled kernels and oneDNN fusions where they
    build)."""
    io = torch.load(shared_path("golden", f"{case}_io.pt"), weights_only=True)
    for dtype, tol in ((torch.float64, 1e-8), (torch.float32, 1e-4)):
        model = mambairv2.load_model(shared_path("golden", f"{case}.pth"), dtype=dtype)
        assert sum(p.numel() for p in model.parameters()) == index[case]["num_params"]
        assert model.config.arch == index[case]["arch"]
        for k in "ab":
            with torch.no_grad(), implementation(selection):
                out = model(io[f"input_{k}"].to(dtype))
            assert out.shape == io[f"output_{k}"].shape
            err = (out.double() - io[f"output_{k}"]).abs().max().item()
            assert err <= tol, (case, selection, dtype, k, err)


def test_auto_float32_uses_the_fast_paths_where_they_build():
    """The golden ``auto`` run above exercises the compiled kernels: check that they were chosen."""
    chosen = describe("cpu", torch.float32)
    if kernel_available():
        assert chosen["selective_scan"].name == "compiled"
    with implementation("pytorch"):
        assert {c.name for c in describe("cpu", torch.float32).values()} <= {"chunked", "sdpa", "pytorch"}
