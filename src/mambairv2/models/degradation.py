"""What a network was trained for beyond what its tensors say: the real-world SR degradations.

A bicubic-trained and a real-world-trained x4 network have identical state dicts, so the fact is
carried by the configuration's ``degradation`` field, which both families' configs declare
(``None``: the task's standard synthetic degradation, e.g. bicubic for SR; ``"realsr"``:
Real-ESRGAN's second-order degradations). It does not change the network: configs that differ
only there compare equal, and it is stored in a checkpoint's configuration only when set, so the
released models' stored configurations are unchanged. Our trainer sets it from
``data.task: realsr``; the authors' released real-world checkpoints (``.pth`` files without a
stored configuration) are recognised by their released file names.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, Optional, Union

from ..errors import ConfigError

#: the values of the ``degradation`` field besides None
DEGRADATIONS = ("realsr",)
#: how a person calls each task a model can be for (``realsr``: SR trained on real-world degradations)
TASK_NAMES: Dict[str, str] = {"sr": "SR", "realsr": "real-world SR", "denoise": "denoising",
                              "jpeg": "JPEG artifact removal"}
#: the authors' released real-world SR checkpoints' file names (README links ``MambaIR_realSR``;
#: ``MambaIR-real`` as users load it, csguoh/MambaIR #116), with the MambaIRv2 spelling alike
AUTHORS_REALSR_NAME = re.compile(r"^mambair(v2)?[-_]?real(sr)?([-_]?x4)?$", re.IGNORECASE)


def check_degradation(degradation: Optional[str], upscale: int) -> None:
    """ConfigError for an unknown value, or a real-world degradation on a network that does not upscale."""
    if degradation is None:
        return
    if degradation not in DEGRADATIONS:
        raise ConfigError(f"degradation must be null or one of {DEGRADATIONS}, got {degradation!r}",
                          field="degradation")
    if upscale < 2:
        raise ConfigError(f"degradation {degradation!r} is for super-resolution networks (upscale >= 2)",
                          field="degradation")


def model_task(config: Any) -> str:
    """What a network of ``config`` restores: ``realsr`` for a real-world SR model, else the
    network's own task (``sr``, ``denoise``, ``jpeg``)."""
    return "realsr" if getattr(config, "degradation", None) == "realsr" else config.task


def task_name(task: str) -> str:
    """``real-world SR`` for ``realsr``; the task's name for a person (the code itself if unknown)."""
    return TASK_NAMES.get(task, task)


def from_file_name(config: Any, path: Union[str, Path]) -> Any:
    """``config`` marked ``realsr`` when ``path`` is named as the authors' real-world SR
    checkpoint and the network upscales; unchanged otherwise."""
    if config.degradation is None and config.upscale > 1 and AUTHORS_REALSR_NAME.match(Path(path).stem):
        return config.replace(degradation="realsr")
    return config
