"""The spandrel architecture folders proposed upstream (``integrations/spandrel_upstream/folders``):
they are what ``scripts/make_spandrel_upstream.py`` makes from the current code, byte for byte,
and, loaded into the installed spandrel as ``spandrel.architectures.MambaIRv2`` / ``.MambaIR``,
every golden checkpoint goes through spandrel's ``ModelLoader`` and equals ``load_model`` within
1e-5 (clamped) under ``torch.inference_mode()``."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from conftest import REPO, shared_path
from spandrel_support import import_spandrel

FOLDERS = REPO / "integrations" / "spandrel_upstream" / "folders"
V2_CASES = ["light_x2", "light_x3", "light_x4", "full_x2", "full_x3", "full_x4", "full_denoise",
            "full_jpeg_gray", "full_real_x4"]
V1_CASES = ["light_x2", "light_x4", "classic_x2", "classic_x3", "classic_x4", "denoise", "jpeg_gray",
            "realsr_x4"]
GOLDEN = [("golden", c) for c in V2_CASES] + [("golden_v1", c) for c in V1_CASES]


def test_folders_are_what_the_script_makes():
    pytest.importorskip("ruff", reason="the generator formats with ruff 0.5.0 (pip install ruff==0.5.0)")
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "make_spandrel_upstream.py"), "--check"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def load_upstream(family: str) -> ModuleType:
    """The generated folder imported as ``spandrel.architectures.<family>`` (where spandrel would
    hold it), leaving spandrel's registry as it is."""
    import_spandrel()
    name = f"spandrel.architectures.{family}"
    if name in sys.modules:
        return sys.modules[name]
    folder = FOLDERS / family
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def loader():
    spandrel = import_spandrel()
    registry = spandrel.ArchRegistry()
    # spandrel's own architectures, then the two new ones (as main_registry.py would list them)
    registry.add(*[a for a in spandrel.MAIN_REGISTRY.architectures("insertion")
                   if a.architecture.id not in ("MambaIRv2", "MambaIR")])
    registry.add(spandrel.ArchSupport.from_architecture(load_upstream("MambaIRv2").MambaIRv2Arch()),
                 spandrel.ArchSupport.from_architecture(load_upstream("MambaIR").MambaIRArch()))
    return spandrel.ModelLoader(registry=registry)


@pytest.mark.parametrize("folder,case", GOLDEN, ids=[f"{f}-{c}" for f, c in GOLDEN])
def test_golden_through_spandrel_model_loader(loader, folder, case):
    from mambairv2 import load_model

    path = shared_path(folder, f"{case}.pth")
    # 20×24 of the 37×45 input: still padded to the window (16), a quarter of the time
    x = torch.load(shared_path(folder, f"{case}_io.pt"), weights_only=True)["input_a"].float()[..., :20, :24]
    with torch.inference_mode():
        desc = loader.load_from_file(str(path)).eval()
        got = desc(x)
    family = "MambaIR" if folder == "golden_v1" else "MambaIRv2"
    assert desc.architecture.id == family
    assert type(desc.model).__module__ == f"spandrel.architectures.{family}.__arch.{family}"
    with torch.no_grad():
        expected = load_model(path)(x).clamp(0, 1)
    assert got.shape == expected.shape
    err = (got - expected).abs().max().item()
    print(f"{folder}/{case}: max |spandrel upstream - load_model| = {err:.3g}")
    assert err <= 1e-5, (case, err)


def test_upstream_code_imports_only_torch_and_spandrel():
    import ast

    allowed = {"torch", "spandrel", "typing_extensions", "math", "re", "dataclasses", "typing",
               "__future__"}
    for path in FOLDERS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                mods = [node.module or ""]
            else:
                continue
            assert {m.split(".")[0] for m in mods} <= allowed, (path, mods)


def test_bfloat16_runs_with_errors_of_its_size(loader):
    path = shared_path("golden", "light_x2.pth")
    x = torch.load(shared_path("golden", "light_x2_io.pt"), weights_only=True)["input_a"].float()[..., :20, :24]
    with torch.inference_mode():
        desc = loader.load_from_file(str(path)).eval()
        ref = desc(x)
        desc.bfloat16()
        got = desc(x.bfloat16()).float()
    assert desc.supports_bfloat16 and torch.isfinite(got).all()
    assert (got - ref).abs().mean().item() < 2e-2


def test_the_project_defers_to_spandrels_own_architectures(monkeypatch):
    """Where spandrel ships the families (here: a registry holding the generated folders, as a
    future spandrel would), ``install()`` adds nothing and checkpoints load with spandrel's."""
    spandrel = import_spandrel()
    from mambairv2.integrations import spandrel as ours

    future = spandrel.ArchRegistry()
    future.add(*[a for a in spandrel.MAIN_REGISTRY.architectures("insertion")
                 if a.architecture.id not in ours.ARCH_IDS])
    future.add(spandrel.ArchSupport.from_architecture(load_upstream("MambaIRv2").MambaIRv2Arch()),
               spandrel.ArchSupport.from_architecture(load_upstream("MambaIR").MambaIRArch()))
    monkeypatch.setattr(spandrel, "MAIN_REGISTRY", future)
    assert ours.builtin_ids() == ["MambaIRv2", "MambaIR"]
    assert ours.install() == [] and len(future) == len(spandrel.MAIN_REGISTRY)
    desc = future.load(torch.load(shared_path("golden_v1", "light_x2.pth"), weights_only=True)["params"])
    assert type(desc.model).__module__ == "spandrel.architectures.MambaIR.__arch.MambaIR"


def test_no_other_spandrel_architecture_claims_the_golden_state_dicts(loader):
    """Registry order cannot matter: of all of spandrel's detectors plus the two new ones, only
    the family's own accepts each golden state dict."""
    for folder, case in GOLDEN:
        sd = torch.load(shared_path(folder, f"{case}.pth"), weights_only=True)["params"]
        claims = [a.architecture.id for a in loader.registry.architectures("detection") if a.detect(sd)]
        assert claims == ["MambaIR" if folder == "golden_v1" else "MambaIRv2"], (case, claims)
