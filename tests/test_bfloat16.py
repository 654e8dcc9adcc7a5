"""bfloat16 inference on CPUs: autocast with float32 weights, the float32 kernels kept for the
scan, attention, LayerNorm and routing, the error bound, and the refusal on CPUs without native
bfloat16 (simulated with ``$MAMBAIRV2_CPU_BFLOAT16``)."""
import numpy as np
import pytest
import torch

import mambairv2
from mambairv2.cli.main import main
from mambairv2.ops import compute_precision, describe, precision_plan, selective_scan
from mambairv2.utils.devices import CPU_BFLOAT16_ENV, DeviceError

from test_model_behaviour import TINY


@pytest.fixture
def native(monkeypatch):
    """bfloat16 taken as native here (emulation is slower, never wrong: the numbers hold)."""
    monkeypatch.setenv(CPU_BFLOAT16_ENV, "native")


@pytest.fixture
def emulated(monkeypatch):
    monkeypatch.setenv(CPU_BFLOAT16_ENV, "emulated")


def _model(variant: str = "light") -> torch.nn.Module:
    torch.manual_seed(0)
    m = mambairv2.create_model(variant, scale=2, **dict(TINY, mlp_ratio=1.0)).eval()
    for p in m.parameters():  # released-like magnitudes: layer scales and biases far from init
        p.data.add_(torch.randn_like(p) * 0.05)
    return mambairv2.models.set_routing(m, "argmax")


def test_cpu_bfloat16_is_autocast_with_float32_weights(native):
    assert precision_plan("cpu", "bfloat16") == (torch.float32, torch.bfloat16)
    assert precision_plan("cpu", "float32") == (torch.float32, None)
    assert precision_plan("cpu", torch.float16) == (torch.float16, None)


def test_fast_paths_stay_on_under_bfloat16_autocast(native):
    """The kernels (float32 inside) and oneDNN's GEMMs keep running under bfloat16 autocast;
    float16 autocast still takes the PyTorch paths."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        chosen = {op: c.name for op, c in describe("cpu", torch.bfloat16).items()}
    assert chosen["linear_act"] == "onednn"
    for op in ("selective_scan", "window_attention", "layer_norm", "sgn_route"):
        assert chosen[op] == "compiled" or not mambairv2.ops.kernel_available(), (op, chosen[op])
    with torch.autocast("cpu", dtype=torch.float16):
        assert describe("cpu", torch.float16)["linear_act"].name == "pytorch"


def test_scan_recurrence_stays_float32_under_autocast(native):
    """bfloat16 inputs under autocast: the only error is the inputs' rounding (the state is
    carried in float32), so the result equals the float32 reference on the rounded inputs."""
    g = torch.Generator().manual_seed(1)
    b, d, n, length = 1, 16, 8, 300
    args = dict(u=torch.randn(b, d, length, generator=g), delta=torch.rand(b, d, length, generator=g),
                A=-torch.rand(d, n, generator=g) - 0.1, B=torch.randn(b, n, length, generator=g),
                C=torch.randn(b, n, length, generator=g), D=torch.randn(d, generator=g))
    rounded = {k: v.bfloat16() if k in ("u", "delta", "B", "C") else v for k, v in args.items()}
    want = selective_scan(**{k: v.float() for k, v in rounded.items()}, backend="reference")
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = selective_scan(**rounded)
    assert (got.float() - want).abs().max() <= 1e-4 * want.abs().max()


@pytest.mark.parametrize("variant", ["light", "base"])
def test_model_error_bound_under_bfloat16(native, variant):
    m = _model(variant)
    x = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        ref = m(x)
        with compute_precision("cpu", "bfloat16"):
            half = m(x)
    err = (half.float() - ref).abs().max().item()
    assert 0 < err < 0.03, err  # bfloat16 has 8 bits of mantissa: not equal, but close


def test_restore_api_takes_a_dtype(native):
    m = _model()
    img = np.random.default_rng(3).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    ref = mambairv2.restore(m, img)
    half = mambairv2.restore(m, img, dtype="bfloat16")
    assert half.dtype == np.uint8 and half.shape == ref.shape
    diff = np.abs(half.astype(int) - ref.astype(int))
    assert 0 < diff.max() <= 8 and diff.mean() < 1.0


def test_refused_on_a_cpu_without_native_bfloat16(emulated, tmp_path, capsys):
    with pytest.raises(DeviceError, match="emulated"):
        precision_plan("cpu", "bfloat16")
    with pytest.raises(ValueError, match="emulated"):
        mambairv2.restore(_model(), np.zeros((16, 16, 3), np.uint8), dtype="bfloat16")
    assert precision_plan("cpu", "float32") == (torch.float32, None)  # float32 unaffected
    from PIL import Image

    src = tmp_path / "a.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(src)
    out = tmp_path / "out"
    for argv in (["restore", str(src), "-o", str(out), "--device", "cpu", "--dtype", "bfloat16"],
                 ["bench", "--variant", "light", "--size", "16", "--dtype", "bfloat16"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "emulated" in err and "Traceback" not in err, err
    assert not out.exists() or not any(out.iterdir())
