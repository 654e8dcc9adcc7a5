"""Warm start: initialise a model from another checkpoint (e.g. x3/x4 from x2): every tensor
whose name and shape match is copied; the upsampling head is re-initialised when the source
has another scale."""
from __future__ import annotations

import sys
from typing import Tuple

import torch

from ..checkpoint import CheckpointError, read_state_dict
from ..model import detect_config
from ..model.heads import HEAD_PREFIXES
from ..model import MambaIRv2



def warm_start(model: MambaIRv2, path: str, head: str = "auto", verbose: bool = True) -> Tuple[int, int]:
    """Copies matching tensors of checkpoint ``path`` into ``model``.

    Args:
        head: ``auto`` (load the head only when the source has the same scale), ``load``
            (load every tensor that fits) or ``skip`` (never load the head).
    Returns:
        ``(tensors loaded, tensors of the model left as initialised)``.
    Raises:
        CheckpointError: unreadable file, or nothing in it fits the model.
    """
    sd, _ = read_state_dict(path)
    try:
        src_scale = detect_config(sd).upscale
    except CheckpointError:
        src_scale = None
    skip_head = head == "skip" or (head == "auto" and src_scale != model.config.upscale)
    own = model.state_dict()
    new = {}
    for k, v in sd.items():
        if k not in own or tuple(v.shape) != tuple(own[k].shape):
            continue
        if skip_head and k.startswith(HEAD_PREFIXES):
            continue
        new[k] = v.to(own[k].dtype)
    if not new:
        raise CheckpointError(f"{path}: no tensor fits the model (another architecture?)")
    with torch.no_grad():
        for k, v in new.items():
            own[k].copy_(v)
    left = len(own) - len(new)
    if verbose:
        what = "head re-initialised" if skip_head else "head loaded where it fits"
        print(f"warm start from {path}: {len(new)}/{len(own)} tensors loaded ({what}; "
              f"{left} left as initialised)", file=sys.stderr)
    return len(new), left
