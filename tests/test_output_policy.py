"""One output policy for every writer (mambairv2.utils.outputs): every output option of every
command is enumerated from the argparse parsers, and each is tried as a careless user would: onto
an existing file without --overwrite, onto an input of the same command (also through a symbolic
and a hard link), with the wrong suffix. Each is refused in one line before any work, and the file
it named is left untouched."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import pytest

import mambairv2
from mambairv2.cli.main import build_parser, main
from mambairv2.utils.imageio import ImageData, encode_image

#: Options whose help says "write" but that name no output.
NOT_OUTPUTS = {("analyze complexity", "--output-size")}
#: argparse destinations that name something a command writes.
OUTPUT_DESTS = {"output", "output_option", "json", "json_out", "save_dir", "out", "output_dir"}


def output_options() -> List[Tuple[str, str]]:
    """(command, option) for every option of every (sub)command that names an output."""
    found = []

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{prefix} {name}".strip())
            elif (action.dest in OUTPUT_DESTS and action.nargs != 0
                  or "write" in (action.help or "").lower() and action.nargs != 0 and action.dest != "overwrite"):
                found.append((prefix, action.option_strings[0] if action.option_strings else action.dest.upper()))

    walk(build_parser(), "")
    return sorted(set(found) - NOT_OUTPUTS)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Dict[str, Path]:
    root = tmp_path_factory.mktemp("policy")
    hr = root / "hr"
    hr.mkdir()
    px = np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8)
    (hr / "a.png").write_bytes(encode_image(ImageData(px), "PNG"))
    model = mambairv2.create_model("light", scale=2, embed_dim=12, depths=(1,), num_heads=(2,), d_state=4,
                                   inner_rank=4, num_tokens=6).eval()
    weights = root / "tiny.safetensors"
    mambairv2.save_safetensors(model, weights)
    return {"root": root, "hr": hr, "image": hr / "a.png", "weights": weights}


def _args(files: Dict[str, Path]) -> Dict[Tuple[str, str], Callable[[str], List[str]]]:
    """Per output option: the command line writing to OUT (the other arguments valid)."""
    w, img, hr = str(files["weights"]), str(files["image"]), str(files["hr"])
    extra = {"attention": ["--pixel", "4,4"], "lam": ["--box", "4,4,8,8"]}
    figure = lambda name: (lambda out: ["analyze", name, "--model", w, "--image", img, "-o", out,  # noqa: E731
                                        *extra.get(name, [])])
    return {
        ("restore", "-o"): lambda out: ["restore", img, "-o", out, "--model", w],
        ("restore", "--json"): lambda out: ["restore", img, "-o", str(files["root"] / "r"), "--model", w,
                                            "--json", out],
        ("evaluate", "--json"): lambda out: ["evaluate", "--hr-dir", hr, "--task", "sr", "--model", w, "--json", out],
        ("evaluate", "--save-dir"): lambda out: ["evaluate", "--hr-dir", hr, "--task", "sr", "--model", w, "--save-dir", out],
        ("bench", "--json"): lambda out: ["bench", "--json", out],
        ("analyze complexity", "--json"): lambda out: ["analyze", "complexity", "--json", out],
        ("analyze erf", "-o"): figure("erf"),
        ("analyze attention", "-o"): figure("attention"),
        ("analyze sgn", "-o"): figure("sgn"),
        ("analyze lam", "-o"): figure("lam"),
        ("export", "-o"): lambda out: ["export", "--model", w, "-o", out],
        ("convert", "OUTPUT"): lambda out: ["convert", w, out],
        ("convert", "-o"): lambda out: ["convert", w, "-o", out],
        ("ablate", "--json"): lambda out: ["ablate", "table1", "--dry-run", "--json", out],
        ("ablate", "--markdown"): lambda out: ["ablate", "table1", "--dry-run", "--markdown", out],
        ("degrade", "--out"): lambda out: ["degrade", "--hr-dir", hr, "--task", "sr", "--scale", "2", "--out", out],
        ("ablate", "--output-dir"): lambda out: ["ablate", "table1", "--steps", "1", "--seeds", "1", "--sets", hr,
                                                 "--output-dir", out],
    }


#: The file suffix each file output expects (folder outputs: None).
SUFFIX = {("ablate", "--json"): ".json", ("ablate", "--markdown"): ".md",
          ("restore", "--json"): ".json", ("evaluate", "--json"): ".json", ("bench", "--json"): ".json",
          ("analyze complexity", "--json"): ".json", ("analyze erf", "-o"): ".png",
          ("analyze attention", "-o"): ".png", ("analyze sgn", "-o"): ".png", ("analyze lam", "-o"): ".png",
          ("export", "-o"): ".onnx", ("convert", "OUTPUT"): ".safetensors", ("convert", "-o"): ".safetensors"}
FOLDERS = {("restore", "-o"), ("evaluate", "--save-dir"), ("degrade", "--out"), ("ablate", "--output-dir")}


def test_every_output_option_is_covered(files):
    """A new writer fails here until it is added to the table (and so to the checks below)."""
    assert set(output_options()) == set(_args(files)), set(output_options()) ^ set(_args(files))


def run(argv: List[str], capsys) -> Tuple[int, str]:
    capsys.readouterr()
    rc = main(argv)
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("key", sorted(SUFFIX))
def test_existing_file_is_kept_without_overwrite(files, capsys, key):
    target = files["root"] / f"exists-{key[0].replace(' ', '_')}{SUFFIX[key]}"
    target.write_bytes(b"precious")
    rc, err = run(_args(files)[key](str(target)), capsys)
    assert rc == 2 and target.read_bytes() == b"precious"
    assert "--overwrite" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("key", sorted(SUFFIX))
def test_wrong_suffix_is_refused(files, capsys, key):
    target = files["root"] / f"wrong-{key[0].replace(' ', '_')}.txt"
    rc, err = run(_args(files)[key](str(target)) + ["--overwrite"] * (key[0] not in ("convert", "export")), capsys)
    assert rc == 2 and not target.exists()
    assert "must end in" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
@pytest.mark.parametrize("key", [k for k in sorted(SUFFIX) if k[1] != "--json" or k[0] == "restore"
                                 if k[0] != "ablate"])  # ablate reads no file of its own
def test_an_input_is_never_written_over(files, capsys, key, how, tmp_path):
    """The command's own input (image or checkpoint), named directly or through a link, with
    --overwrite: still refused (the suffix is made to match so that only the policy refuses)."""
    source = files["weights"] if key[0] in ("convert", "export") else files["image"]
    victim = tmp_path / f"victim{SUFFIX[key]}"
    victim.write_bytes(source.read_bytes())
    original = victim.read_bytes()
    argv = _args(files)[key]("OUT")
    # the command reads the victim as its input
    argv = [str(victim) if a in (str(source),) else a for a in argv]
    if how == "same":
        out = victim
    else:
        out = tmp_path / f"link{SUFFIX[key]}"
        (os.symlink if how == "symlink" else os.link)(victim, out)
    argv = [str(out) if a == "OUT" else a for a in argv]
    if key[0] not in ("convert", "export"):
        argv.append("--overwrite")
    else:
        argv.append("--overwrite")
    if key[0] in ("analyze erf", "analyze attention", "analyze sgn", "analyze lam") and victim.suffix != ".png":
        pytest.skip("the input is not of the output's kind")
    rc, err = run(argv, capsys)
    assert rc == 2 and victim.read_bytes() == original, err
    assert "input" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("key", [k for k in sorted(SUFFIX) if k[0].split()[0] in ("restore", "evaluate", "bench", "analyze")])
def test_the_model_file_is_never_written_over(files, capsys, key, tmp_path):
    """The model file is an input too: a --json or -o naming it (its name given the output's
    suffix, so that only the policy refuses) is refused even with --overwrite."""
    victim = tmp_path / f"model{SUFFIX[key]}"
    victim.write_bytes(files["weights"].read_bytes())
    argv = [a for a in _args(files)[key](str(victim))]
    if "--model" in argv:
        argv[argv.index("--model") + 1] = str(victim)
    else:
        argv += ["--model", str(victim)]
    rc, err = run(argv + ["--overwrite"], capsys)
    assert rc == 2 and victim.read_bytes() == files["weights"].read_bytes(), err
    assert "input" in err and len(err.strip().splitlines()) == 1, err


def test_restore_never_writes_an_image_over_the_model_file(files, capsys, tmp_path):
    """``restore a.png -o DIR --model DIR/a.png``: the planned output is the model file."""
    victim = tmp_path / "a.png"
    victim.write_bytes(files["weights"].read_bytes())
    rc, err = run(["restore", str(files["image"]), "-o", str(tmp_path), "--model", str(victim), "--overwrite"], capsys)
    assert rc != 0 and victim.read_bytes() == files["weights"].read_bytes(), err
    assert "would replace the model file" in err, err


def test_evaluate_save_dir_never_writes_over_the_ground_truth(files, capsys, monkeypatch):
    monkeypatch.chdir(files["hr"])
    before = files["image"].read_bytes()
    for save in (".", str(files["hr"]), str(files["root"])):  # the HR folder, or its parent (DIR/NAME = HR)
        rc, err = run(["evaluate", "--hr-dir", ".", "--task", "sr", "--model", str(files["weights"]), "--save-dir", save,
                       "--name", "hr", "--overwrite"], capsys)
        assert rc == 2 and "input folder" in err, (save, err)
    assert files["image"].read_bytes() == before


def test_folder_outputs_refuse_a_file_and_degrade_its_input_folder(files, capsys):
    for key in sorted(FOLDERS):
        target = files["root"] / f"afile-{key[0]}"
        target.write_bytes(b"x")
        rc, err = run(_args(files)[key](str(target)), capsys)
        assert rc == 2 and target.read_bytes() == b"x", (key, err)
    for key in (("degrade", "--out"), ("ablate", "--output-dir")):
        rc, err = run(_args(files)[key](str(files["hr"])), capsys)
        assert rc == 2 and "input folder" in err and len(err.strip().splitlines()) == 1, (key, err)


def test_download_checks_its_destinations_before_fetching(tmp_path, capsys, monkeypatch):
    """``download`` names no output: it writes into huggingface_hub's cache folder and the
    mambairv2 cache folder (its record of verified downloads). A file where a folder belongs, or a
    folder where the record belongs, is one line naming it, before any request (offline here, so
    a missed check could not reach the network either)."""
    pytest.importorskip("huggingface_hub", reason="huggingface_hub is needed")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [("MAMBAIRV2_CACHE_DIR", afile, "the mambairv2 cache folder (MAMBAIRV2_CACHE_DIR)"),
             ("HF_HUB_CACHE", afile, "the huggingface_hub cache folder"),
             ("MAMBAIRV2_CACHE_DIR", tmp_path / "mc", "the record of verified downloads")]
    (tmp_path / "mc" / "downloads.json").mkdir(parents=True)
    for what, path, needle in cases:
        monkeypatch.setenv("MAMBAIRV2_CACHE_DIR", str(path if what == "MAMBAIRV2_CACHE_DIR" else tmp_path / "ok"))
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(path if what == "HF_HUB_CACHE" else tmp_path / "hub"))
        rc, err = run(["download", "mambairv2_lightSR_x2"], capsys)
        assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, (what, err)
    assert afile.read_text() == "x"


def test_restore_json_and_evaluate_json_never_replace_their_inputs(files, capsys):
    image = files["image"]
    before = image.read_bytes()
    rc, err = run(["restore", str(image), "-o", str(files["root"] / "r2"), "--model", str(files["weights"]),
                   "--json", str(image), "--overwrite"], capsys)
    assert rc == 2 and image.read_bytes() == before
    # evaluate's inputs are folders: nothing is written into them
    report = files["hr"] / "report.json"
    rc, err = run(["evaluate", "--hr-dir", str(files["hr"]), "--task", "sr", "--model", str(files["weights"]),
                   "--json", str(report)], capsys)
    assert rc == 2 and "input" in err and not report.exists()


def test_train_refuses_another_runs_folder_and_locks_its_own(tmp_path, capsys):
    from mambairv2.train.config import ConfigError
    from mambairv2.train.trainer import lock_folder

    run_dir = tmp_path / "run"
    (run_dir / "models").mkdir(parents=True)
    model = run_dir / "models" / "net_g_100.pth"
    model.write_bytes(b"another run")
    for resume in ([], ["--resume"]):
        rc, err = run(["train", "quickstart_light_x2_cpu", "--set", f"output_dir={run_dir}", *resume], capsys)
        assert rc == 2 and "--overwrite" in err and model.read_bytes() == b"another run", err
    held = lock_folder(run_dir)
    try:
        with pytest.raises(ConfigError, match="in use by another training run"):
            lock_folder(run_dir)
    finally:
        held.close()
    lock_folder(run_dir).close()  # released: free again


_READ_ONLY_DRIVER = """
import contextlib, io, json, sys
from mambairv2.cli.main import main
results = []
for argv in json.load(open(sys.argv[1])):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    results.append([rc, err.getvalue()])
json.dump(results, open(sys.argv[2], "w"))
"""


def _mount_namespaces_work() -> bool:
    import subprocess

    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def test_a_read_only_destination_is_refused_before_any_work(files, tmp_path):
    """Every output option aimed into a folder that cannot be written (a read-only bind mount
    for root, whom permission bits do not stop; a 0o555 folder otherwise) is one line before
    anything is computed, and nothing is written."""
    import json
    import subprocess
    import sys

    from conftest import REPO

    ro = tmp_path / "ro"
    ro.mkdir()
    keys = sorted(_args(files))
    argvs = [_args(files)[k](str(ro / "out" if k in FOLDERS else ro / f"x{SUFFIX[k]}")) for k in keys]
    (tmp_path / "argv.json").write_text(json.dumps(argvs))
    (tmp_path / "driver.py").write_text(_READ_ONLY_DRIVER)
    python = [sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "argv.json"), str(tmp_path / "out.json")]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    if os.geteuid() == 0:
        if not _mount_namespaces_work():
            pytest.skip("running as root without mount namespaces (unshare -m): no read-only folder to test with")
        script = f'mount --bind "{ro}" "{ro}" && mount -o remount,bind,ro "{ro}" && exec "$@"'
        cmd = ["unshare", "-m", "sh", "-c", script, "sh", *python]
    else:
        ro.chmod(0o555)
        cmd = python
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    finally:
        ro.chmod(0o755)
    assert r.returncode == 0, r.stderr
    results = json.loads((tmp_path / "out.json").read_text())
    for key, (rc, err) in zip(keys, results):
        assert rc == 2 and "cannot write in" in err and len(err.strip().splitlines()) == 1, (key, err)
    assert list(ro.iterdir()) == []
