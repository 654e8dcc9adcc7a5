"""Ablation switches (MambaIRv2: ase, sgn, prompt_position, prompt_basis, prompt_order;
MambaIR v1: scan_directions, cab) and ``mambairv2 ablate``: the defaults are the released
networks (golden vectors, unchanged keys and stored configurations); every other combination
builds, trains a step, saves and reloads strictly; Table 8's rows count as the paper."""
import itertools
import json

import pytest
import torch

from mambairv2.models import create_model, family_of, load_model, read_state_dict, save_safetensors
from mambairv2.models.mambair import MambaIRConfig
from mambairv2.models.mambairv2 import MambaIRv2Config

from conftest import shared_path

V2_DEFAULTS = dict(ase=True, sgn=True, prompt_position="C", prompt_basis="layer", prompt_order="raster")
V1_DEFAULTS = dict(scan_directions=4, cab="auto")
V2_COMBOS = [dict(zip(V2_DEFAULTS, values)) for values in itertools.product(
    (True, False), (True, False), ("B", "delta", "y", "C"), ("layer", "shared"), ("raster", "sgn"))]
V1_COMBOS = [dict(scan_directions=n, cab=cab) for n in (1, 2, 4)
             for cab in ("auto", "classic", "light", "light-06dc6cd", "light-3ad5892")]
TINY_V2 = dict(embed_dim=12, depths=(2,), num_heads=(2,), window_size=4, inner_rank=4, num_tokens=6, d_state=4)
TINY_V1 = dict(embed_dim=30, depths=(1,), d_state=4, mlp_ratio=1.0)


@pytest.mark.parametrize("golden, case", [("golden", "light_x2"), ("golden_v1", "light_x2")])
def test_explicit_defaults_reproduce_the_golden_vectors(golden, case):
    sd, _ = read_state_dict(shared_path(golden, f"{case}.pth"))
    family = family_of(sd)
    detected = family.detect(sd, case)
    defaults = V2_DEFAULTS if isinstance(detected, MambaIRv2Config) else V1_DEFAULTS
    config = detected.replace(**defaults)
    assert config == detected and config.switches() == {}
    assert "ase" not in config.to_dict() and "cab" not in config.to_dict()  # stored config unchanged
    model = family.build(config).double()
    model.load_state_dict(sd, strict=True)
    io = torch.load(shared_path(golden, f"{case}_io.pt"), weights_only=True)
    with torch.no_grad():
        out = model.eval()(io["input_a"].double())
    assert (out - io["output_a"]).abs().max().item() <= 1e-8


def _keys(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_switches_without_parameters_keep_the_released_keys():
    released = _keys(create_model("light", scale=2, **TINY_V2))
    for switches in (dict(sgn=False), dict(prompt_order="sgn"), dict(prompt_position="B")):
        assert _keys(create_model("light", scale=2, **TINY_V2, **switches)) == released, switches
    assert "embeddingA.weight" in _keys(create_model("light", scale=2, prompt_basis="shared", **TINY_V2))
    no_ase = _keys(create_model("light", scale=2, ase=False, **TINY_V2))
    assert not any("embedding" in k for k in no_ase) and any(".route." in k for k in no_ase)
    plain = _keys(create_model("light", scale=2, ase=False, sgn=False, **TINY_V2))
    assert not any("embedding" in k or ".route." in k for k in plain)


def _train_save_reload(model, x, tmp_path):
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = model(x)
    loss = (out - torch.rand_like(out)).abs().mean()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    path = save_safetensors(model, tmp_path / "m.safetensors")
    loaded = load_model(path)  # strict, from the stored configuration
    assert loaded.config == model.config
    model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-6)
    return loaded


@pytest.mark.parametrize("switches", [c for c in V2_COMBOS if c != V2_DEFAULTS],
                         ids=lambda c: "-".join(str(v) for v in c.values()))
def test_every_v2_combination_trains_saves_and_reloads(switches, tmp_path):
    torch.manual_seed(0)
    model = create_model("light", scale=2, **TINY_V2, **switches)
    assert model.config.switches() == {k: v for k, v in switches.items() if V2_DEFAULTS[k] != v}
    stored = model.config.to_dict()
    assert {k: stored[k] for k in model.config.switches()} == model.config.switches()
    assert MambaIRv2Config.from_dict(stored) == model.config
    _train_save_reload(model, torch.rand(2, 3, 8, 8), tmp_path)


