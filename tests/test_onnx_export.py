"""ONNX export: the model's own forward under ``ops.implementation("export")`` equals the
authors' golden outputs (float64), its SGN order keeps ties stable and its scan equals the
reference recurrence; exported graphs of both families run in onnxruntime at sizes that are not
multiples of the window, from one dynamic graph (also through the CLI)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import REPO, shared_path

from mambairv2 import load_model
from mambairv2.ops import implementation, selective_scan
from mambairv2.ops.routing import sgn_order, sgn_order_unique_key
from mambairv2.ops.scan_common import ScanInputs
from mambairv2.ops.scan_export import linear_recurrence, selective_scan_export

ENV = {"PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}


def _needs_onnx() -> None:
    pytest.importorskip("onnx", reason="the [onnx] extra is needed")
    pytest.importorskip("onnxruntime", reason="the [onnx] extra is needed")


def test_unique_key_order_equals_the_stable_sort_with_ties():
    g = torch.Generator().manual_seed(0)
    groups = torch.randint(0, 4, (3, 257), generator=g)  # many ties
    order, inverse = sgn_order_unique_key(groups)
    ref_order, ref_inverse = sgn_order(groups)
    assert torch.equal(order, ref_order) and torch.equal(inverse, ref_inverse)


@pytest.mark.parametrize("length", [1, 3, 4, 5, 17, 64, 200, 1024])
def test_linear_recurrence_with_fixed_levels(length):
    g = torch.Generator().manual_seed(length)
    a = torch.rand(length, 3, generator=g, dtype=torch.float64)
    b = torch.randn(length, 3, generator=g, dtype=torch.float64)
    h, ref = torch.zeros(3, dtype=torch.float64), []
    for i in range(length):
        h = a[i] * h + b[i]
        ref.append(h)
    got = linear_recurrence(a, b, chunk=4, max_length=1024)
    assert (got - torch.stack(ref)).abs().max().item() < 1e-12


@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("length", [1, 15, 16, 17, 200])
def test_export_scan_equals_the_reference_recurrence(length, groups):
    g = torch.Generator().manual_seed(length)
    b, d, n = 2, 8, 4
    u = torch.randn(b, d, length, generator=g, dtype=torch.float64)
    delta = torch.rand(b, d, length, generator=g, dtype=torch.float64) * 2
    A = -torch.rand(d, n, generator=g, dtype=torch.float64) * 3
    B = torch.randn(b, groups, n, length, generator=g, dtype=torch.float64)
    C = torch.randn(b, groups, n, length, generator=g, dtype=torch.float64)
    D = torch.randn(d, generator=g, dtype=torch.float64)
    got = selective_scan_export(ScanInputs.prepare(u, delta, A, B, C, D), chunk=4, max_tokens=1024)
    with implementation(selective_scan="reference"):
        ref = selective_scan(u, delta, A, B, C, D)
    with implementation("export"):  # through the dispatch, with the default chunk and levels
        dispatched = selective_scan(u, delta, A, B, C, D)
    assert (got - ref).abs().max().item() < 1e-12
    assert (dispatched - ref).abs().max().item() < 1e-12


class _Scan(torch.nn.Module):
    """One scan as the model calls it (rank-R Δ projection, bias, softplus, D skip); B and C
    ``1×G×N×L``."""

    def __init__(self, dim: int, state: int, rank: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.A = torch.nn.Parameter(-torch.exp(torch.randn(dim, state, generator=g)))
        self.D = torch.nn.Parameter(torch.randn(dim, generator=g))
        self.bias = torch.nn.Parameter(torch.randn(dim, generator=g) - 2)
        self.proj = torch.nn.Parameter(torch.randn(dim, rank, generator=g))

    def forward(self, u, dt, B, C):
        return selective_scan(u, dt, self.A, B, C, self.D, delta_bias=self.bias, delta_softplus=True,
                              delta_proj=self.proj)


@pytest.mark.parametrize("groups", [1, 2])
def test_the_exported_scan_graph_equals_the_reference_in_onnxruntime(tmp_path, groups):
    """The scan's graph alone, traced at one length, run by onnxruntime at others (a long one
    spans three levels of carries, a short one is padded): float32 within 1e-6 of the float64
    reference recurrence, relative to the output's largest value (float32 rounding gives about
    1.3e-7 here; carried states scaled by 1 − 1e-4 fail it)."""
    _needs_onnx()
    import warnings

    import onnxruntime as ort

    dim, state, rank = 16, 4, 2
    scan = _Scan(dim, state, rank).eval()

    def inputs(length: int, dtype=torch.float32):
        g = torch.Generator().manual_seed(length)
        return [torch.randn(*c, length, generator=g).to(dtype)
                for c in ((1, dim), (1, rank), (1, groups, state), (1, groups, state))]

    path = tmp_path / "scan.onnx"
    with torch.no_grad(), implementation("export"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(scan, tuple(inputs(100)), str(path), dynamo=False, opset_version=18,
                          input_names=list("udbc"), output_names=["y"],
                          dynamic_axes={"u": {2: "L"}, "d": {2: "L"}, "b": {3: "L"}, "c": {3: "L"}, "y": {2: "L"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for length in (5, 16 ** 3 + 3):
        x = inputs(length)
        got = torch.from_numpy(session.run(None, dict(zip("udbc", [t.numpy() for t in x])))[0])
        with torch.no_grad(), implementation(selective_scan="reference"):
            ref = scan.double()(*[t.double() for t in x])
        scan.float()
        assert got.shape == ref.shape
        assert (got.double() - ref).abs().max().item() <= 1e-6 * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("case", ["golden/full_x2", "golden/full_jpeg_gray", "golden/full_real_x4",
                                  "golden/full_denoise", "golden_v1/light_x2"])
def test_the_export_forward_reproduces_the_golden_outputs(case):
    folder, name = case.split("/")
    io = torch.load(shared_path(folder, f"{name}_io.pt"), weights_only=True)
    model = load_model(shared_path(folder, f"{name}.pth"), dtype=torch.float64)
    with torch.no_grad(), implementation("export"):
        out = model(io["input_b"][:1])
    assert (out - io["output_b"][:1]).abs().max().item() < 1e-10


@pytest.mark.parametrize("case,sizes", [
    ("golden/full_x2", [(20, 27), (37, 19)]),  # MambaIRv2: window 16, neither a multiple
    ("golden_v1/light_x2", [(17, 23), (9, 31)]),  # MambaIR v1 light
])
def test_a_dynamic_export_verifies_at_sizes_it_was_not_traced_at(tmp_path, case, sizes):
    _needs_onnx()
    from mambairv2.integrations.onnx_export import export_onnx, verification_inputs, verify_onnx

    folder, name = case.split("/")
    model = load_model(shared_path(folder, f"{name}.pth"))
    path = export_onnx(model, tmp_path / f"{name}.onnx", dynamic=True)
    errors = verify_onnx(path, model, verification_inputs(3, sizes))
    assert [shape[2:] for shape, _ in errors] == sizes
    assert max(err for _, err in errors) <= 1e-4, errors


def _cli_errors(args, tmp_path):
    out = tmp_path / "model.onnx"
    r = subprocess.run([sys.executable, "-m", "mambairv2", "export", *args, "-o", str(out)],
                       env=ENV, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert out.stat().st_size > 1e6
    return [float(line.rsplit(" ", 1)[1]) for line in r.stdout.splitlines() if "max abs error" in line]


def test_cli_dynamic_export_verifies_itself(tmp_path):
    _needs_onnx()
    errs = _cli_errors([str(shared_path("golden", "full_jpeg_gray.pth")), "--dynamic"], tmp_path)
    assert len(errs) == 2 and max(errs) <= 1e-4, errs  # 37×53 and 64×64 from one graph


@pytest.mark.parametrize("model", ["default", "golden_denoise"])
def test_cli_exports_the_bundled_model_and_a_denoiser(tmp_path, model):
    _needs_onnx()
    name = "default" if model == "default" else str(shared_path("golden", "full_denoise.pth"))
    errs = _cli_errors(["--model", name, "--size", "24x20"], tmp_path)
    assert len(errs) == 1 and errs[0] <= 1e-4, errs


def test_the_dynamic_graph_does_not_depend_on_the_traced_size(tmp_path):
    """The export traces a small input (its memory grows with the traced size); the graph must be
    the one a larger, several-window trace gives, and serve other sizes within float32 rounding
    (100×90: 42 windows, more than the exported attention's parts)."""
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
                         verification_inputs(3, [(37, 53), (64, 48), (5, 70), (100, 90)]))
    assert max(err for _, err in errors) < 1e-4, errors


