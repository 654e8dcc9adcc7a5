"""The benchmark scripts never write over a result: an existing ``--json`` (the committed results
are their default paths) is refused before anything is measured, unless ``--overwrite``; a report
is written whole or not at all."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO

SCRIPTS = ["peer_cpu.py", "profile_cpu.py", "scaling_cpu.py", "kernel_ab.py", "bfloat16_cpu.py"]


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, str(REPO / "benchmarks" / script)]
    argv += ["scan", *args] if script == "kernel_ab.py" else list(args)
    return subprocess.run(argv, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("script", SCRIPTS)
def test_an_existing_result_is_refused_before_measuring(tmp_path, script):
    target = tmp_path / "result.json"
    target.write_text("{\"kept\": true}\n")
    r = run(script, "--json", str(target))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].endswith(
        f"error: --json {target} exists; pass --overwrite to replace it, or name another file")
    assert target.read_text() == "{\"kept\": true}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_folder_is_refused(tmp_path, script):
    r = run(script, "--json", str(tmp_path), "--overwrite")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].endswith(f"error: --json {tmp_path} is a folder")


def test_a_report_replaces_the_file_whole(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import peer_cpu
    finally:
        sys.path.pop(0)
    target = tmp_path / "out" / "r.json"
    peer_cpu.write_report(target, {"a": 1})
    peer_cpu.write_report(target, {"a": 2})
    assert target.read_text() == '{\n  "a": 2\n}\n'
    assert [p.name for p in target.parent.iterdir()] == ["r.json"]


def test_peer_fast_runs_every_linear_through_onednn_with_the_same_result():
    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import peer_cpu
    finally:
        sys.path.pop(0)
    torch.manual_seed(0)
    stock = torch.nn.Sequential(torch.nn.Linear(12, 24), torch.nn.GELU(),
                                torch.nn.Sequential(torch.nn.Linear(24, 12))).eval()
    x = torch.randn(3, 50, 12)
    with torch.inference_mode():
        want = stock(x)
        fast = peer_cpu.with_onednn_linears(stock)
        wrapped = [m for m in fast.modules() if isinstance(m, peer_cpu.OneDNNLinear)]
        assert len(wrapped) == 2
        torch.testing.assert_close(fast(x), want, rtol=0, atol=1e-5)
