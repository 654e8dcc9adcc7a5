"""MAC counting and the ``bench`` command (timings themselves are not asserted)."""
import json

import torch

import mambairv2
from mambairv2.bench import count_macs, scan_macs
from mambairv2.cli.main import main


def test_macs_of_light_x4_match_the_paper_scaled_to_the_input():
    # the paper gives 21.5 G MACs for a 128² input; MACs grow with the pixel count, so a 64²
    # input must have about a quarter
    model = mambairv2.create_model("light", scale=4).eval()
    macs = count_macs(model, torch.rand(1, 3, 64, 64))
    assert abs(macs["total"] / 1e9 - 21.5 / 4) / (21.5 / 4) < 0.15, macs
    # window attention: q·k and attn·v for every token of every layer, 256 keys each
    layers = sum(model.config.depths)
    assert macs["attention"] == layers * 2 * 64 * 64 * 256 * 48
    hidden = int(48 * model.config.mlp_ratio)
    assert macs["scan"] == layers * scan_macs(1, hidden, 64 * 64, model.config.d_state)
    assert macs["dense"] > 0 and macs["total"] == macs["dense"] + macs["attention"] + macs["scan"]


def test_bench_command_writes_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["bench", "--variant", "light", "--scale", "2", "--sizes", "16,32", "--warmup", "0",
                 "--repeats", "1", "--threads", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["variant"] == "light" and data["sgemm_gflops"] > 0
    assert [r["size"] for r in data["results"]] == [16, 32]
    for r in data["results"]:
        assert r["latency_s"] > 0 and r["macs_g"] > 0 and 0 < r["roofline_fraction"]


def test_bench_rejects_bad_arguments(capsys):
    assert main(["bench", "--variant", "huge"]) != 0
    assert main(["bench", "--sizes", "a,b"]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "unknown variant" in err
