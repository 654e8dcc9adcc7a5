"""The optional extras installed as a user installs them: the wheel built from the sources, then
``pip install "mambairv2-….whl[EXTRA]"`` into a fresh virtual environment that already has torch
(and, for ``[spandrel]``, torchvision). torch and torchvision must stay exactly as they were
(version, location, RECORD), pip must install nothing named torch*/nvidia-*/cuda-*/triton (triton
only for ``[triton]``), ``pip check`` must find nothing broken, and the extra's own command must
then work from that install.

"Already has torch" without copying gigabytes: the fresh environment's site-packages gets a
``.pth`` line naming a folder of symbolic links to an installed torch (and torchvision) and
everything they require, so pip sees them as installed distributions. That folder lies outside
the new environment, so pip never uninstalls from it: a torch that pip wanted to replace would be
installed into the new environment, where these checks see it. Two installed torches serve:

- the one running these tests (the main environment: a CPU build, torch 2.13 in CI) without
  torchvision: a user who installed only torch;
- the ComfyUI-like environment's (``scripts/host_env.sh``: torch 2.14.1 with torchvision 0.29.1
  from the package index), with and without its torchvision.

Installs use ``--no-compile`` (no .pyc files: faster; what is installed is the same). They need
the package index: skipped with the reason where pip cannot reach it, and the ComfyUI-like cases
where that environment is not built.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, List, Optional, Set, Tuple

import pytest
import torch
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from conftest import REPO
from hub_standin import HubStandIn
from test_app_cli import START_TIMEOUT_S, interrupt_and_close, read_until, start_app
from test_wheel import build_wheel

pytestmark = [pytest.mark.slow, pytest.mark.network]

#: distributions no extra may install (canonical-name prefixes): torch and its CUDA libraries
HEAVY = ("torch", "functorch", "nvidia", "cuda", "triton")
#: variables that would make a subprocess use something other than the fresh environment
LEAKY = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PIP_TARGET", "PIP_PREFIX",
         "PIP_USER", "PIP_REQUIRE_VIRTUALENV", "MAMBAIRV2_IMPLEMENTATION")
HUB_REPO = "cguoh/MambaIR"
TINY_NAME = "mambairv2_tiny_x2"
#: what no extra may change where it is already installed
KEPT = ("torch", "torchvision", "numpy", "Pillow")

# What a fresh environment holds of torch and torchvision, as pip and Python see it.
SNAPSHOT = r"""
KEPT = ("torch", "torchvision", "numpy", "Pillow")
import hashlib, importlib.metadata as md, importlib.util, json
out = {}
for name in KEPT:
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        out[name] = None
        continue
    spec = importlib.util.find_spec(name)
    out[name] = {"version": dist.version, "location": str(dist.locate_file("")),
                 "module": spec.origin if spec else None, "files": len(dist.files or []),
                 "record_sha256": hashlib.sha256((dist.read_text("RECORD") or "").encode()).hexdigest()}
print(json.dumps(out))
"""


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> None:
    """Skips unless pip can fetch a small package (einops, which [spandrel] installs anyway)."""
    dest = tmp_path_factory.mktemp("index-check")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--timeout", "15", "--retries", "1",
           "-q", "-d", str(dest), "einops"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.skip("pip could not fetch einops from the package index within 90 s")
    if r.returncode != 0:
        pytest.skip(f"pip cannot reach the package index: {_last_line(r.stderr)}")
    if Version(metadata.version("pip")) < Version("22.3"):
        pytest.skip("pip >= 22.3 is needed (--python, --report)")


@pytest.fixture(scope="module")
def wheel(index, tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("extras-wheel"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A small MambaIRv2 x2 checkpoint (random weights) in the authors' layout."""
    from mambairv2 import create_model

    torch.manual_seed(0)
    model = create_model("light", scale=2, embed_dim=12, depths=(2,), num_heads=(2,), d_state=4,
                         inner_rank=4, num_tokens=6).eval()
    path = tmp_path_factory.mktemp("tiny") / f"{TINY_NAME}.pth"
    torch.save({"params": model.state_dict()}, path)
    return path


