"""Parameter and MAC counts: the paper's numbers (Tables 3, 5, A.1), the convention's pieces
checked against hand-written formulas, and the scan's Δ projection counted wherever it runs."""
from pathlib import Path
import json
import math

import pytest
import torch

import mambairv2
from mambairv2.analysis.complexity import count_complexity, scan_macs, variant_complexity
from mambairv2.cli.main import main

# (variant, scale, output H×W, params (spec), paper MACs in G) — Table 3 (1280×720 output),
# Table 5 (256×256 output, x2) and Table A.1 (base x4, 64² … 1024² outputs)
PAPER = [
    ("light", 2, (720, 1280), 774_092, 286.3),
    ("light", 3, (720, 1280), 780_587, 126.7),
    ("light", 4, (720, 1280), 789_680, 75.6),
    ("small", 2, (256, 256), 9_621_935, 192.9),
    ("base", 2, (256, 256), 22_903_001, 445.8),
    ("large", 2, (256, 256), 34_090_523, 664.5),
    ("base", 4, (64, 64), 23_050_713, 7.12),
    ("base", 4, (128, 128), 23_050_713, 28.49),
    ("base", 4, (256, 256), 23_050_713, 113.97),
    ("base", 4, (512, 512), 23_050_713, 455.89),
    ("base", 4, (1024, 1024), 23_050_713, 1823.04),
]


