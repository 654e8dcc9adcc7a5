"""pytest plugin for a spandrel checkout (``-p spandrel_clash_plugin``): every state dict that
spandrel's ``assert_loads_correctly`` builds is also offered to the MambaIRv2 and MambaIR
detectors; a claim of another architecture's state dict fails that test. The summary says how
many state dicts were checked."""
from __future__ import annotations

from typing import Any, Dict

CHECKED: Dict[str, int] = {"state_dicts": 0, "architectures": 0}
OURS = ("MambaIRv2", "MambaIR")


def pytest_configure(config: Any) -> None:
    import tests.util as util
    from spandrel.architectures.MambaIR import MambaIRArch
    from spandrel.architectures.MambaIRv2 import MambaIRv2Arch

    detectors = (MambaIRv2Arch(), MambaIRArch())
    original = util.assert_loads_correctly

    def checked(arch: Any, *models: Any, **kwargs: Any) -> None:
        original(arch, *models, **kwargs)
        if arch.id in OURS:
            return
        CHECKED["architectures"] += 1
        for make in models:
            state_dict = make().state_dict()
            CHECKED["state_dicts"] += 1
            claims = [d.id for d in detectors if d.detect(state_dict)]
            assert not claims, f"{claims} claim a {arch.id} state dict"

    util.assert_loads_correctly = checked


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.write_line(
        f"clash check: {CHECKED['state_dicts']} state dicts of {CHECKED['architectures']} other "
        "architectures offered to the MambaIRv2 and MambaIR detectors")
