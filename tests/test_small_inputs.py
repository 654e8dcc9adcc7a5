"""The fixed costs of small inputs (issue 38): linear layers of few token rows through PyTorch's
GEMM, the operators' dispatch decisions taken once per probe, and no-op dtype casts skipped."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mambairv2
from mambairv2.ops import implementation, linear, linear_act
from mambairv2.ops import dispatch
from mambairv2.ops.dispatch import Probe, cpu_inference_choice
from mambairv2.ops.fused import ONEDNN_MIN_ROWS, choose, onednn_available
from mambairv2.ops.native import as_dtype

from test_model_behaviour import TINY

needs_fusion = pytest.mark.skipif(not onednn_available(), reason="PyTorch built without oneDNN pointwise ops")


def _float32_inference() -> Probe:
    return Probe("cpu", torch.float32, False)


@needs_fusion
def test_few_rows_take_pytorch_gemm_many_rows_onednn():
    probe = _float32_inference()
    assert choose(probe, ONEDNN_MIN_ROWS - 1).name == "pytorch"
    assert choose(probe, ONEDNN_MIN_ROWS).name == "onednn"
    assert choose(probe).name == "onednn"  # convolutions: no row rule
    with implementation(linear_act="onednn"):  # an explicit selection wins over the row rule
        assert choose(probe, 1).name == "onednn"
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bfloat16 GEMMs stay oneDNN's
        assert choose(Probe.of(torch.zeros(1)), 1).name == "onednn"


@needs_fusion
@pytest.mark.parametrize("rows", [ONEDNN_MIN_ROWS // 4, ONEDNN_MIN_ROWS])
@pytest.mark.parametrize("act", ["none", "gelu"])
def test_linear_act_equals_the_plain_layer_on_both_sides_of_the_row_rule(rows, act):
    g = torch.Generator().manual_seed(rows)
    lin = nn.Linear(48, 40)
    x = torch.randn(1, rows, 48, generator=g)
    with torch.inference_mode():
        got = linear_act(x, lin, act)
        with implementation(linear_act="onednn"):
            fused = linear_act(x, lin, act)
    want = lin(x) if act == "none" else F.gelu(lin(x))
    assert got.shape == (1, rows, 40)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    torch.testing.assert_close(fused, want, rtol=0, atol=1e-6)


def test_the_plain_path_keeps_the_hooks_of_a_hooked_linear_layer():
    lin = nn.Linear(8, 8)
    calls = []
    lin.register_forward_hook(lambda mod, args, out: calls.append(out.shape))
    with torch.inference_mode():
        linear(torch.randn(3, 8), lin)
    assert calls == [torch.Size([3, 8])]


def test_choices_are_cached_per_selection_and_probe_and_bounded(monkeypatch):
    monkeypatch.setattr(dispatch, "_choices", {})
    asked = []

    def available() -> bool:
        asked.append(1)
        return True

    probe = _float32_inference()
    first = cpu_inference_choice("layer_norm", probe, "compiled", available, lambda: None)
    again = cpu_inference_choice("layer_norm", probe, "compiled", available, lambda: None)
    assert first == again == ("compiled", "float32 CPU inference") and len(asked) == 1
    with implementation("pytorch"):  # the selection is part of the key: no stale decision
        assert cpu_inference_choice("layer_norm", probe, "compiled", available, lambda: None).name == "pytorch"
    assert cpu_inference_choice("layer_norm", Probe("cpu", torch.float64, False), "compiled",
                                available, lambda: None).name == "pytorch"
    assert cpu_inference_choice("layer_norm", probe, "compiled", available, lambda: None) == first
    for i in range(3 * dispatch._MAX_CHOICES):  # many distinct keys: the cache stays bounded
        cpu_inference_choice("layer_norm", probe, f"fast{i}", available, lambda: None)
        assert len(dispatch._choices) <= dispatch._MAX_CHOICES


def test_cached_choices_give_the_same_model_output():
    """The same output on the first forward (decisions taken) and later ones (cached), and
    the pytorch selection still switches every operator inside a block."""
    torch.manual_seed(0)
    m = mambairv2.create_model("light", scale=2, **dict(TINY, mlp_ratio=1.0)).eval()
    x = torch.rand(1, 3, 16, 16)
    dispatch._choices.clear()
    with torch.inference_mode():
        first = m(x)
        second = m(x)
        with implementation("pytorch"):
            plain = m(x)
    assert torch.equal(first, second)
    torch.testing.assert_close(first, plain, rtol=0, atol=1e-5)


def test_as_dtype_casts_only_when_needed():
    x = torch.randn(3)
    assert as_dtype(x, torch.float32) is x
    y = as_dtype(x, torch.float64)
    assert y.dtype == torch.float64 and torch.equal(y, x.double())
