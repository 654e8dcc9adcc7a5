"""MAC counting and the ``bench`` command (timings themselves are not asserted)."""
import json

import torch

import mambairv2
from mambairv2.analysis.measure import count_macs
from mambairv2.cli.main import main


def test_bench_macs_come_from_the_paper_convention_counter():
    # Table 3: light x4 is 75.6 G MACs for a 320×180 input (padded to 320×192); MACs grow with
    # the padded pixel count, so a 64² input must have 75.6 G · 64² / (320·192)
    model = mambairv2.create_model("light", scale=4).eval()
    macs = count_macs(model, torch.rand(1, 3, 64, 64))
    expected = 75.6e9 * 64 * 64 / (320 * 192)
    assert abs(macs["total"] - expected) / expected < 0.01, macs
    assert 0 < macs["scan"] < macs["total"] and macs["all"] > 0


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
    assert "Traceback" not in err and "unknown model 'huge'" in err and "a variant (light" in err
