"""Shared fixtures. Shared data (``../shared`` next to the checkout, or ``$MAMBAIRV2_SHARED``)
is read in place; tests that need it skip with a clear reason where it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MAMBAIRV2_SHARED", REPO.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """Path inside the shared folder; skips the calling test if it does not exist."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (set MAMBAIRV2_SHARED to the shared folder)")
    return path


def _torchrun_available() -> bool:
    try:
        import torch.distributed.run  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return torch.distributed.is_available() and torch.distributed.is_gloo_available()


#: marks a test that launches torchrun (2 CPU ranks over gloo)
needs_torchrun = pytest.mark.skipif(not _torchrun_available(),
                                    reason="torch.distributed with gloo (torchrun) is not available")


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
