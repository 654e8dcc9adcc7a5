"""The wheel carries everything a ``pip install`` user needs: the C kernels' sources (built on
first use), the bundled weights and every training config. Built from the tracked sources,
installed with ``pip install --no-deps --target``, and run from that copy, not the source tree."""
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, SHARED

PACKAGE = REPO / "src" / "mambairv2"


def _sources(dest: Path) -> None:
    """Copies what a clean clone holds for building (no build/, egg-info or caches)."""
    shutil.copy2(REPO / "pyproject.toml", dest / "pyproject.toml")
    for name in ("README.md", "LICENSE", "NOTICE"):
        shutil.copy2(REPO / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(REPO / "src", dest / "src", ignore=ignore)


def build_wheel(root: Path) -> Path:
    """Builds the package's wheel from a copy of the tracked sources under ``root``; its path."""
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools")
    project = root / "project"
    project.mkdir()
    _sources(project)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(root / "dist"), str(project)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    return next((root / "dist").glob("mambairv2-*.whl"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(root)
    target = root / "site"
    inst = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                           str(wheel)], capture_output=True, text=True, timeout=600)
    assert inst.returncode == 0, inst.stderr[-2000:]
    return wheel, target, root


def _run(target: Path, root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(target), **env}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600,
                          cwd=str(root), env=environ)


def test_wheel_lists_kernel_sources_weights_and_configs(installed):
    wheel, _, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in [*PACKAGE.glob("ops/*.c"), *PACKAGE.glob("ops/*.h"), *PACKAGE.glob("configs/*.yaml"),
                 *PACKAGE.glob("weights/*.safetensors")]:
        assert f"mambairv2/{path.relative_to(PACKAGE).as_posix()}" in names, path


def test_wheel_and_sdist_carry_the_licence_and_the_notice(installed, tmp_path):
    wheel, _, root = installed
    names = zipfile.ZipFile(wheel).namelist()
    for name in ("LICENSE", "NOTICE"):
        assert any(n.split("/")[0].endswith(".dist-info") and n.rsplit("/", 1)[-1] == name for n in names), names
    build = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                            "print(build_meta.build_sdist(sys.argv[1]))", str(tmp_path)],
                           capture_output=True, text=True, timeout=600, cwd=str(root / "project"))
    assert build.returncode == 0, build.stderr[-2000:]
    with tarfile.open(tmp_path / build.stdout.strip().splitlines()[-1]) as sdist:
        members = {m.name.split("/", 1)[-1] for m in sdist.getmembers()}
    assert {"LICENSE", "NOTICE"} <= members, sorted(members)[:20]
    assert "Apache License" in (REPO / "LICENSE").read_text() and "Guo" in (REPO / "NOTICE").read_text()


def test_installed_copy_builds_kernels_lists_configs_and_matches_a_golden_case(installed, tmp_path):
    _, target, root = installed
    cache = tmp_path / "kernel-cache"
    code = (
        "import mambairv2, torch\n"
        f"assert mambairv2.__file__.startswith({str(target)!r}), mambairv2.__file__\n"
        "from mambairv2.ops import describe\n"
        "with torch.no_grad():\n"
        "    chosen = describe('cpu', torch.float32)\n"
        "print(' '.join(f'{op}={c.name}' for op, c in chosen.items()))\n")
    r = _run(target, root, "-c", code, MAMBAIRV2_CACHE_DIR=str(cache))
    assert r.returncode == 0, r.stderr[-2000:]
    if shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc"):
        assert "selective_scan=compiled" in r.stdout, r.stdout
        built = {p.name.split("-")[0] for p in cache.glob("*.so")}
        assert {"scan_kernel", "routing_kernel", "layer_norm_kernel"} <= built, built

    r = _run(target, root, "-m", "mambairv2", "configs")
    assert r.returncode == 0, r.stderr[-2000:]
    listed = {line.split()[0] for line in r.stdout.splitlines() if line.strip()}
    assert listed == {p.stem for p in PACKAGE.glob("configs/*.yaml")}

    golden = SHARED / "golden"
    if not (golden / "light_x2.pth").exists():
        pytest.skip(f"shared data not found: {golden} (set MAMBAIRV2_SHARED)")
    code = (
        "import torch, mambairv2\n"
        f"io = torch.load({str(golden / 'light_x2_io.pt')!r}, weights_only=True)\n"
        f"model = mambairv2.load_model({str(golden / 'light_x2.pth')!r})\n"
        "with torch.no_grad():\n"
        "    out = model(io['input_a'].float())\n"
        "print((out.double() - io['output_a']).abs().max().item())\n")
    r = _run(target, root, "-c", code, MAMBAIRV2_CACHE_DIR=str(cache))
    assert r.returncode == 0, r.stderr[-2000:]
    assert float(r.stdout.strip().splitlines()[-1]) <= 1e-4
