"""What every ASSM computes internally — routes, SGN order, prompts, the scan's C — read with
forward pre-hooks while the model runs (the model is not modified).

The paper's figures look inside the network: this module hooks MambaIRv2's ASSM and selective
scan, which it gets from the family record (:attr:`mambairv2.models.family.Family.parts`);
families without them (MambaIR v1) are refused with a one-line :class:`AnalysisError`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import torch
import torch.nn.functional as F

from ..errors import MambaIRv2Error
from ..models import family_of

Tensor = torch.Tensor


class AnalysisError(MambaIRv2Error, ValueError):
    """An analysis that does not apply to the model given (one line)."""


@dataclass
class ASSMRecord:
    """One ASSM layer for a batch of one; tokens in raster order of the padded image unless
    said otherwise.

    ``name``: module path; ``size``: padded (H, W); ``features``: L×c input tokens (after
    ``norm3``); ``groups``: L route (prompt) index; ``order``/``inverse``: the SGN permutation
    (scan position → raster token) and its inverse; ``pool``: T×N prompt pool; ``prompt``: L×N
    prompt per token; ``C``: L×N the scan's C of each token (before the prompt is added)."""

    name: str
    size: Tuple[int, int]
    features: Tensor
    groups: Tensor
    order: Tensor
    inverse: Tensor
    pool: Tensor
    prompt: Tensor
    C: Tensor


def capture_assm(model: torch.nn.Module, x: Tensor) -> Tuple[Tensor, List[ASSMRecord]]:
    """Runs ``model`` on ``x`` (``1×C×H×W``, no gradient) and returns its output and one
    :class:`ASSMRecord` per ASSM layer, in forward order. Routing is recomputed with the
    module's own ``route_tokens`` (deterministic in eval mode with argmax routing)."""
    parts = family_of(model).parts
    if "ASSM" not in parts:
        raise AnalysisError(f"{family_of(model).display} has no ASSM (no attentive state space, no SGN "
                            "routing): the attention and SGN figures need a MambaIRv2 model")
    ASSM, SelectiveScan, permute_tokens = parts["ASSM"], parts["SelectiveScan"], parts["permute_tokens"]
    if x.shape[0] != 1:
        raise ValueError("capture_assm takes a batch of one image")
    records: List[ASSMRecord] = []
    pending: dict = {}

    def assm_pre(mod: ASSM, args) -> None:
        tokens, size, embedding_a = args[:3]
        prompt, groups, order, inverse = mod.route_tokens(tokens, embedding_a)
        pending.update(size=tuple(size), features=tokens[0].detach().clone(), groups=groups[0], order=order[0],
                       inverse=inverse[0], pool=(mod.embeddingB.weight @ embedding_a).detach(),
                       prompt=prompt[0].detach())

    def scan_pre(mod: SelectiveScan, args) -> None:
        xs = args[0]
        c_scan = F.linear(xs, mod.x_proj_weight[0])[..., mod.dt_rank + mod.d_state:]
        c_raster = permute_tokens(c_scan, pending["inverse"][None])[0]
        records.append(ASSMRecord(name=names[mod], C=c_raster.detach(), **pending))

    names = {m: n for n, m in model.named_modules()}
    handles = [m.register_forward_pre_hook(assm_pre) for m in model.modules() if isinstance(m, ASSM)]
    handles += [m.register_forward_pre_hook(scan_pre) for m in model.modules() if isinstance(m, SelectiveScan)]
    try:
        with torch.no_grad():
            y = model(x)
    finally:
        for h in handles:
            h.remove()
    return y, records