@pytest.mark.parametrize("variant,scale,out,params,gmacs", PAPER)
def test_paper_tables(variant, scale, out, params, gmacs):
    c = variant_complexity(variant, scale, (out[0] // scale, out[1] // scale))
    assert c.params == params
    assert abs(c.macs_paper / 1e9 - gmacs) / gmacs < 0.01, c.macs_paper
    # the paper rounds its parameter counts: 774K … 34.2M
    assert c.macs_all > 0 and c.output_size == (out[0] // scale * scale, out[1] // scale * scale)


def _hand_count(cfg, h, w):
    """The paper's convention written out per token for a MambaIRv2Light layer stack (an
    independent formula: fvcore's rules applied to the authors' code by hand)."""
    c, hid, n, t = cfg.embed_dim, int(cfg.embed_dim * cfg.mlp_ratio), cfg.d_state, cfg.num_tokens
    r, ws = math.ceil(hid / 16), cfg.window_size
    length = (-(-h // ws) * ws) * (-(-w // ws) * ws)
    ffn = c * hid + 25 * (hid // 2) + (hid // 2) * c + 5 * (hid // 2)  # fc1, dwconv, fc2, norm
    layer = (4 * c * c + 2 * ws * ws * c + 2 * ffn  # wqkv + proj, q·k + attn·v, two FFNs
             + c * (c // 3) + (c // 3) * t + t * n  # route MLP, prompt = one_hot @ pool
             + c * hid + 9 * hid + hid * (r + 2 * n) + hid * r + hid * c  # in_proj, CPE, x_proj, Δ, out_proj
             + 9 * hid * n + hid  # the scan (mamba issue 110)
             + 5 * (4 * c + hid))  # norm1..4, out_norm
    depth = sum(cfg.depths)
    pool = t * cfg.inner_rank * n  # embeddingB @ embeddingA, once per layer
    body = depth * (layer * length + pool) + len(cfg.depths) * 9 * c * c * length
    stem = (9 * cfg.in_chans * c + 9 * c * c + 2 * 5 * c) * length  # conv_first, conv_after_body, 2 norms
    head = 9 * c * cfg.in_chans * cfg.upscale ** 2 * length
    return body + stem + head


def test_light_convention_matches_a_hand_count():
    model = mambairv2.create_model("light", scale=3)
    for h, w in ((16, 16), (20, 37)):
        assert count_complexity(model, (h, w)).macs_paper == _hand_count(model.config, h, w)


def test_counting_leaves_the_model_alone_and_scales_with_batch():
    model = mambairv2.create_model("light", scale=2, depths=(1,), num_heads=(4,)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    one = count_complexity(model, (16, 32))
    two = count_complexity(model, (16, 32), batch=2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert next(model.parameters()).device.type == "cpu"
    assert two.macs_all == pytest.approx(2 * one.macs_all, rel=1e-3)
    by = one.by_module
    assert sum(v.params for v in by.values()) == one.params == sum(p.numel() for p in model.parameters())
    assert one.macs_paper == pytest.approx(sum(v.macs_paper for v in by.values()))
    assert by["elementwise"].macs_paper == 0 and by["elementwise"].macs_all > 0
    # window attention: q·k and attn·v over 256 keys per token in the paper's count
    assert by["attention"].macs_paper == 2 * 16 * 32 * 256 * 48


def test_scan_is_counted_with_its_delta_projection():
    from mambairv2.analysis.complexity import _Counter, _counting_scans
    from mambairv2.models.mambairv2 import assm

    b, d, length, n, r = 2, 32, 40, 8, 2
    counter = _Counter(torch.device("cpu"))
    u = torch.rand(b, d, length)
    args = (torch.rand(b, r, length), -torch.rand(d, n), torch.rand(b, n, length), torch.rand(b, n, length))
    with _counting_scans(counter), counter:
        y = assm.selective_scan(u, *args, torch.ones(d), delta_bias=torch.zeros(d),
                                delta_softplus=True, delta_proj=torch.rand(d, r))
    assert y.shape == u.shape
    paper, every = scan_macs(b, d, length, n, r)
    assert paper == 9 * b * d * length * n + b * d * length + b * length * d * r
    # the projection's matmul inside the scan is not counted twice
    assert counter.totals["scan"] == [paper, every]
    assert sum(v[0] for v in counter.totals.values()) == paper


def test_complexity_command_json(tmp_path, capsys):
    out = tmp_path / "c.json"
    assert main(["analyze", "complexity", "--variant", "light", "--scale", "2",
                 "--output-size", "64x32", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["params"] == 774_092 and isinstance(data["params"], int)
    assert data["macs_paper"] > 1e8 and data["macs_all"] > 1e8
    assert set(data["by_module"]) >= {"conv", "linear", "attention", "scan", "routing", "norm"}
    assert main(["analyze", "complexity", "--variant", "light", "--scale", "3",
                 "--output-size", "64x64"]) != 0  # not a multiple of the scale
    assert "Traceback" not in capsys.readouterr().err


def test_any_module_is_counted_by_the_same_operator_rules():
    """``count_module_macs`` (used for SwinIR in the peer benchmark): a conv, a linear layer,
    a LayerNorm and a batched matmul, each as written out by hand."""
    from mambairv2.analysis.complexity import count_module_macs

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.norm = torch.nn.LayerNorm(8)
            self.fc = torch.nn.Linear(8, 6)

        def forward(self, x):
            t = self.norm(self.conv(x).flatten(2).transpose(1, 2))  # 1×(h·w)×8
            y = self.fc(t)  # 1×(h·w)×6
            return y.transpose(1, 2) @ y  # 1×6×6

    h, w = 5, 7
    counts = count_module_macs(Net(), (1, 3, h, w))
    conv, norm, fc, mm = h * w * 8 * 3 * 9, 5 * h * w * 8, h * w * 8 * 6, 6 * h * w * 6
    assert counts.macs_paper == conv + norm + fc + mm
    assert counts.macs_all > counts.macs_paper  # biases


def test_a_40000_square_input_is_counted_without_allocating(tmp_path):
    """The window plans are built on the meta device too: nothing proportional to the image."""
    import json
    import os
    import subprocess
    import sys

    code = ("import resource, json, sys\n"
            "from mambairv2.cli.main import main\n"
            "rc = main(['analyze', 'complexity', '--input-size', '40000x40000', '--json', sys.argv[1]])\n"
            "print(json.dumps([rc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss]))\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "c.json")], capture_output=True, text=True,
                         env=env, timeout=600)
    rc, max_kib = json.loads(out.stdout.strip().splitlines()[-1])
    assert rc == 0 and max_kib < 2**20, (rc, max_kib)  # under 1 GiB
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["input_size"] == [40000, 40000]
