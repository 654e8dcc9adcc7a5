"""What a newcomer meets in the first hour, each as it was reported: ``evaluate --model default``
alone, the old ``--model bicubic`` spelling, ``degrade`` on files and patterns, ``bench``'s output,
one default scale for variants, ``--help`` that fits a terminal, ``mambairv2.__main__`` imported by
a tool."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}


def cli(*args: str, cwd=None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mambairv2", *args], env=ENV, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def _images(folder, names, size=(40, 36)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / name)
    return folder


def test_evaluate_with_only_a_model_names_the_folder_it_needs():
    r = cli("evaluate", "--model", "default")
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert r.stderr.strip() == ("error: evaluate needs --hr-dir DIR: a folder of clean high-resolution images "
                                "(e.g. Set5/HR; the low-resolution inputs are made from them)")


def test_evaluate_takes_the_task_and_scale_from_the_model(tmp_path):
    hr = _images(tmp_path / "tiny" / "HR", ["a.png", "b.png"])
    r = cli("evaluate", "--model", "default", "--hr-dir", str(hr), "-q")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("sr x4, model default (bundled)"), r.stdout
    assert "tiny" in r.stdout and "2" in r.stdout.splitlines()[-1]


def test_the_bicubic_baseline_by_its_old_spelling_is_named():
    r = cli("evaluate", "--model", "bicubic", "--hr-dir", "x")
    assert r.returncode == 2
    assert r.stderr.strip() == "error: bicubic is a baseline, not a model: --baseline bicubic"
    r = cli("evaluate", "--baseline", "identity", "--hr-dir", "x")
    assert r.returncode == 2 and r.stderr.strip() == "error: --baseline identity needs --task (denoise or jpeg)"


def test_degrade_takes_files_and_patterns_as_restore_does(tmp_path):
    hr = _images(tmp_path / "hr", ["a.png", "b.png", "c.png"])
    out = tmp_path / "out"
    r = cli("degrade", "--task", "sr", "--scale", "2", "--hr-dir", str(hr / "a.png"), "--hr-dir", str(hr / "c*.png"),
            "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["ax2.png", "cx2.png"]
    assert Image.open(out / "ax2.png").size == (20, 18)
    (tmp_path / "notes.txt").write_text("x")
    for value, reason in ((str(tmp_path / "notes.txt"), "not an image file"),
                          (str(hr / "z*.png"), "the pattern matches no image files"),
                          (str(tmp_path / "missing.png"), "no such file or folder")):
        r = cli("degrade", "--task", "sr", "--scale", "2", "--hr-dir", value, "--out", str(tmp_path / "o2"))
        assert r.returncode == 2 and r.stderr.strip() == f"error: --hr-dir {value}: {reason}", r.stderr


def test_bench_prints_a_table_and_json_only_when_asked(tmp_path):
    args = ["bench", "--variant", "light", "--size", "8", "--warmup", "0", "--repeats", "1", "--threads", "1"]
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    assert "GFLOP/s" in r.stdout and "{" not in r.stdout and len(r.stdout.splitlines()) <= 4, r.stdout
    assert r.stdout.startswith("light (variant, random weights) x4"), r.stdout
    r = cli(*args, "--json", str(tmp_path / "b.json"))
    assert r.returncode == 0 and "{" not in r.stdout
    assert json.loads((tmp_path / "b.json").read_text())["results"][0]["size"] == 8


def test_bench_and_analyze_complexity_share_one_default_scale_said_in_help():
    from mambairv2.cli.main import build_parser
    from mambairv2.defaults import DEFAULT_VARIANT_SCALE

    parser = build_parser()
    bench = parser.parse_args(["bench"])
    complexity = parser.parse_args(["analyze", "complexity"])
    assert bench.scale == complexity.scale == DEFAULT_VARIANT_SCALE == 4
    for argv in (["bench", "--help"], ["analyze", "complexity", "--help"]):
        text = " ".join(cli(*argv).stdout.split())
        assert "default: 4" in text, text


def test_every_command_description_fits_a_terminal():
    from mambairv2.cli.main import _leaf_parsers, build_parser

    for leaf in _leaf_parsers(build_parser()):
        long = [line for line in (leaf.description or "").splitlines() if len(line) > 96]
        assert not long, (leaf.prog, long)
    r = cli("restore", "--help")
    assert r.returncode == 0 and max(len(line) for line in r.stdout.split("usage")[0].splitlines() or [""]) <= 96


def test_importing_the_main_module_runs_nothing():
    code = "import mambairv2.__main__ as m; print('imported', callable(m.main))"
    r = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "imported True", (r.stdout, r.stderr)


def _declared_distributions() -> set:
    """Every distribution pyproject.toml declares: core dependencies and every extra."""
    import re

    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        pytest.skip("tomllib needs Python 3.11")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"]) + [s for extra in project["optional-dependencies"].values() for s in extra]
    return {re.split(r"[<>=!~\[ ;]", s, maxsplit=1)[0].lower().replace("_", "-") for s in specs}


def test_every_package_the_tests_import_at_the_top_is_declared():
    """A package imported at module level by a test file (so needed at collection) belongs to a
    declared requirement; one that is not declared fails a fresh venv before any test runs.
    Imports inside functions and ``pytest.importorskip`` are not at collection, so not counted."""
    import ast
    from importlib.metadata import packages_distributions

    local = {p.stem for p in (REPO / "tests").glob("*.py")} | {"mambairv2"}
    owners = packages_distributions()
    declared = _declared_distributions()
    missing = {}
    for path in sorted((REPO / "tests").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in local or top == "__future__":
                    continue
                dists = {d.lower().replace("_", "-") for d in owners.get(top, [top])}
                if not dists & declared:
                    missing.setdefault(top, path.name)
    assert not missing, f"imported by tests, declared nowhere in pyproject.toml: {missing}"