#: Tiny networks with every non-default ablation switch (docs/ablation.md), independent switches
#: grouped in one network; T and r differ from every variant's. Window 4: 9×11 is no multiple.
TINY_V2 = dict(embed_dim=12, depths=(1,), num_heads=(2,), window_size=4, d_state=4, inner_rank=3, num_tokens=5)
TINY_V1 = dict(embed_dim=30, depths=(1,), d_state=4, mlp_ratio=1.0)
SWITCHED = [
    ("light", dict(TINY_V2, ase=False)),  # routing and SGN order without prompts
    ("light", dict(TINY_V2, ase=False, sgn=False)),  # a plain scan
    ("light", dict(TINY_V2, sgn=False, prompt_position="B", prompt_basis="shared")),
    ("light", dict(TINY_V2, prompt_position="delta", prompt_order="sgn")),
    ("base", dict(TINY_V2, prompt_position="y", prompt_basis="shared", prompt_order="sgn")),
    ("mambair-light", dict(TINY_V1, scan_directions=1, cab="light-06dc6cd")),
    ("mambair-light", dict(TINY_V1, scan_directions=2, cab="light-3ad5892")),
    ("mambair-light", dict(TINY_V1, cab="classic")),
    ("mambair", dict(TINY_V1, scan_directions=2, cab="light")),
]


@pytest.mark.parametrize("variant,fields", SWITCHED,
                         ids=lambda v: v if isinstance(v, str) else "-".join(
                             f"{k}={x}" for k, x in v.items() if k not in TINY_V2 and k not in TINY_V1))
def test_models_with_ablation_switches_export_and_verify(tmp_path, variant, fields):
    _needs_onnx()
    from mambairv2 import create_model
    from mambairv2.integrations.onnx_export import export_onnx, verification_inputs, verify_onnx

    torch.manual_seed(0)
    model = create_model(variant, scale=2, **fields).eval()
    switched = {k: v for k, v in fields.items() if k not in TINY_V2 and k not in TINY_V1}
    assert model.config.switches() == switched  # every switch in the list is a non-default value
    path = export_onnx(model, tmp_path / "m.onnx", dynamic=True)
    errors = verify_onnx(path, model, verification_inputs(3, [(9, 11)]))
    assert [shape[2:] for shape, _ in errors] == [(9, 11)]
    assert errors[0][1] <= 1e-4, errors
