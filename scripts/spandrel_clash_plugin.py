"""pytest plugin for a spandrel checkout (``-p spandrel_clash_plugin``): every state dict that
spandrel's ``assert_loads_correctly`` loads (the ``state_dict()`` and its safetensors round trip
of each model) is also offered to the MambaIRv2 and MambaIR
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

    class Recording:
        """The architecture under test, offering each state dict it loads to both detectors."""

        def __init__(self, arch: Any) -> None:
            self._arch = arch

        def __getattr__(self, name: str) -> Any:
            return getattr(self._arch, name)

        def load(self, state_dict: Any) -> Any:
            CHECKED["state_dicts"] += 1
            claims = [d.id for d in detectors if d.detect(state_dict)]
            assert not claims, f"{claims} claim a {self._arch.id} state dict"
            return self._arch.load(state_dict)

    def checked(arch: Any, *models: Any, **kwargs: Any) -> None:
        if arch.id not in OURS:
            CHECKED["architectures"] += 1
            arch = Recording(arch)
        original(arch, *models, **kwargs)

    util.assert_loads_correctly = checked


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.write_line(
        f"clash check: {CHECKED['state_dicts']} state dicts of {CHECKED['architectures']} other "
        "architectures offered to the MambaIRv2 and MambaIR detectors")
