"""All 14 released variants: keys, shapes and parameter counts equal the official state dicts,
and a checkpoint saved from each is detected back as the same configuration."""
import json

import pytest
import torch

from mambairv2 import create_model
from mambairv2.models.mambairv2 import detect_config
from mambairv2.models.mambairv2 import variant_name

from conftest import shared_path

ENTRIES = {f"{v}_x{s}": (v, s) for v in ("light", "small", "base", "large") for s in (2, 3, 4)}
ENTRIES.update({"denoise_color": ("denoise", 1), "jpeg_gray": ("jpeg", 1)})


@pytest.fixture(scope="module")
def official():
    return json.loads(shared_path("spec", "official_state_dicts.json").read_text())


def test_fourteen_entries(official):
    assert sorted(official) == sorted(ENTRIES)


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_variant_matches_release(entry, official):
    name, scale = ENTRIES[entry]
    spec = official[entry]
    with torch.device("meta"):  # shapes only: building on "meta" allocates nothing
        model = create_model(name, scale=scale)
    sd = model.state_dict()
    assert list(sd) == list(spec["state_dict"])  # same keys, same order
    assert {k: list(v.shape) for k, v in sd.items()} == spec["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == spec["num_params"]
    for key, value in spec["network_g"].items():
        got = getattr(model.config, key)
        assert (list(got) if isinstance(got, tuple) else got) == value, key
    assert model.config.arch == spec["arch"]
    detected = detect_config(sd)
    assert detected == model.config
    assert variant_name(detected) == name
