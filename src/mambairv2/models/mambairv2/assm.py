"""Attentive state-space module (ASSM, paper Sec. 4.2, Fig. 3a): ASE (prompts added to the scan's
output matrix C, Eq. 7) and SGN (tokens reordered so that tokens routed to the same prompt are
neighbours in the scan: SGN-unfold before the scan, SGN-fold after it, Fig. 3c)."""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...ops import LayerNorm, conv_gate, linear, linear_act, selective_scan, sgn_order, sgn_route
from ..layers.layout import image_to_tokens, tokens_to_image

Tensor = torch.Tensor

ROUTING_MODES = ("argmax", "gumbel")


class SelectiveScan(nn.Module):
    """One-direction selective scan block (released name ``selectiveScan``).

    Parameters keep the released names and shapes: ``x_proj_weight`` (1×(R+2N)×D),
    ``dt_projs_weight`` (1×D×R), ``dt_projs_bias`` (1×D), ``A_logs`` (D×N), ``Ds`` (D).
    """

    def __init__(self, d_inner: int, d_state: int, dt_min: float = 1e-3, dt_max: float = 0.1,
                 dt_init_floor: float = 1e-4) -> None:
        super().__init__()
        self.d_inner = d_inner
        self.d_state = d_state
        self.dt_rank = math.ceil(d_inner / 16)
        self.x_proj_weight = nn.Parameter(torch.empty(1, self.dt_rank + 2 * d_state, d_inner))
        self.dt_projs_weight = nn.Parameter(torch.empty(1, d_inner, self.dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(1, d_inner))
        self.A_logs = nn.Parameter(torch.empty(d_inner, d_state))
        self.Ds = nn.Parameter(torch.empty(d_inner))
        self._dt_range = (dt_min, dt_max, dt_init_floor)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The released initialisation (Mamba's dt/A/D init; x_proj as a default Linear)."""
        dt_min, dt_max, floor = self._dt_range
        nn.init.kaiming_uniform_(self.x_proj_weight[0], a=math.sqrt(5))
        std = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_projs_weight, -std, std)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=floor)
        self.dt_projs_bias.copy_((dt + torch.log(-torch.expm1(-dt))).unsqueeze(0))
        a = torch.arange(1, self.d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_logs.copy_(torch.log(a))
        self.Ds.fill_(1.0)

    def forward(self, x: Tensor, prompt: Optional[Tensor], position: str = "C") -> Tensor:
        """The attentive state-space equation (Eq. 7): h_i = Ā h_{i−1} + B̄ x_i,
        y_i = (C + P) h_i + D x_i. ``x``: ``B×L×D`` (already in scan order); ``prompt``: ``B×L×N``
        (P, one prompt per token) added to C as is, or None (no ASE). ``position`` (an ablation,
        Table 2) adds it to B, to Δ before its softplus, or to y instead (``B×L×D`` prompts there).
        Returns ``B×L×D``."""
        x_dbl = F.linear(x, self.x_proj_weight[0])  # B×L×(R+2N)
        dt, b_, c_ = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        if prompt is not None and position == "C":
            c_ = c_ + prompt  # ASE: the prompt joins the scan's output matrix C (Eq. 6)
        elif prompt is not None and position == "B":
            b_ = b_ + prompt
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        delta_proj: Optional[Tensor] = self.dt_projs_weight[0]
        if prompt is not None and position == "delta":
            dt, delta_proj = F.linear(dt, self.dt_projs_weight[0]) + prompt, None
        # Δ = softplus(dt_projs_weight · dt + bias): the rank-R projection is passed to the scan
        y = selective_scan(
            x.transpose(1, 2), dt.transpose(1, 2), -torch.exp(self.A_logs.to(dtype)),
            b_.transpose(1, 2), c_.transpose(1, 2), self.Ds.to(dtype),
            delta_bias=self.dt_projs_bias.view(-1).to(dtype), delta_softplus=True,
            delta_proj=delta_proj)
        y = y.transpose(1, 2).to(x.dtype)
        return y + prompt if prompt is not None and position == "y" else y


def gumbel_softmax_hard(logits: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """Straight-through hard Gumbel-softmax (τ = 1) along the last dim, as
    ``F.gumbel_softmax(hard=True)`` but with an optional generator for seeded sampling."""
    gumbels = -torch.empty_like(logits).exponential_(generator=generator).log()
    y_soft = (logits + gumbels).softmax(-1)
    index = y_soft.argmax(-1, keepdim=True)
    y_hard = torch.zeros_like(logits).scatter_(-1, index, 1.0)
    return y_hard - y_soft.detach() + y_soft


def permute_tokens(x: Tensor, index: Tensor) -> Tensor:
    """``x[b, index[b, l], :]`` for ``x``: ``B×L×C``, ``index``: ``B×L``."""
    b, length, c = x.shape
    # one row gather over the flattened batch: several times faster than torch.gather on CPUs
    rows = index + torch.arange(0, b * length, length, device=index.device).unsqueeze(1)
    return x.reshape(b * length, c).index_select(0, rows.reshape(-1)).view(b, length, c)


class ASSM(nn.Module):
    """Attentive state-space module.

    - Prompt pool P = M·N (Eq. 6, low-rank decoupling): M is ``embeddingB`` (T×r, this block's),
      N is the layer's ``embeddingA`` (r×d, passed in); T = ``num_tokens``, r = ``inner_rank``.
    - Routing: ``route`` (linear, GELU, linear, LogSoftmax) gives each token's log-probability
      over the T prompts; the chosen prompt is the token's instance prompt P_i and its semantic label.
    - Positional encoding: ``in_proj`` then ``CPE`` (depthwise 3×3) as a sigmoid gate.
    - SGN-unfold: tokens sorted (stably) by label; ASE scan with C + P (Eq. 7); SGN-fold: the
      inverse permutation; then ``out_norm`` and ``out_proj``.

    Routing: in training, straight-through hard Gumbel-softmax; in eval, one-hot(argmax) unless
    ``routing`` is ``"gumbel"`` (the released stochastic inference; ``generator`` seeds it).

    Ablations (see :class:`MambaIRv2Config`): ``ase`` False drops the prompts (no
    ``embeddingB``), ``sgn`` False scans in raster order, neither keeps no ``route``;
    ``prompt_position`` and ``prompt_order`` say where and in which order the prompts join.
    """

    def __init__(self, dim: int, d_state: int, num_tokens: int, inner_rank: int, hidden: int,
                 ase: bool = True, sgn: bool = True, prompt_position: str = "C",
                 prompt_order: str = "raster") -> None:
        super().__init__()
        self.dim = dim
        self.d_state = d_state
        self.num_tokens = num_tokens
        self.inner_rank = inner_rank
        self.ase = ase
        self.sgn = sgn
        self.prompt_position = prompt_position
        self.prompt_order = prompt_order
        #: entries of one prompt (0 without ASE)
        self.prompt_dim = 0 if not ase else (d_state if prompt_position in ("B", "C") else hidden)
        self.selectiveScan = SelectiveScan(hidden, d_state)
        self.out_norm = LayerNorm(hidden)
        self.out_proj = nn.Linear(hidden, dim)
        self.in_proj = nn.Sequential(nn.Conv2d(dim, hidden, 1, 1, 0))
        self.CPE = nn.Sequential(nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden))
        if ase:
            self.embeddingB = nn.Embedding(num_tokens, inner_rank)
            nn.init.uniform_(self.embeddingB.weight, -1 / num_tokens, 1 / num_tokens)
        if ase or sgn:
            self.route = nn.Sequential(nn.Linear(dim, dim // 3), nn.GELU(), nn.Linear(dim // 3, num_tokens),
                                       nn.LogSoftmax(dim=-1))
        self.routing = "argmax"
        self.generator: Optional[torch.Generator] = None

    def route_tokens(self, x: Tensor, embedding_a: Optional[Tensor]
                     ) -> Tuple[Optional[Tensor], Tensor, Tensor, Tensor]:
        """Prompt per token (``B×L×N``, raster order; None without ASE), the chosen prompt index
        (``B×L``), and the SGN permutation of the tokens with its inverse (see ``ops.sgn_order``)."""
        if not self.ase:
            with torch.no_grad():  # the labels only sort: no gradient would reach the routing
                if self.training or self.routing == "gumbel":
                    groups = gumbel_softmax_hard(self.route(x), self.generator).argmax(-1)
                    return (None, groups, *sgn_order(groups))
                return (None, *sgn_route(linear(linear_act(x, self.route[0], "gelu"), self.route[2])))
        pool = self.embeddingB.weight @ embedding_a  # Eq. 6: P = M·N, T×d prompt pool
        if self.training or self.routing == "gumbel":
            one_hot = gumbel_softmax_hard(self.route(x), self.generator)
            groups = one_hot.detach().argmax(-1)
            return (one_hot @ pool, groups, *sgn_order(groups))
        # argmax of the log-softmax is the argmax of the logits: skip the LogSoftmax
        logits = linear(linear_act(x, self.route[0], "gelu"), self.route[2])
        groups, order, inverse = sgn_route(logits)
        # exactly one_hot(groups) @ pool, without the matmul
        return pool[groups], groups, order, inverse

    def forward(self, x: Tensor, size: Tuple[int, int], embedding_a: Optional[Tensor]) -> Tensor:
        """``x``: ``B×L×C`` tokens in raster order → ``B×L×C``."""
        prompt, order, inverse = None, None, None
        if self.ase or self.sgn:
            prompt, _, order, inverse = self.route_tokens(x, embedding_a)

        img = self.in_proj(tokens_to_image(x, size))
        img = conv_gate(img, self.CPE[0])
        tokens = image_to_tokens(img)  # B×L×hidden

        if not self.sgn:
            y = self.selectiveScan(tokens, prompt, self.prompt_position)
            return linear(self.out_norm(y), self.out_proj)
        if prompt is not None and self.prompt_order == "sgn":
            prompt = permute_tokens(prompt, order)  # each prompt travels with its token
        y = self.selectiveScan(permute_tokens(tokens, order), prompt, self.prompt_position)  # SGN-unfold, then ASE
        y = linear(self.out_norm(y), self.out_proj)
        return permute_tokens(y, inverse)  # SGN-fold
