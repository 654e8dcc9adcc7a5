"""ONNX export: the shape-generic export forward equals the model (float64: the authors' golden
outputs), its SGN order keeps ties stable, and one dynamic export runs in onnxruntime at sizes
that are not multiples of the window (CLI, with its self-check)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import REPO, shared_path

from mambairv2 import load_model
from mambairv2.integrations.onnx_export import prepare_for_export, scan_for_export, sgn_order_by_unique_key
from mambairv2.ops import implementation, selective_scan
from mambairv2.ops.routing import sgn_order


def test_unique_key_order_equals_the_stable_sort_with_ties():
    g = torch.Generator().manual_seed(0)
    groups = torch.randint(0, 4, (3, 257), generator=g)  # many ties
    order, inverse = sgn_order_by_unique_key(groups)
    ref_order, ref_inverse = sgn_order(groups)
    assert torch.equal(order, ref_order) and torch.equal(inverse, ref_inverse)


@pytest.mark.parametrize("length", [1, 15, 16, 17, 200])
def test_export_scan_equals_the_reference_recurrence(length):
    g = torch.Generator().manual_seed(length)
    b, d, n = 2, 6, 4
    u = torch.randn(b, length, d, generator=g, dtype=torch.float64)
    delta = torch.rand(b, length, d, generator=g, dtype=torch.float64) * 2
    A = -torch.rand(d, n, generator=g, dtype=torch.float64) * 3
    B = torch.randn(b, length, n, generator=g, dtype=torch.float64)
    C = torch.randn(b, length, n, generator=g, dtype=torch.float64)
    D = torch.randn(d, generator=g, dtype=torch.float64)
    got = scan_for_export(u, delta, A, B, C, D, chunk=4, max_tokens=1024)
    with implementation(selective_scan="reference"):
        ref = selective_scan(u.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2),
                             C.transpose(1, 2), D).transpose(1, 2)
    assert (got - ref).abs().max().item() < 1e-12


@pytest.mark.parametrize("case", ["full_x2", "full_jpeg_gray", "full_real_x4"])
def test_export_forward_reproduces_the_golden_outputs(case):
    io = torch.load(shared_path("golden", f"{case}_io.pt"), weights_only=True)
    model = load_model(shared_path("golden", f"{case}.pth"), dtype=torch.float64)
    with torch.no_grad():
        out = prepare_for_export(model)(io["input_b"][:1])
    assert (out - io["output_b"][:1]).abs().max().item() < 1e-10


def test_cli_dynamic_export_verifies_itself(tmp_path):
    pytest.importorskip("onnx", reason="the [onnx] extra is needed")
    pytest.importorskip("onnxruntime", reason="the [onnx] extra is needed")
    out = tmp_path / "jpeg.onnx"
    env = {"PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "mambairv2", "export", str(shared_path("golden", "full_jpeg_gray.pth")),
                        "-o", str(out), "--dynamic"], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    errs = [float(line.rsplit(" ", 1)[1]) for line in r.stdout.splitlines() if "max abs error" in line]
    assert len(errs) == 2 and max(errs) <= 1e-4, r.stdout  # 37×53 and 64×64 from one graph
    assert out.stat().st_size > 1e6


def test_the_dynamic_graph_does_not_depend_on_the_traced_size(tmp_path):
    """The export traces a small input (its memory grows with the traced size); the graph must be
    the one a larger, several-window trace gives, and serve other sizes within float32 rounding."""
    onnx = pytest.importorskip("onnx", reason="the [onnx] extra is needed")
    pytest.importorskip("onnxruntime", reason="the [onnx] extra is needed")
    from mambairv2 import create_model
    from mambairv2.integrations.onnx_export import TRACE_SIZE, export_onnx, verification_inputs, verify_onnx

    torch.manual_seed(0)
    model = create_model("light", scale=2, embed_dim=12, depths=(2,), num_heads=(2,), d_state=4,
                         inner_rank=4, num_tokens=6).eval()
    graphs = {}
    for sample in (TRACE_SIZE, (37, 53)):
        path = export_onnx(model, tmp_path / f"{sample[0]}x{sample[1]}.onnx", dynamic=True, sample_size=sample)
        g = onnx.load(str(path)).graph
        graphs[sample] = ([n.op_type for n in g.node],
                          sorted(onnx.numpy_helper.to_array(t).tobytes() for t in g.initializer))
    assert graphs[TRACE_SIZE] == graphs[(37, 53)]
    errors = verify_onnx(tmp_path / f"{TRACE_SIZE[0]}x{TRACE_SIZE[1]}.onnx", model,
                         verification_inputs(3, [(37, 53), (64, 48), (5, 70)]))
    assert max(err for _, err in errors) < 1e-4, errors
