"""Training configs: defaults, overrides, validation with one-line errors, shipped configs."""
from __future__ import annotations

from pathlib import Path

import pytest

from _train_tiny import tiny_config
from mambairv2.cli.main import main
from mambairv2.train.config import (
    ConfigError,
    build_config,
    load_config,
    model_config,
    packaged_configs,
    parse_override,
    resolve_config,
)


def test_overrides_are_parsed_as_yaml_and_dotted():
    cfg = build_config({"train": {"lr": 1e-3}}, ["train.lr=5e-4", "data.batch_size=8", "train.betas=[0.8, 0.9]",
                                                 "model.overrides.embed_dim=24", "data.train_root=/x"])
    assert cfg["train"]["lr"] == 5e-4 and cfg["data"]["batch_size"] == 8
    assert cfg["train"]["betas"] == [0.8, 0.9]
    assert model_config(cfg).embed_dim == 24
    assert cfg["output_dir"] == str(Path("runs") / "mambairv2")
    assert parse_override("val.root=") == ("val.root", None)


def test_on_and_off_are_the_documented_words_not_yaml_booleans(tmp_path):
    for text, word in (("off", "off"), ("on", "on"), ("no", "off"), ("'off'", "off"), ("auto", "auto")):
        assert build_config({}, [f"train.progress={text}"])["train"]["progress"] == word
        path = tmp_path / "progress.yaml"
        path.write_text(f"train:\n  progress: {text}\n", encoding="utf-8")
        assert load_config(path)["train"]["progress"] == word
    with pytest.raises(ConfigError, match="train.progress: must be one of"):
        build_config({}, ["train.progress=maybe"])


@pytest.mark.parametrize("data, overrides, message", [
    ({"train": {"lrr": 1}}, [], "unknown config key 'train.lrr' (did you mean 'train.lr'?)"),
    ({}, ["train.lr=abc"], "train.lr: expected a number"),
    ({}, ["train.iters=0"], "train.iters: must be > 0"),
    ({}, ["train.loss=l2"], "train.loss: must be one of"),
    ({}, ["model.overrides.depths=[1]"], "model:"),
    ({}, ["model.scale=5"], "model:"),
    ({}, ["nokey"], "expected KEY=VALUE"),
    ({"data": 3}, [], "data: expected a section"),
    ({}, ["train.ema_decay=1.5"], "train.ema_decay: must be < 1"),
])
def test_bad_values_raise_config_error(data, overrides, message):
    with pytest.raises(ConfigError) as info:
        build_config(data, overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def _cli_error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_cli_reports_one_line_errors(tmp_path, capsys):
    cfg = tiny_config(tmp_path)
    assert "no such config file" in _cli_error(capsys, ["train", str(tmp_path / "missing.yaml")])
    assert "unknown config key" in _cli_error(capsys, ["train", str(cfg), "--set", "train.nope=1"])
    assert "expected an integer" in _cli_error(capsys, ["train", str(cfg), "--set", "data.batch_size=two"])
    assert "no such dataset folder" in _cli_error(
        capsys, ["train", str(cfg), "--set", f"data.train_root={tmp_path / 'absent'}"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    assert "not valid YAML" in _cli_error(capsys, ["train", str(bad)])
    assert "--resume" in _cli_error(capsys, ["train", str(cfg), "--resume", str(tmp_path / "nowhere")])


def test_every_shipped_config_loads():
    configs = sorted(packaged_configs().values())
    names = set(packaged_configs())
    for variant in ("light", "small", "base", "large"):
        for scale in (2, 3, 4):
            assert f"{variant}_x{scale}" in names
    for sigma in (15, 25, 50):
        assert f"denoise_sigma{sigma}" in names
    for q in (10, 30, 40):
        assert f"jpeg_q{q}" in names
    assert {"quickstart_light_x2_cpu", "default_light_x4_gpu"} <= names
    for p in configs:
        cfg = load_config(p)
        assert cfg["name"] == p.stem, f"{p.name}: name"  # runs/<name> is the config's name
        assert model_config(cfg).upscale >= 1
        if cfg["train"]["ema_decay"]:
            assert cfg["train"]["ema_warmup"], f"{p.name}: an EMA without warm-up validates near the initialisation"
    # the paper configs against the authors' option files: tests/test_train_recipes.py


def test_packaged_config_by_name(capsys):
    assert resolve_config("light_x2") == packaged_configs()["light_x2"]
    assert resolve_config("light_x2.yaml") == packaged_configs()["light_x2"]
    assert load_config("light_x2")["model"] == load_config(packaged_configs()["light_x2"])["model"]
    with pytest.raises(ConfigError, match="mambairv2 configs"):
        resolve_config("no_such_config")
    assert main(["configs"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in packaged_configs())