def link_closure(site: Path, roots: Iterable[str], dest: Path) -> Set[str]:
    """Fills ``dest`` with symbolic links to the files of the distributions ``roots`` and of
    everything they require (markers evaluated for this interpreter, requested extras followed)
    as installed in ``site``; returns their canonical names."""
    dists = {canonicalize_name(d.metadata["Name"]): d for d in metadata.distributions(path=[str(site)])}
    todo: List[Tuple[str, FrozenSet[str]]] = [(canonicalize_name(r), frozenset()) for r in roots]
    seen: Set[Tuple[str, FrozenSet[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen or name not in dists:
            continue
        seen.add((name, extras))
        for text in dists[name].requires or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
                todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    names = {name for name, _ in seen}
    tops = {f.parts[0] for name in names for f in dists[name].files or []}
    dest.mkdir(parents=True)
    for top in sorted(tops):
        # .pth files are read in site directories only, not in folders they add
        if top not in ("..", "__pycache__") and not top.endswith(".pth") and (site / top).exists():
            (dest / top).symlink_to(site / top)
    return names


def _environ(proxies: bool = True, **extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in LEAKY and (proxies or not k.lower().endswith("_proxy"))}
    env.update(extra)
    return env


@dataclass
class FreshEnv:
    """A new virtual environment (no pip of its own: the running pip installs into it)."""
    root: Path
    python: Path
    site: Path

    @classmethod
    def create(cls, root: Path, base: Path) -> "FreshEnv":
        root.mkdir(parents=True)
        env = root / "venv"
        r = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        python = env / "bin" / "python"
        purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, timeout=60, env=_environ())
        site = Path(purelib.stdout.strip())
        assert site.is_dir() and env in site.parents, purelib.stderr
        (site / "_existing_torch.pth").write_text(f"{base}\n")
        return cls(root, python, site)

    def pip(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pip", "--python", str(self.python), *args],
                              capture_output=True, text=True, timeout=900, env=_environ())

    def run(self, *args: str, proxies: bool = True, **extra: str) -> subprocess.CompletedProcess:
        began = time.monotonic()
        r = subprocess.run([str(self.python), *args], capture_output=True, text=True, timeout=600,
                           cwd=str(self.root), env=_environ(proxies, **extra))
        if args[1:2] != (SNAPSHOT,):
            shown = " ".join(Path(a).name if a.startswith("/") else a.strip().split("\n")[0] for a in args)
            print(f"  {shown[:70]}: {time.monotonic() - began:.1f} s")
        return r

    def command(self, *args: str, proxies: bool = True, **extra: str) -> subprocess.CompletedProcess:
        """``mambairv2 ARGS`` through the console script pip installed."""
        return self.run(str(self.python.parent / "mambairv2"), *args, proxies=proxies, **extra)

    def snapshot(self) -> dict:
        r = self.run("-c", SNAPSHOT)
        assert r.returncode == 0, r.stderr[-2000:]
        return json.loads(r.stdout)

    def heavy_entries(self, allowed: Iterable[str] = ()) -> List[str]:
        """Top-level entries of the environment's own site-packages named like torch or its CUDA
        libraries (``allowed``: canonical names not counted)."""
        def heavy(entry: str) -> bool:
            top = canonicalize_name(re.split(r"[-.]", entry)[0])
            return top.startswith(HEAVY) and top not in allowed
        return sorted(p.name for p in self.site.iterdir() if heavy(p.name))


@pytest.fixture
def fresh(tmp_path):
    """Makes fresh environments on an existing torch (``fresh(base)``); removes them afterwards
    (several hundred MB each)."""
    made: List[Path] = []

    def make(base: Path) -> FreshEnv:
        env = FreshEnv.create(tmp_path / f"env{len(made)}", base)
        made.append(env.root)
        return env
    yield make
    for root in made:
        shutil.rmtree(root, ignore_errors=True)


def _report_names(path: Path) -> Dict[str, dict]:
    return {canonicalize_name(item["metadata"]["name"]): item for item in json.loads(path.read_text())["install"]}


def install(env: FreshEnv, *requirements: str, allowed: Iterable[str] = ()) -> Dict[str, dict]:
    """Installs ``requirements`` into ``env`` and checks that torch, torchvision, numpy and
    Pillow stayed as they were and nothing heavy came (``allowed``: canonical names exempt);
    pip's report."""
    allowed = set(allowed)
    before = env.snapshot()
    assert before["torch"] is not None and Path(before["torch"]["module"]).is_relative_to(
        before["torch"]["location"]), before
    report = env.root / "report.json"
    began = time.monotonic()
    r = env.pip("install", "--no-compile", "-q", "--report", str(report), *requirements)
    took = time.monotonic() - began
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    installed = _report_names(report)
    heavy = sorted(n for n in installed if n.startswith(HEAVY) and n not in allowed)
    assert not heavy, f"pip installed {heavy} with {requirements}"
    after = env.snapshot()
    for name in KEPT:
        if canonicalize_name(name) not in allowed:
            assert after[name] == before[name], (name, before[name], after[name])
    assert not env.heavy_entries(allowed), env.heavy_entries(allowed)
    check = env.pip("check")
    assert check.returncode == 0, check.stdout + check.stderr
    size = sum(f.stat().st_size for f in env.site.rglob("*") if f.is_file() and not f.is_symlink())
    print(f"{requirements[0].rsplit('/', 1)[-1]} …: {len(installed)} distributions, {size / 1e6:.0f} MB "
          f"installed in {took:.0f} s; unchanged: " + ", ".join(f"{name} {(after[name] or {}).get('version')}"
                                             for name in KEPT if canonicalize_name(name) not in allowed))
    return installed


@dataclass(frozen=True)
class Bases:
    """Folders of links to installed torches: ``cpu`` the running interpreter's torch alone;
    ``host`` and ``host_torch`` the ComfyUI-like environment's torch with and without its
    torchvision (None where that environment is not built)."""
    cpu: Path
    host: Optional[Path]
    host_torch: Optional[Path]
    host_reason: str


def _host_site() -> Tuple[Optional[Path], str]:
    r = subprocess.run(["bash", str(REPO / "scripts" / "host_env.sh"), "--path"], capture_output=True,
                       text=True, timeout=60)
    env = Path(r.stdout.strip())
    if r.returncode != 0 or not (env / ".complete").exists():
        return None, f"the ComfyUI-like environment is not built ({env}): run bash scripts/host_env.sh"
    r = subprocess.run([str(env / "bin" / "python"), "-c",
                        "import sys, sysconfig; print(sys.version_info[:2]); print(sysconfig.get_paths()['purelib'])"],
                       capture_output=True, text=True, timeout=60, env=_environ())
    version, site = r.stdout.split("\n", 1)
    if version != str(sys.version_info[:2]):
        return None, f"the ComfyUI-like environment runs Python {version}, these tests {sys.version_info[:2]}"
    return Path(site.strip()), ""


@pytest.fixture(scope="module")
def bases(index, tmp_path_factory) -> Bases:
    root = tmp_path_factory.mktemp("existing-torch")
    cpu_site = Path(metadata.distribution("torch").locate_file(""))
    # a user's environment: torch, and the numpy and Pillow the core already brought
    assert "torchvision" not in link_closure(cpu_site, ["torch", "numpy", "pillow"], root / "cpu")
    host_site, reason = _host_site()
    if host_site is None:
        return Bases(root / "cpu", None, None, reason)
    assert {"torch", "torchvision", "numpy", "pillow"} <= link_closure(
        host_site, ["torch", "torchvision", "numpy", "pillow"], root / "host")
    assert "torchvision" not in link_closure(host_site, ["torch", "numpy", "pillow"], root / "host-torch")
    return Bases(root / "cpu", root / "host", root / "host-torch", "")


def _host(bases: Bases, which: str) -> Path:
    base = getattr(bases, which)
    if base is None:
        pytest.skip(bases.host_reason)
    return base


SPANDREL_RUN = r"""
import json, sys, torch, spandrel, torchvision, mambairv2
import mambairv2.integrations.spandrel as mambairv2_spandrel
mambairv2_spandrel.install()
descriptor = spandrel.ModelLoader().load_from_file(sys.argv[1])
x = torch.rand(1, 3, 16, 20, generator=torch.Generator().manual_seed(0))
with torch.inference_mode():
    got = descriptor(x)
    want = mambairv2.load_model(sys.argv[1])(x).clamp(0, 1)
print(json.dumps({"arch": descriptor.architecture.id, "scale": descriptor.scale, "shape": list(got.shape),
                  "err": (got - want).abs().max().item(), "mambairv2": mambairv2.__file__,
                  "spandrel": spandrel.__file__, "torchvision": torchvision.__file__}))
"""


def _spandrel_runs(env: FreshEnv, tiny: Path) -> None:
    r = env.run("-c", SPANDREL_RUN, str(tiny), MAMBAIRV2_IMPLEMENTATION="pytorch",
                MAMBAIRV2_CACHE_DIR=str(env.root / "cache"))
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["arch"] == "MambaIRv2" and out["scale"] == 2 and out["shape"] == [1, 3, 32, 40], out
    assert out["err"] <= 1e-5, out
    for module in ("mambairv2", "spandrel"):  # from this install, not the source tree
        assert Path(out[module]).is_relative_to(env.site), out


def test_spandrel_extra_beside_torch_and_torchvision(wheel, bases, tiny, fresh):
    """ComfyUI's and chaiNNer's case: torch and torchvision already there."""
    env = fresh(_host(bases, "host"))
    installed = install(env, f"{wheel}[spandrel]")
    assert "spandrel" in installed
    _spandrel_runs(env, tiny)


def test_spandrel_extra_with_only_torch_replaces_it_unless_torch_is_pinned(wheel, bases, fresh):
    """torch without torchvision: [spandrel] needs torchvision, and pip takes the newest one;
    when that one requires another torch, pip replaces the user's torch (the hazard the README
    names). With torch pinned to the installed version (the README's command) pip picks a
    torchvision for that torch instead. Both resolved with --dry-run."""
    env = fresh(bases.cpu)
    mine = env.snapshot()["torch"]["version"]

    pinned = env.root / "pinned.json"
    r = env.pip("install", "--dry-run", "-q", "--report", str(pinned), f"{wheel}[spandrel]", f"torch=={mine}")
    assert r.returncode == 0, r.stderr[-3000:]
    plan = _report_names(pinned)
    assert "torch" not in plan and "torchvision" in plan and "spandrel" in plan, sorted(plan)
    assert not [n for n in plan if n.startswith(HEAVY) and n != "torchvision"], sorted(plan)
    print(f"torch {mine} pinned: pip picks torchvision {plan['torchvision']['metadata']['version']}")

    plain = env.root / "plain.json"
    r = env.pip("install", "--dry-run", "-q", "--report", str(plain), f"{wheel}[spandrel]")
    assert r.returncode == 0, r.stderr[-3000:]
    plan = _report_names(plain)
    newest = plan["torchvision"]["metadata"]
    wants = [Requirement(t).specifier for t in newest.get("requires_dist", []) if Requirement(t).name == "torch"]
    mismatch = not all(spec.contains(Version(mine), prereleases=True) for spec in wants)
    # pip replaces torch exactly when the newest torchvision does not accept it
    assert ("torch" in plan) == mismatch, (mine, newest["version"], [str(s) for s in wants], sorted(plan))
    if mismatch:
        print(f"unpinned: torch {mine} would be replaced by torch {plan['torch']['metadata']['version']} "
              f"(torchvision {newest['version']} wants torch {', '.join(map(str, wants))}) and "
              f"{sum(n.startswith(('nvidia', 'cuda')) for n in plan)} CUDA libraries")


def test_spandrel_extra_with_torch_pinned_installs_a_working_torchvision(wheel, bases, tiny, fresh):
    """The README's command for an environment with torch from the package index but no
    torchvision, installed for real: torch stays, a matching torchvision comes, spandrel works."""
    env = fresh(_host(bases, "host_torch"))
    before = env.snapshot()
    assert before["torchvision"] is None
    mine = before["torch"]["version"]
    installed = install(env, f"{wheel}[spandrel]", f"torch=={mine}", allowed={"torchvision"})
    assert "torchvision" in installed and "spandrel" in installed
    assert env.snapshot()["torch"] == before["torch"]
    _spandrel_runs(env, tiny)


def test_hub_extra_downloads_and_lists_offline(wheel, bases, tiny, fresh):
    env = fresh(bases.cpu)
    assert "huggingface-hub" in install(env, f"{wheel}[hub]")
    data = tiny.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    with HubStandIn(HUB_REPO, {f"MambaIRv2_ckpt/{TINY_NAME}.pth": data}) as hub:
        # the stand-in is local: no proxy; caches inside the test's folder
        settings = dict(HF_HOME=str(env.root / "hf"), MAMBAIRV2_CACHE_DIR=str(env.root / "mc"), proxies=False,
                        HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1", HF_ENDPOINT=hub.endpoint)
        r = env.command("download", "--list", **settings)
        assert r.returncode == 0 and r.stdout.split("\t")[0] == TINY_NAME, r.stderr[-2000:]
        r = env.command("download", TINY_NAME, **settings)
        assert r.returncode == 0 and sha in r.stdout, r.stderr[-2000:]
        served = len(hub.requests)
        r = env.command("download", "--list", HF_HUB_OFFLINE="1", **settings)
        assert r.returncode == 0 and r.stdout.startswith(TINY_NAME), (r.stdout, r.stderr)
        assert len(hub.requests) == served, hub.requests[served:]


def test_onnx_extra_exports_and_verifies(wheel, bases, tiny, fresh):
    env = fresh(bases.cpu)
    assert {"onnx", "onnxscript", "onnxruntime"} <= set(install(env, f"{wheel}[onnx]"))
    out = env.root / "tiny.onnx"
    # PyTorch's own operators for the comparison: the C kernels (built on first use) are the
    # wheel test's concern and would take a minute to build here
    r = env.command("export", str(tiny), "-o", str(out), "--size", "24x20", OMP_NUM_THREADS="1",
                    MAMBAIRV2_IMPLEMENTATION="pytorch", MAMBAIRV2_CACHE_DIR=str(env.root / "cache"))
    assert r.returncode == 0, r.stderr[-3000:]
    errors = [float(line.rsplit(" ", 1)[1]) for line in r.stdout.splitlines() if "max abs error" in line]
    assert len(errors) == 1 and errors[0] <= 1e-4 and out.stat().st_size > 0, r.stdout


def test_app_extra_serves_the_page(wheel, bases, fresh):
    env = fresh(bases.cpu)
    pillow = env.snapshot()["Pillow"]
    installed = install(env, f"{wheel}[app]", allowed={"pillow"})
    assert "gradio" in installed
    # Pillow may change only where gradio's own metadata leaves pip no choice (every gradio
    # release caps Pillow; README and docs/integrations.md say so)
    wants = [Requirement(r) for r in installed["gradio"]["metadata"].get("requires_dist", [])]
    cap = next(r.specifier for r in wants if canonicalize_name(r.name) == "pillow")
    after = env.snapshot()["Pillow"]
    assert after == pillow or (not cap.contains(pillow["version"]) and cap.contains(after["version"])), (
        pillow, after, str(cap))
    start = time.monotonic()
    proc = start_app([str(env.python.parent / "mambairv2"), "app", "--port", "0"], cwd=str(env.root),
                     env=_environ(PYTHONUNBUFFERED="1", MAMBAIRV2_CACHE_DIR=str(env.root / "cache")))
    seen: list = []
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        line = read_until(proc, sel, "running on http://127.0.0.1:", seen, start + START_TIMEOUT_S)
        assert line, "".join(seen)
        url = line.split("running on ")[1].split()[0]
        assert read_until(proc, sel, "ready after", seen, start + START_TIMEOUT_S), "".join(seen)
        with urllib.request.urlopen(url, timeout=60) as response:
            status, body = response.status, response.read()
        assert status == 200 and b"MambaIRv2" in body and b"is starting" not in body
    finally:
        interrupt_and_close(proc)


TRITON_RUN = r"""
import json, torch, triton, mambairv2
from mambairv2.ops import scan_triton, selective_scan
g = torch.Generator().manual_seed(0)
b, d, n, length = 1, 4, 4, 8
u, delta = torch.randn(b, d, length, generator=g), torch.rand(b, d, length, generator=g)
A, D = -torch.rand(d, n, generator=g), torch.randn(d, generator=g)
B, C = torch.randn(b, n, length, generator=g), torch.randn(b, n, length, generator=g)
want = selective_scan(u, delta, A, B, C, D, backend="reference")
got = selective_scan(u, delta, A, B, C, D, backend="triton")
print(json.dumps({"interpreted": scan_triton.interpreting(), "err": (got - want).abs().max().item(),
                  "triton": triton.__file__, "mambairv2": mambairv2.__file__}))
"""


def test_triton_extra_imports_and_its_scan_runs_interpreted(wheel, bases, fresh):
    """Triton's kernels need a GPU; here its CPU interpreter runs the package's Triton scan."""
    env = fresh(bases.cpu)
    install(env, f"{wheel}[triton]", allowed={"triton"})
    r = env.run("-c", TRITON_RUN, TRITON_INTERPRET="1")
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["interpreted"] and out["err"] <= 1e-5, out
    # from this install, or from the existing environment where its torch already required triton
    assert any(Path(out["triton"]).is_relative_to(where) for where in (env.site, bases.cpu)), out
    assert Path(out["mambairv2"]).is_relative_to(env.site), out
