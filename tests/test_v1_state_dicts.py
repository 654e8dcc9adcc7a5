"""MambaIR (v1): every released configuration (``official_state_dicts_v1.json``): create_model
builds exactly its keys, shapes and parameter count; a state dict with exactly those keys and
shapes loads strictly through ``load_model`` and is detected back as the same configuration;
the light checkpoints of the older layouts (commits 06dc6cd, 3ad5892) build and load through the
``cab`` switch; the out-of-scope file (MambaIRUNet) gets a one-line message."""
import json
from collections import defaultdict

import pytest
import torch

from mambairv2 import CheckpointError, create_model, load_model
from mambairv2.models.mambair import MambaIRConfig, v1_variant_name

from conftest import shared_path

IN_SCOPE = ["cfg00", "cfg01", "cfg02", "cfg03", "cfg04", "cfg05", "cfg06", "cfg07"]
#: the older light layouts → their ``cab`` switch
LEGACY = {"cfg09": "light-06dc6cd", "cfg10": "light-06dc6cd", "cfg11": "light-06dc6cd",
          "cfg12": "light-3ad5892", "cfg13": "light-3ad5892", "cfg14": "light-3ad5892"}
#: out-of-scope configuration → words its one-line message must contain
OUT_OF_SCOPE = {"cfg08": "MambaIRUNet"}


@pytest.fixture(scope="module")
def official():
    return json.loads(shared_path("golden_v1", "official_state_dicts_v1.json").read_text())


def _entries(official, cfg):
    return [e for e in official["entries"].values() if e["config"] == cfg]


def _save_shapes(path, shapes):
    """A BasicSR-style checkpoint with exactly these keys and shapes; each tensor is a broadcast
    view of one stored number, so even the 26.8M-parameter U-Net costs a few bytes."""
    sd = {k: torch.full((), 0.01 * (i % 7)).expand(*v) for i, (k, v) in enumerate(shapes.items())}
    torch.save({"params": sd}, path)
    return path


def test_every_entry_is_classified(official):
    by_cfg = defaultdict(list)
    for label, e in official["entries"].items():
        by_cfg[e["config"]].append(label)
    assert set(by_cfg) == set(IN_SCOPE) | set(LEGACY) | set(OUT_OF_SCOPE)
    assert len(official["entries"]) == 32  # 24 option files, realSR, realDN, 6 legacy


@pytest.mark.parametrize("cfg", IN_SCOPE)
def test_create_model_matches_released_keys_and_shapes(cfg, official):
    spec = official["configs"][cfg]
    entries = _entries(official, cfg)
    configs = {MambaIRConfig.from_network_g(e["network_g"]) for e in entries}
    assert len(configs) == 1  # the option files of one configuration agree
    config = configs.pop()
    name = v1_variant_name(config)
    assert name != "custom"
    with torch.device("meta"):  # keys and shapes only
        model = create_model(name, scale=max(config.upscale, 2))
    assert model.config == config
    sd = model.state_dict()
    assert list(sd) == list(spec["state_dict"])  # same keys, in the released order
    assert {k: list(v.shape) for k, v in sd.items()} == spec["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == spec["num_params"]
    assert {e["num_params"] for e in entries} == {spec["num_params"]}


@pytest.mark.parametrize("cfg", IN_SCOPE)
def test_released_shapes_load_and_are_detected_back(cfg, official, tmp_path):
    spec = official["configs"][cfg]
    path = _save_shapes(tmp_path / f"{cfg}.pth", spec["state_dict"])
    model = load_model(path)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == spec["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == spec["num_params"]
    assert model.state_dict()["conv_first.weight"].flatten()[0].item() == pytest.approx(0.0)
    for entry in _entries(official, cfg):
        assert model.config == MambaIRConfig.from_network_g(entry["network_g"]), entry["option_file"]


@pytest.mark.parametrize("cfg", sorted(LEGACY))
def test_legacy_light_layouts_build_and_load(cfg, official, tmp_path):
    spec = official["configs"][cfg]
    (entry,) = _entries(official, cfg)
    config = MambaIRConfig.from_network_g(entry["network_g"]).replace(cab=LEGACY[cfg])
    assert config.switches() == {"cab": LEGACY[cfg]}
    with torch.device("meta"):
        model = create_model("mambair-light", scale=config.upscale, d_state=config.d_state,
                             mlp_ratio=config.mlp_ratio, cab=LEGACY[cfg])
    assert model.config == config
    sd = model.state_dict()
    assert list(sd) == list(spec["state_dict"])
    assert {k: list(v.shape) for k, v in sd.items()} == spec["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == spec["num_params"]
    loaded = load_model(_save_shapes(tmp_path / f"{cfg}.pth", spec["state_dict"]))
    assert loaded.config == config
    x = torch.rand(1, 3, 9, 11)
    assert loaded(x).shape == (1, 3, 9 * config.upscale, 11 * config.upscale)


@pytest.mark.parametrize("cfg", sorted(OUT_OF_SCOPE))
def test_out_of_scope_files_are_named_in_one_line(cfg, official, tmp_path):
    spec = official["configs"][cfg]
    path = _save_shapes(tmp_path / f"{cfg}.pth", spec["state_dict"])
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert OUT_OF_SCOPE[cfg] in message and "not supported" in message
    assert f"{spec['num_params']:,} parameters" in message


def test_realsr_entry_is_the_classic_x4_configuration(official):
    entry = official["entries"]["realSR (inferred)"]
    config = MambaIRConfig.from_network_g(entry["network_g"])
    assert v1_variant_name(config) == "mambair" and config.upscale == 4
