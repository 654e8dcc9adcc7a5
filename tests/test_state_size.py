"""The state size a configuration describes, counted without building (``Family.state_size``),
equals the built network's; a checkpoint whose stored configuration (or a key's block index)
claims more than its tensors is refused unbuilt, in one line, quickly and in bounded memory.

The hostile files run in a child process under an address-space limit and a timeout: without
the check, each of them grows memory without end."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mambairv2.errors import MambaIRv2Error
from mambairv2.models.checkpoint import CONFIG_METADATA_KEY, load_file, save_safetensors
from mambairv2.models.registry import FAMILIES, family_of
from test_detect_property import v1_configs, v2_configs

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
#: the child's address-space limit: far above a refused load, far below what a lie asks for
CHILD_LIMIT = 3 * 2**30


def _sizes_of(model: torch.nn.Module):
    sd = model.state_dict()
    return len(sd), sum(v.numel() for v in sd.values())


SWITCHES = [dict(), dict(ase=False), dict(ase=False, sgn=False), dict(prompt_basis="shared"),
            dict(prompt_position="delta"), dict(prompt_position="y", prompt_basis="shared")]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_state_size_equals_every_variant_built(family):
    for name in family.variants:
        for scale in ((2, 3, 4) if name in family.sr_variants else (1,)):
            groups = len(family.variants[name]["depths"])
            config = family.variant_config(name, scale, depths=(1,) * groups)
            assert tuple(family.state_size(config)) == _sizes_of(family.build(config)), (name, scale)


def test_state_size_equals_every_switch_and_layout_built():
    v2 = FAMILIES[0].variant_config("light", 4, depths=(1, 2), num_heads=(4, 4))
    for switches in SWITCHES:
        for extra in (dict(), dict(ffn="conv", convffn_kernel_size=3, resi_connection="3conv")):
            config = v2.replace(**switches, **extra)
            assert tuple(family_of(config).state_size(config)) == _sizes_of(family_of(config).build(config))
    v1 = FAMILIES[1].variant_config("mambair-light", 2, depths=(1, 2))
    for cab in ("classic", "light", "light-06dc6cd", "light-3ad5892"):
        for directions in (1, 2, 4):
            config = v1.replace(cab=cab, scan_directions=directions, upsampler="pixelshuffle", upscale=8)
            assert tuple(family_of(config).state_size(config)) == _sizes_of(family_of(config).build(config))


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(config=st.one_of(v2_configs(), v1_configs()))
def test_state_size_equals_random_configurations_built(config):
    assert tuple(family_of(config).state_size(config)) == _sizes_of(family_of(config).build(config))


# -- hostile files, in a child process ----------------------------------------------------------
def _with_config(path: Path, stored: Any, out: Path) -> Path:
    """A copy of the ``.safetensors`` at ``path`` whose header stores ``stored``."""
    from safetensors.torch import load_file as read, save_file

    save_file(read(str(path)), str(out), metadata={CONFIG_METADATA_KEY: json.dumps(stored), "format": "pt"})
    return out


def lie_cases(tmp: Path) -> Dict[str, Path]:
    """name → a light x4 file (the bundled one) whose configuration says more than its tensors."""
    from safetensors import safe_open
    from safetensors.torch import load_file as read, save_file

    bundled = SRC / "mambairv2" / "weights" / "light_x4.safetensors"
    with safe_open(str(bundled), "pt") as f:
        true = json.loads(f.metadata()[CONFIG_METADATA_KEY])
    lies = {"depths": dict(depths=[100000], num_heads=[4]), "embed_dim": dict(embed_dim=1_000_000),
            "upscale": dict(upscale=100000), "window_size": dict(window_size=100000),
            "num_tokens": dict(num_tokens=10**9), "hidden": dict(hidden_dim=10_000_000),
            "groups": dict(depths=[5] * 100000, num_heads=[4] * 100000)}
    cases = {name: _with_config(bundled, {**true, **lie}, tmp / f"{name}.safetensors") for name, lie in lies.items()}
    sd = read(str(bundled))  # no stored configuration: depths detected from a block index
    key = "layers.0.residual_group.layers.4.norm1.weight"
    sd["layers.0.residual_group.layers.99999.norm1.weight"] = sd.pop(key)
    save_file(sd, str(tmp / "index.safetensors"))
    cases["block index"] = tmp / "index.safetensors"
    obj = {"params": read(str(bundled)), CONFIG_METADATA_KEY: {**true, "depths": [100000], "num_heads": [4]}}
    torch.save(obj, str(tmp / "depths.pth"))
    cases["depths (.pth)"] = tmp / "depths.pth"
    return cases


def rss_mb() -> float:
    """This process's resident memory now (MB)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def peak_mb() -> float:
    """This process's peak resident memory (MB): VmHWM, not ru_maxrss, which keeps the peak of
    the process before its exec (a fork of a large test runner)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def child_refuses_lies(tmp: str) -> Dict[str, Any]:
    """(In the child.) Loads every lie case; name → seconds, growth of peak memory, message."""
    load_file(SRC / "mambairv2" / "weights" / "light_x4.safetensors")  # imports and first use done
    start = rss_mb()
    out = {}
    for name, path in lie_cases(Path(tmp)).items():
        t = time.perf_counter()
        try:
            load_file(path)
            message = None
        except MambaIRv2Error as exc:
            message = str(exc)
        out[name] = dict(seconds=time.perf_counter() - t, grown_mb=peak_mb() - start, message=message)
    return out


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_LIMIT, CHILD_LIMIT))


def run_in_child(function: str, tmp: Path, timeout: float = 240) -> Any:
    """``function(str(tmp))`` of this module in a child under :data:`CHILD_LIMIT`; its JSON."""
    code = (f"import json, sys; sys.path[:0] = [{str(TESTS)!r}, {str(SRC)!r}]; import test_state_size as t; "
            f"print(json.dumps(t.{function}({str(tmp)!r})))")
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                            preexec_fn=_limit, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_configurations_that_claim_more_than_the_file_are_refused_at_once(tmp_path):
    results = run_in_child("child_refuses_lies", tmp_path)
    for name, r in results.items():
        assert r["message"] is not None, f"{name}: loaded"
        assert "\n" not in r["message"]
        assert "not this file's network" in r["message"] or "invalid stored configuration" in r["message"], \
            (name, r["message"])
        assert r["seconds"] < 2 and r["grown_mb"] < 300, (name, r)


# -- the property: random configurations × random lies ---------------------------------------
V2_LIES = ("embed_dim", "d_state", "window_size", "inner_rank", "num_tokens", "upscale", "hidden_dim", "depths")
V1_LIES = ("embed_dim", "d_state", "upscale", "hidden_dim", "depths")


@st.composite
def lies(draw, config) -> Dict[str, Any]:
    """A stored configuration of ``config`` with one shape field changed (often hugely)."""
    stored = config.to_dict()
    field = draw(st.sampled_from(V2_LIES if family_of(config).name == "mambairv2" else V1_LIES))
    value = draw(st.one_of(st.integers(2, 64), st.integers(10**4, 10**12)))
    if field == "depths":
        stored["depths"] = [value] * len(config.depths)
    else:
        stored[field] = value
    return stored


def _size_or_none(stored):
    from mambairv2.models.registry import config_from_stored

    try:
        c = config_from_stored(stored)
    except MambaIRv2Error:
        return None
    return tuple(family_of(c).state_size(c))


def child_random_lies(tmp: str) -> Dict[str, Any]:
    """(In the child.) The property's examples: each load's time and message, and the peak
    memory above the start."""
    load_file(SRC / "mambairv2" / "weights" / "light_x4.safetensors")
    start = rss_mb()
    cases = []

    @settings(max_examples=25, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(data=st.data(), config=st.one_of(v2_configs(), v1_configs()))
    def random_lies_refused(data, config):
        stored = data.draw(lies(config))
        assume(_size_or_none(stored) != tuple(family_of(config).state_size(config)))  # tensors can tell
        honest = save_safetensors(family_of(config).build(config), Path(tmp) / "honest.safetensors")
        path = _with_config(honest, stored, Path(tmp) / "lie.safetensors")
        t = time.perf_counter()
        try:
            load_file(path)
            message = None
        except MambaIRv2Error as exc:
            message = str(exc)
        cases.append(dict(seconds=time.perf_counter() - t, message=message, stored=stored))

    random_lies_refused()
    return {"cases": cases, "grown_mb": peak_mb() - start}


def test_random_lies_in_the_header_are_refused_quickly_in_bounded_memory(tmp_path):
    report = run_in_child("child_random_lies", tmp_path)
    assert len(report["cases"]) >= 10
    for case in report["cases"]:
        assert case["message"] is not None, f"loaded: {case['stored']}"
        assert "\n" not in case["message"]
        assert case["seconds"] < 2, case
    assert report["grown_mb"] < 300, report["grown_mb"]
