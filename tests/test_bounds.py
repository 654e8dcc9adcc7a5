"""Counts and sizes that an option can make huge are bounded before anything is allocated or
forked, each refused in one line naming the option (docs/security.md, "Bounds").

The cases that would allocate without their bound run the command in a child process under an
address-space limit and a timeout."""
from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from _train_tiny import make_images, tiny_config
from mambairv2.defaults import MAX_FILTER_SIZE, MAX_WORKERS_PER_CPU
from mambairv2.errors import ConfigError
from mambairv2.train.config import load_config, max_workers

from conftest import REPO

LIMIT = 3 * 2**30


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def one_line_in_child(*argv: str, timeout: float = 120) -> str:
    """``mambairv2 ARGV`` in a child under :data:`LIMIT`; its stderr must be one ``error:`` line."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    r = subprocess.run([sys.executable, "-m", "mambairv2", *argv], capture_output=True, text=True,
                       timeout=timeout, preexec_fn=_limit, env=env)
    lines = [line for line in r.stderr.splitlines() if line.strip() and not line.startswith("note: TensorBoard")]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-2000:]
    assert "internal error" not in r.stderr
    return lines[0]


@pytest.mark.parametrize("override", ["model.overrides.embed_dim=1000000",
                                      "model.overrides={depths: [100000], num_heads: [4]}"])
def test_a_network_too_big_to_train_is_refused_before_it_is_built(tmp_path, override):
    err = one_line_in_child("train", str(tiny_config(tmp_path)), "--set", override)
    assert "model.overrides" in err and "GiB" in err, err
    assert not (tmp_path / "run" / "models").exists()


def test_data_loader_workers_are_bounded_by_the_cpus(tmp_path):
    cfg = tiny_config(tmp_path)
    most = max(16, MAX_WORKERS_PER_CPU * (os.cpu_count() or 1))
    assert max_workers() == most
    with pytest.raises(ConfigError, match=f"data.num_workers: at most {most} "):
        load_config(cfg, [f"data.num_workers={most + 1}"])
    with pytest.raises(ConfigError, match="data.num_workers"):
        load_config(cfg, ["data.num_workers=10000"])
    assert load_config(cfg, [f"data.num_workers={most}"])["data"]["num_workers"] == most


def test_realsr_filter_sizes_are_bounded(tmp_path):
    cfg = tiny_config(tmp_path)
    for override in ("realsr.usm_radius=1000000", "realsr.kernel_range=[7, 100001]"):
        with pytest.raises(ConfigError, match=override.split("=")[0].replace(".", r"\.")):
            load_config(cfg, [override])
    assert load_config(cfg, [f"realsr.usm_radius={MAX_FILTER_SIZE}"])["realsr"]["usm_radius"] == MAX_FILTER_SIZE


def test_degrade_refuses_a_huge_usm_radius_in_one_line(tmp_path):
    hr = make_images(tmp_path / "hr", count=1, size=32)
    err = one_line_in_child("degrade", "--task", "realsr", "--scale", "4", "--hr-dir", str(hr), "--out",
                            str(tmp_path / "out"), "--set", "realsr.usm_radius=1000000")
    assert "realsr.usm_radius" in err, err
    assert not list((tmp_path / "out").glob("*.png")) if (tmp_path / "out").exists() else True


def test_ablate_refuses_a_huge_seed_count_in_one_line(tmp_path):
    err = one_line_in_child("ablate", "table1", "--config", str(tiny_config(tmp_path)), "--steps", "1",
                            "--seeds", "1000000000", "--output-dir", str(tmp_path / "rows"))
    assert "--seeds" in err and "at most" in err, err


def test_export_refuses_a_size_too_big_to_trace_in_one_line(tmp_path):
    err = one_line_in_child("export", "--model", "light", "--size", "20000x20000", "-o", str(tmp_path / "m.onnx"))
    assert "--size" in err and "pixels" in err, err
    assert not (tmp_path / "m.onnx").exists()
