"""The network configuration of a MambaIRv2 state dict, read from its keys and shapes alone."""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping

import torch

from .config import MambaIRv2Config
from ...errors import CheckpointError
from ..layers.depths import group_depths
from ..layers.heads import detect_head


def owns_state_dict(sd: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``sd`` looks like MambaIRv2's: attentive layers with window attention."""
    return any(k.startswith("layers.") and ".residual_group.layers." in k and k.endswith(".wqkv.weight")
               for k in sd)


def detect_config(sd: Mapping[str, torch.Tensor], source: str = "state dict") -> MambaIRv2Config:
    """Infers the full network configuration from a state dict's keys and shapes (``source``
    names the file in messages of callers; detection messages are about the tensors)."""
    required = ("conv_first.weight", "patch_embed.norm.weight", "layers.0.residual_group.layers.0.wqkv.weight")
    missing = [k for k in required if k not in sd]
    if missing:
        raise CheckpointError(f"not a MambaIRv2 state dict: missing {', '.join(missing)} "
                              f"(first keys: {', '.join(list(sd)[:3])})")
    embed_dim, in_chans = sd["conv_first.weight"].shape[:2]
    try:
        depths = group_depths(sd, "layers")
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    groups = range(len(depths))
    p0 = "layers.0.residual_group.layers.0."
    try:
        heads = tuple(int(sd[f"layers.{g}.residual_group.layers.0.win_mhsa.relative_position_bias_table"].shape[1])
                      for g in groups)
        table = sd[p0 + "win_mhsa.relative_position_bias_table"].shape[0]
        window_size = (int(round(math.sqrt(table))) + 1) // 2
        hidden, d_state = sd[p0 + "assm.selectiveScan.A_logs"].shape
    except KeyError as exc:
        raise CheckpointError(f"not a MambaIRv2 state dict: missing {exc.args[0]}") from None
    switches = _switches(sd, p0, int(hidden), int(d_state))
    inner_rank = switches.pop("inner_rank", 32)
    num_tokens = switches.pop("num_tokens", 64)
    if p0 + "convffn1.sg.norm.weight" in sd:
        ffn, kernel = "gated", 5
    else:
        ffn = "conv"
        dw = sd.get(p0 + "convffn1.dwconv.depthwise_conv.0.weight")
        if dw is None:
            raise CheckpointError("not a MambaIRv2 state dict: no FFN weights in the first layer")
        kernel = int(dw.shape[-1])
    try:
        upsampler, upscale = detect_head(sd, int(in_chans))
    except ValueError as exc:
        raise CheckpointError(f"not a MambaIRv2 state dict: {exc}") from None
    resi = "3conv" if "layers.0.conv.0.weight" in sd else "1conv"
    # the width itself, not only a ratio: int(embed_dim · hidden/embed_dim) can fall one short
    ratio = int(hidden) / int(embed_dim)
    exact = None if int(int(embed_dim) * ratio) == int(hidden) else int(hidden)
    try:
        return MambaIRv2Config(
            embed_dim=int(embed_dim), d_state=int(d_state), depths=depths,
            num_heads=heads, window_size=window_size, inner_rank=int(inner_rank),
            num_tokens=int(num_tokens), convffn_kernel_size=kernel, mlp_ratio=ratio, hidden_dim=exact,
            upscale=upscale, in_chans=int(in_chans), upsampler=upsampler, resi_connection=resi, ffn=ffn,
            **switches)
    except ValueError as exc:
        raise CheckpointError(f"inconsistent MambaIRv2 state dict: {exc}") from None


def _switches(sd: Mapping[str, torch.Tensor], p0: str, hidden: int, d_state: int) -> Dict[str, Any]:
    """The ablation switches the tensors show, with T and r where they are stored. Switches
    that own no parameters (``sgn`` with ASE, ``prompt_order``, B vs C, Δ vs y) are only in a
    checkpoint's stored configuration; a plain state dict reads as their released values."""
    out: Dict[str, Any] = {}
    basis = sd.get("embeddingA.weight", sd.get(p0 + "embeddingA.weight"))
    if "embeddingA.weight" in sd:
        out["prompt_basis"] = "shared"
    if p0 + "assm.embeddingB.weight" in sd:
        if basis is None:
            raise CheckpointError(f"not a MambaIRv2 state dict: missing {p0}embeddingA.weight")
        out["num_tokens"], out["inner_rank"] = (int(v) for v in sd[p0 + "assm.embeddingB.weight"].shape)
        if int(basis.shape[1]) != d_state:
            if int(basis.shape[1]) != hidden:
                raise CheckpointError(f"inconsistent MambaIRv2 state dict: prompt basis {tuple(basis.shape)}")
            raise CheckpointError("a MambaIRv2 ablation with prompts of the scan's width (prompt_position "
                                  "delta or y): the position is in the configuration a .safetensors "
                                  "checkpoint stores, not in a plain state dict")
        return out
    out["ase"] = False
    route = sd.get(p0 + "assm.route.2.weight")
    if route is None:
        out["sgn"] = False
    else:
        out["num_tokens"] = int(route.shape[0])
    return out
