"""The training config is one table of fields: ``--help`` lists every key, ``--print-config``
is valid YAML that loads back to the same config, and ``--dry-run`` names what was changed."""
from __future__ import annotations

import pytest
import yaml

from mambairv2.cli.main import main
from mambairv2.train.config import DEFAULTS, FIELDS, ConfigError, build_config, load_config


def test_every_field_has_a_doc_and_a_valid_default():
    for key, field in FIELDS.items():
        assert field.doc and "\n" not in field.doc, key
    cfg = build_config({"data": {"train_root": "/x"}})  # the defaults pass their own checks
    assert cfg["train"]["lr"] == DEFAULTS["train"]["lr"] == FIELDS["train.lr"].default


def test_help_lists_every_key(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    missing = [key for key in FIELDS if f"  {key} = " not in out]
    assert not missing, missing


def test_print_config_is_commented_yaml_that_loads_back(capsys):
    assert main(["train", "base_x4", "--print-config", "--set", "model.overrides.embed_dim=24"]) == 0
    out = capsys.readouterr().out
    assert f"# {FIELDS['train.iters'].doc}" in out
    again = build_config(yaml.safe_load(out))
    assert dict(again) == dict(load_config("base_x4", ["model.overrides.embed_dim=24"]))


@pytest.mark.parametrize("override, message", [
    ("data.jpeg_quality=0", "data.jpeg_quality: must be in 1..100, got 0"),
    ("train.betas=[0.9]", "train.betas: expected two numbers in [0, 1)"),
    ("train.milestones=[0]", "train.milestones: expected positive integers"),
    ("val.every=-1", "val.every: must be ≥ 0, got -1"),
    ("data.train_root=[1]", "data.train_root: expected a list of paths"),
])
def test_bounds_and_item_checks_come_from_the_table(override, message):
    with pytest.raises(ConfigError, match=None) as info:
        build_config({}, [override])
    assert message in str(info.value) and "\n" not in str(info.value)


def test_dry_run_names_the_changed_keys(capsys):
    assert main(["train", "base_x4", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"train.iters = 250000  ({FIELDS['train.iters'].doc})" in out
