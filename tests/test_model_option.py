"""One ``--model`` option in every command that takes a model: a golden MambaIR (v1) file, a
golden MambaIRv2 file, the bundled ``default`` and a variant name (where random weights make
sense), each resolved by the one catalogue; the app labels a v1 checkpoint as MambaIR."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mambairv2.cli.main import main
from mambairv2.models import list_models, resolve
from mambairv2.models.checkpoint import CheckpointError

from conftest import shared_path

KINDS = ("v1", "v2", "default", "variant")


def _model(kind: str) -> str:
    if kind == "v1":
        return str(shared_path("golden_v1", "light_x2.pth"))
    if kind == "v2":
        return str(shared_path("golden", "light_x2.pth"))
    return {"default": "default", "variant": "mambair-light"}[kind]


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("hr")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), np.uint8)).save(d / "a.png")
    return d


def _run(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err, err
    return rc, out, err


@pytest.mark.parametrize("kind", KINDS)
def test_info(kind, capsys):
    rc, out, _ = _run(["info", "--model", _model(kind), "--json"], capsys)
    assert rc == 0
    d = json.loads(out)
    family = {"v1": "MambaIR", "v2": "MambaIRv2", "default": "MambaIRv2", "variant": "MambaIR"}[kind]
    assert d["family"] == family
    if kind == "variant":
        assert d["variant"] == "mambair-light"


@pytest.mark.parametrize("kind", KINDS)
def test_bench(kind, tmp_path, capsys):
    out = tmp_path / "b.json"
    rc, _, _ = _run(["bench", "--model", _model(kind), "--size", "8", "--repeats", "1", "--warmup", "0",
                     "--scale", "2", "--json", str(out)], capsys)
    assert rc == 0 and json.loads(out.read_text())["results"][0]["size"] == 8


@pytest.mark.parametrize("kind", KINDS)
def test_analyze_complexity(kind, capsys):
    rc, out, _ = _run(["analyze", "complexity", "--model", _model(kind), "--input-size", "32x32"], capsys)
    assert rc == 0 and "params" in out


@pytest.mark.parametrize("kind", ["v1", "v2", "default"])
def test_restore(kind, image_dir, tmp_path, capsys):
    rc, _, _ = _run(["restore", str(image_dir / "a.png"), "-o", str(tmp_path), "--model", _model(kind)], capsys)
    assert rc == 0 and (tmp_path / "a.png").is_file()


@pytest.mark.parametrize("kind", ["v1", "v2", "default"])
def test_evaluate(kind, image_dir, tmp_path, capsys):
    scale = "4" if kind == "default" else "2"
    out = tmp_path / "e.json"
    rc, _, _ = _run(["evaluate", "--model", _model(kind), "--task", "sr", "--scale", scale,
                     "--hr-dir", str(image_dir), "--json", str(out), "-q"], capsys)
    assert rc == 0 and json.loads(out.read_text())["datasets"]


@pytest.mark.parametrize("kind", ["v1", "v2", "default"])
def test_convert(kind, tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    rc, _, _ = _run(["convert", "--model", _model(kind), str(out)], capsys)
    assert rc == 0
    family = {"v1": "MambaIR", "v2": "MambaIRv2", "default": "MambaIRv2"}[kind]
    rc, text, _ = _run(["info", str(out), "--json"], capsys)
    assert json.loads(text)["family"] == family


@pytest.mark.parametrize("kind", ["v1", "v2", "default"])
def test_analyze_erf(kind, image_dir, tmp_path, capsys):
    out = tmp_path / "erf.png"
    rc, _, _ = _run(["analyze", "erf", "--model", _model(kind), "--image", str(image_dir / "a.png"),
                     "--crop", "16", "-o", str(out)], capsys)
    assert rc == 0 and out.is_file()


def test_sgn_of_a_v1_model_is_one_line(image_dir, tmp_path, capsys):
    rc, _, err = _run(["analyze", "sgn", "--model", _model("v1"), "--image", str(image_dir / "a.png"),
                       "-o", str(tmp_path / "s.png")], capsys)
    assert rc != 0 and "MambaIR has no ASSM" in err and len(err.strip().splitlines()) == 1


def test_variant_names_are_refused_where_random_weights_make_no_sense(image_dir, tmp_path, capsys):
    rc, _, err = _run(["restore", str(image_dir / "a.png"), "-o", str(tmp_path), "--model", "light"], capsys)
    assert rc == 2 and "variant name" in err


def test_one_error_lists_every_kind_of_name(capsys):
    with pytest.raises(CheckpointError) as info:
        resolve("no_such_model")
    text = str(info.value)
    assert "bundled model (default" in text and "variant (light" in text and "mambairv2 download" in text
    rc, _, err = _run(["info", "--model", "no_such_model"], capsys)
    assert rc == 2 and err.count("\n") == 1


def test_list_models_has_every_source_and_family():
    rows = list_models()
    by_name = {r["name"]: r for r in rows}
    assert by_name["default"]["source"] == "bundled" and by_name["default"]["family"] == "MambaIRv2"
    assert by_name["light"]["scales"] == [2, 3, 4]
    assert by_name["mambair-denoise"]["family"] == "MambaIR" and by_name["mambair-denoise"]["task"] == "denoise"


def test_the_app_labels_a_v1_checkpoint_as_mambair():
    from mambairv2.app.models import model_info
    from mambairv2.models import load_model

    model = load_model(_model("v1"))
    assert model_info(model).describe().startswith("MambaIR **")
    assert model_info(load_model("default")).describe().startswith("MambaIRv2 **")


def test_every_model_option_has_the_same_three_names():
    """README: every command that takes a model takes --model NAME, with --weights and --variant
    as the same option."""
    import argparse

    from mambairv2.cli.main import build_parser

    seen = {}

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{prefix} {name}".strip())
            elif action.dest == "model" and action.option_strings:
                seen[prefix] = sorted(action.option_strings)

    walk(build_parser(), "")
    assert {"restore", "info", "convert", "export", "bench", "evaluate", "analyze complexity"} <= set(seen)
    assert all(names == ["--model", "--variant", "--weights"] for names in seen.values()), seen


def test_info_takes_a_variant_through_its_variant_option(capsys):
    rc, out, _ = _run(["info", "--variant", "light", "--json"], capsys)
    assert rc == 0 and json.loads(out)["variant"] == "light"


def test_an_error_names_the_model_the_way_it_was_given(tmp_path, capsys):
    out = str(tmp_path / "v.safetensors")
    assert main(["convert", "mambair-light", out]) == 2
    assert capsys.readouterr().err.startswith("error: MODEL mambair-light: is a variant name")
    assert main(["convert", "--model", "mambair-light", out]) == 2
    assert capsys.readouterr().err.startswith("error: --model mambair-light: is a variant name")