@pytest.mark.parametrize("switches", [c for c in V1_COMBOS if c != V1_DEFAULTS],
                         ids=lambda c: f"{c['scan_directions']}-{c['cab']}")
def test_every_v1_combination_trains_saves_and_reloads(switches, tmp_path):
    torch.manual_seed(0)
    model = create_model("mambair-light", scale=2, **TINY_V1, **switches)
    assert MambaIRConfig.from_dict(model.config.to_dict()) == model.config
    loaded = _train_save_reload(model, torch.rand(1, 3, 6, 7), tmp_path)
    # the directions and the block layout are also read back from the tensors alone
    assert family_of(loaded).detect(loaded.state_dict(), "sd") == model.config


def test_switch_values_are_checked():
    for bad in (dict(prompt_position="A"), dict(prompt_basis="global"), dict(prompt_order="random"),
                dict(ase="yes")):
        with pytest.raises(ValueError):
            MambaIRv2Config(**bad)
    for bad in (dict(scan_directions=3), dict(cab="heavy")):
        with pytest.raises(ValueError):
            MambaIRConfig(**bad)


def test_switches_are_visible_in_spandrel_tags_and_info(tmp_path, capsys):
    from mambairv2.cli.main import main
    from mambairv2.integrations.spandrel import descriptor_fields

    model = create_model("light", scale=2, prompt_basis="shared", sgn=False, **TINY_V2)
    tags = descriptor_fields(model.config)["tags"]
    assert "prompt_basis=shared" in tags and "sgn=False" in tags
    assert not any("=" in t for t in descriptor_fields(create_model("light", scale=2).config)["tags"])
    v1 = create_model("mambair-light", scale=2, scan_directions=2, **TINY_V1)
    assert "scan_directions=2" in descriptor_fields(v1.config)["tags"]
    path = save_safetensors(model, tmp_path / "m.safetensors")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "prompt_basis=shared" in out and "sgn=False" in out


def test_table8_dry_run_matches_the_paper(tmp_path):
    from mambairv2.cli.main import main

    out = tmp_path / "t8.json"
    assert main(["ablate", "table8", "--dry-run", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["name"] for r in rows] == ["MambaIR-1", "MambaIR-2", "MambaIR-4", "MambaIRv2-light"]
    for r in rows:
        assert r["params_match"], (r["name"], r["params"], r["paper_params"])
        assert abs(r["macs_rel_diff"]) < 0.01, (r["name"], r["macs"])
    assert rows[2]["params"] == 1_363_320  # the 06dc6cd light x2 checkpoints' count


@pytest.mark.parametrize("table", ["table1", "table2", "tableA2", "deviations"])
def test_dry_run_lists_every_row(table, tmp_path):
    from mambairv2.cli.main import main
    from mambairv2.train.ablation import TABLES

    out = tmp_path / "t.json"
    assert main(["ablate", table, "--dry-run", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["name"] for r in rows] == list(TABLES[table]["rows"])
    assert all(r["params"] > 0 and r["macs"] > 1e11 for r in rows)


def test_paper_rounding():
    from mambairv2.train.ablation import rounds_to

    assert rounds_to(987_480, "987K") and rounds_to(1_112_760, "1.11M") and not rounds_to(1_118_000, "1.11M")


def test_a_tiny_run_writes_one_row_per_table_row(tmp_path, monkeypatch):
    """A whole table at a tiny budget (a small network via the config's model.overrides)."""
    from mambairv2.cli.main import main
    from mambairv2.train.ablation import TABLES

    from PIL import Image

    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "tiny.yaml"
    sets = tmp_path / "Tiny" / "HR"  # one 24×20 crop of a Set5 image: a quick evaluation
    sets.mkdir(parents=True)
    first = sorted(shared_path("data", "sr", "Set5", "HR").iterdir())[0]
    Image.open(first).convert("RGB").crop((0, 0, 24, 20)).save(sets / "crop.png")
    cfg.write_text(json.dumps({
        "device": "cpu", "model": {"variant": "light", "scale": 2,
                                   "overrides": {"embed_dim": 12, "depths": [1], "num_heads": [2], "window_size": 4}},
        "data": {"train_root": str(shared_path("data", "sr", "Set5", "HR")), "patch_size": 8, "batch_size": 2,
                 "num_workers": 0},
        "val": {"root": str(sets), "max_images": 1},
        "train": {"iters": 2, "lr": 1e-3, "ema_decay": 0, "amp": "none"}}))
    out = tmp_path / "t1.json"
    args = ["ablate", "table1", "--config", str(cfg), "--steps", "1", "--seeds", "0,1", "--json", str(out),
            "--output-dir", str(tmp_path / "runs")]
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert [r["name"] for r in report["rows"]] == list(TABLES["table1"]["rows"])
    for r in report["rows"]:
        assert [run["seed"] for run in r["runs"]] == [0, 1]
        assert r["sets"]["Tiny"]["psnr"]["n"] == 2 and r["sets"]["Tiny"]["psnr"]["std"] is not None
        assert set(r["sets"]["Tiny"]) >= {"psnr", "ssim"}
    assert report["rows"][0]["sets"]["Tiny"]["psnr_vs_reference"]["n"] == 2
    assert report["rows"][2]["sets"]["Tiny"]["psnr_vs_reference"] is None  # the reference row
    # resumable: a second run reuses every trained row
    before = {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("model.safetensors")}
    assert main(args + ["--overwrite"]) == 0
    assert {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("model.safetensors")} == before
    # a row stopped before its first training state (only its log and config written) is
    # trained again by the next run, not refused as another run's folder
    row = sorted((tmp_path / "runs").rglob("model.safetensors"))[0].parent
    (row / "model.safetensors").unlink()
    (row / "trained.json").unlink()
    for state in (row / "train").rglob("training_states/*"):
        state.unlink()
    assert (row / "train" / "log.csv").is_file()
    assert main(args + ["--overwrite"]) == 0
    assert (row / "model.safetensors").is_file()
    # an empty record (a crash while it was written) is no trained row: trained again, rewritten
    (row / "trained.json").write_text("")
    assert main(args + ["--overwrite"]) == 0
    assert json.loads((row / "trained.json").read_text())["steps"] == 1


@pytest.mark.parametrize("seeds, needle", [("0,0,0", "seed 0 is given more than once"), (",", "at least one seed"),
                                           ("-1,-2", "seeds are integers ≥ 0, got -1"), ("0", "at least one seed"),
                                           ("1,x", "expected a count or a comma-separated list")])
def test_seeds_that_are_not_distinct_samples_are_one_line_errors(tmp_path, capsys, seeds, needle):
    """``--seeds 0,0,0`` was one training counted as n=3 (a "resolved" row from one sample)."""
    from mambairv2.cli.main import main
    from mambairv2.train import ablation as A

    absent = str(tmp_path / "absent")  # without the seeds check: a quick error about this set, not a training
    code = main(["ablate", "table1", f"--seeds={seeds}", "--steps", "1", "--sets", absent,
                 "--output-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: --seeds: ") and needle in err and "\n" not in err, err
    assert not (tmp_path / "runs" / "runs").exists()  # nothing trained
    with pytest.raises(A.AblationError, match="given more than once"):
        A.run_table("table1", A.Budget(config="x", overrides=(), steps=1, seeds=(3, 3), sets=(absent,)), tmp_path)


def test_paired_difference_uses_students_t():
    from mambairv2.train.ablation import paired_difference

    def runs(values):
        return [{"seed": i, "sets": {"S": {"psnr": v}}} for i, v in enumerate(values)]

    two = paired_difference(runs([11.0, 12.2]), runs([10.0, 11.0]), "S", "psnr")
    assert two["mean"] == pytest.approx(1.1) and two["se"] == pytest.approx(0.1)
    assert not two["resolved"]  # 11 standard errors, but t(1) needs 12.7
    three = paired_difference(runs([11.0, 12.1, 13.2]), runs([10.0, 11.0, 12.0]), "S", "psnr")
    assert three["resolved"]
    assert paired_difference(runs([11.0]), runs([10.0]), "S", "psnr")["se"] is None


def test_trainer_pth_stores_switches_the_tensors_cannot_tell(tmp_path):
    from mambairv2.models import save_checkpoint

    model = create_model("light", scale=2, prompt_order="sgn", sgn=True, **TINY_V2)
    path = save_checkpoint(tmp_path / "net_g.pth", model.state_dict(), config=model.config)
    assert load_model(path).config.prompt_order == "sgn"  # raster by the tensors alone
    released = create_model("light", scale=2, **TINY_V2)
    path = save_checkpoint(tmp_path / "plain.pth", released.state_dict(), config=released.config)
    assert set(torch.load(path, weights_only=True)) == {"params"}  # exactly BasicSR's
