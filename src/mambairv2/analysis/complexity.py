"""Parameters and multiply-accumulates (MACs) of a forward pass, per kind of module, in two
conventions:

- ``paper``: what the paper's tables count. The authors count with fvcore (their
  ``analysis/flops_param_fvcore.py``): matrix products and convolutions as MACs (no bias), every
  LayerNorm as 5 operations per element, nearest upsampling as 1 per output element, the
  selective scan as ``9·B·L·D·N + B·L·D`` (the formula of mamba issue #110 that their script
  registers for the scan's autograd function) and Δ's low-rank projection (an einsum in their
  code) as ``B·L·D·R``; element-wise operations (activations, softmax, additions, gating, the
  attention mask and bias) are not counted, gathers and sorts neither. The prompt of every token
  is a ``one_hot @ pool`` matrix product in their code (``B·L·T·N``), a row gather in ours: it is
  added explicitly. Sizes are those of the padded input (a multiple of the window).
- ``all``: every arithmetic operation of the computation, a multiply-add counted once: the same
  matrix products, plus every element-wise operation (one per output element; add-multiply
  twice; softmax 4 and LayerNorm 5 per element; reductions one per input element), biases, and
  the scan's recurrence as its arithmetic: ``B·L·D·(5N + 4)`` plus Δ's projection.

How: the model runs on the ``meta`` device (shapes only: instant, no memory) under a
``TorchDispatchMode`` that sees every aten operator, attributed to the innermost module by
forward hooks; calls of :func:`mambairv2.ops.selective_scan` are counted from their arguments
(they are intercepted where the model looks the function up, and the operators run inside them
are not counted again). The model's own computation is not changed; on ``meta`` the CPU kernels
(oneDNN fusions, the compiled C kernels, which PyTorch cannot see into) do not apply, so the
plain PyTorch operators, which compute the same thing, are what gets counted.
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ..models import create_model, family_of, part_classes

Tensor = torch.Tensor

#: Kinds of work reported in ``by_module``.
CATEGORIES = ("conv", "linear", "attention", "scan", "routing", "norm", "elementwise")
CATEGORY_HELP = {
    "conv": "convolutions (conv_first, group convs, depthwise convs of the FFNs, in_proj, CPE, head)",
    "linear": "linear layers (wqkv, attention proj, FFN fc1/fc2, ASSM out_proj)",
    "attention": "window attention: q·k, attn·v, scaling, bias and mask, softmax",
    "scan": "selective scan: x_proj, Δ projection, the recurrence, C + prompt",
    "routing": "SGN routing and ASE prompts: route MLP, prompt pool, prompt per token",
    "norm": "LayerNorms",
    "elementwise": "everything else element-wise: activations, gates, residual sums, layer scales",
}

#: Floating-point operators that move or select data without arithmetic.
_NO_ARITHMETIC = frozenset("""
view _unsafe_view reshape transpose t permute expand unsqueeze squeeze select slice split
split_with_sizes unbind alias clone copy_ _to_copy cat stack index_select index gather scatter
scatter_ index_put_ index_put empty empty_like empty_strided new_empty zeros zeros_like new_zeros
ones ones_like full full_like fill_ arange sort pixel_shuffle pixel_unshuffle detach lift_fresh
contiguous flip roll narrow constant_pad_nd masked_fill masked_fill_ where _local_scalar_dense
as_strided upsample_nearest2d exponential_ uniform_ normal_ rand randn bernoulli_ set_ resize_
""".split())
_REDUCTIONS = frozenset("sum mean amax amin max min argmax argmin any all prod norm var std".split())
_SOFTMAX = frozenset(("_softmax", "_safe_softmax", "_log_softmax", "softmax", "log_softmax"))
_TWO_OPS = frozenset(("addcmul", "addcmul_", "addcdiv", "addcdiv_", "lerp", "lerp_"))


@dataclass
class Counts:
    """MACs of one kind of work in both conventions, and its parameters."""

    macs_paper: float = 0.0
    macs_all: float = 0.0
    params: int = 0


@dataclass
class Complexity:
    """Result of :func:`count_complexity`."""

    params: int
    macs_paper: float
    macs_all: float
    by_module: Dict[str, Counts]
    input_size: Tuple[int, int]
    padded_size: Tuple[int, int]
    output_size: Tuple[int, int]
    unknown_ops: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "params": self.params, "macs_paper": self.macs_paper, "macs_all": self.macs_all,
            "input_size": list(self.input_size), "padded_size": list(self.padded_size),
            "output_size": list(self.output_size),
            "by_module": {k: {"params": v.params, "macs_paper": v.macs_paper, "macs_all": v.macs_all,
                              "what": CATEGORY_HELP[k]} for k, v in self.by_module.items()},
        }


# -- the scan, counted from its arguments -------------------------------------------------
def scan_macs(batch: int, dim: int, length: int, d_state: int, rank: int = 0) -> Tuple[float, float]:
    """(paper, all) MACs of one selective scan of ``batch×dim×length`` with ``d_state`` states
    and, when ``rank`` > 0, Δ's rank-``rank`` projection done inside it."""
    tokens = batch * dim * length
    proj = tokens * rank
    paper = 9 * tokens * d_state + tokens + proj
    # per state: ΔA, exp, (Δu)·B, h = a·h + b, y += C·h; per channel: Δ + bias, softplus, Δ·u, D·u + y
    every = tokens * (5 * d_state + 4) + proj
    return float(paper), float(every)


def _scan_call_macs(bound: inspect.BoundArguments) -> Tuple[float, float]:
    u, a = bound.arguments["u"], bound.arguments["A"]
    proj = bound.arguments.get("delta_proj")
    return scan_macs(u.shape[0], u.shape[1], u.shape[2], a.shape[-1],
                     0 if proj is None else proj.shape[-1])


# -- the dispatch mode --------------------------------------------------------------------
def _numel(shape: Sequence[int]) -> int:
    return math.prod(int(s) for s in shape)


def _op_macs(name: str, namespace: str, args: Sequence[Any], out: Any) -> Optional[Tuple[str, float, float]]:
    """(kind, paper, all) for a matrix product, convolution, attention or norm operator, or
    None for element-wise/data-movement operators."""
    first = out[0] if isinstance(out, (tuple, list)) else out
    if name in ("mm", "addmm"):
        a, b = args[-2], args[-1]
        m = a.shape[0] * a.shape[1] * b.shape[1]
        return "matmul", m, m + (first.numel() if name == "addmm" else 0)
    if name in ("bmm", "baddbmm"):
        a, b = args[-2], args[-1]
        m = a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
        return "matmul", m, m + (first.numel() if name == "baddbmm" else 0)
    if name in ("convolution", "_convolution", "convolution_overrideable", "_convolution_pointwise"):
        w, bias = args[1], args[2]
        m = first.numel() * w.shape[1] * _numel(w.shape[2:])
        return "conv", m, m + (first.numel() if bias is not None else 0) + (
            first.numel() if namespace == "mkldnn" and args[7] != "none" else 0)
    if name == "_linear_pointwise" and namespace == "mkldnn":
        x, w, bias = args[0], args[1], args[2]
        m = x.numel() // w.shape[1] * w.numel()
        return "matmul", m, m + (first.numel() if bias is not None else 0) + (
            first.numel() if args[3] != "none" else 0)
    if "scaled_dot_product" in name or name in ("_efficient_attention_forward", "_flash_attention_forward"):
        q, k, v = args[0], args[1], args[2]
        batch, lq, e = _numel(q.shape[:-2]), q.shape[-2], q.shape[-1]
        s, ev = k.shape[-2], v.shape[-1]
        m = batch * lq * s * (e + ev)
        return "attention", m, m + batch * lq * e + batch * lq * s * 5  # scale, mask, softmax
    if name in ("native_layer_norm", "layer_norm"):
        return "norm", 5 * args[0].numel(), 5 * args[0].numel()
    return None


class _Counter(TorchDispatchMode):
    """Counts every aten operator on ``device`` into (category, paper, all)."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device = device
        self.stack: List[Tuple[str, nn.Module]] = []
        self.paused = 0
        self.totals: Dict[str, List[float]] = {c: [0.0, 0.0] for c in CATEGORIES}
        self.unknown: Dict[str, int] = {}

    def add(self, category: str, paper: float, every: float) -> None:
        self.totals[category][0] += paper
        self.totals[category][1] += every

    def category(self, kind: str) -> str:
        ASSM, SelectiveScan, WindowAttention = _parts()

        if kind in ("scan", "norm"):
            return kind
        inner = self.stack[-1][1] if self.stack else None
        if isinstance(inner, SelectiveScan):
            return "scan"
        if any(".route." in name for name, _ in self.stack) or (
                isinstance(inner, ASSM) and kind == "matmul"):
            return "routing"
        if isinstance(inner, WindowAttention):
            return "attention"
        return {"conv": "conv", "matmul": "linear", "attention": "attention"}.get(kind, "elementwise")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.paused:
            return out
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, Tensor)]
        if not outs or outs[0].device != self.device or not outs[0].is_floating_point():
            return out
        name, namespace = func.overloadpacket.__name__, func.namespace
        flat_args = list(args) + [kwargs[k] for k in kwargs]
        macs = _op_macs(name, namespace, flat_args, out)
        if macs is not None:
            kind, paper, every = macs
            self.add(self.category(kind), paper, every)
            return out
        if name == "upsample_nearest2d":  # fvcore counts one per output element; no arithmetic
            self.add(self.category("elementwise"), outs[0].numel(), 0)
            return out
        if name in _NO_ARITHMETIC:
            return out
        if name in _SOFTMAX:
            every = 4 * outs[0].numel()
        elif name.rstrip("_") in _REDUCTIONS:
            every = args[0].numel()
        elif name in _TWO_OPS:
            every = 2 * outs[0].numel()
        else:
            every = outs[0].numel()
        self.add(self.category("elementwise"), 0, every)
        return out


@contextlib.contextmanager
def _module_stack(model: nn.Module, counter: _Counter) -> Iterator[None]:
    def push(name):
        def hook(mod, inputs):
            counter.stack.append((name, mod))
        return hook

    def pop(mod, inputs, output):
        counter.stack.pop()

    handles = []
    for name, mod in model.named_modules():
        handles.append(mod.register_forward_pre_hook(push(name)))
        handles.append(mod.register_forward_hook(pop))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def _counting_scans(counter: _Counter) -> Iterator[None]:
    """Replaces ``selective_scan`` where the package's modules look it up by a wrapper that
    counts each call from its arguments and pauses the operator count inside it."""
    from ..ops import selective_scan as original

    signature = inspect.signature(original)

    def counted(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        paper, every = _scan_call_macs(bound)
        counter.add("scan", paper, every)
        u = bound.arguments["u"]
        counter.paused += 1
        try:
            if u.device.type == "meta":  # shapes only: the recurrence's value is not needed
                return u.new_empty(u.shape)
            return original(*args, **kwargs)
        finally:
            counter.paused -= 1

    patched = [m for name, m in list(sys.modules.items())
               if name.startswith("mambairv2") and getattr(m, "selective_scan", None) is original]
    for m in patched:
        m.selective_scan = counted
    try:
        yield
    finally:
        for m in patched:
            m.selective_scan = original


def _prompt_hooks(model: nn.Module, counter: _Counter) -> List[Any]:
    """The paper counts each token's prompt as ``one_hot @ pool`` (B·L·T·N); at inference with
    argmax routing the model gathers the row instead, which the operator count cannot see."""
    ASSM = _parts()[0]

    def hook(mod: nn.Module, inputs, output) -> None:
        # prompt_dim: d_state (into B or C), the scan's width (Δ or y), 0 without ASE (ablations)
        if mod.prompt_dim and not (mod.training or mod.routing == "gumbel"):
            b, length, _ = inputs[0].shape
            counter.add("routing", b * length * mod.num_tokens * mod.prompt_dim, 0)

    return [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, ASSM)]


def _parts() -> Tuple[Tuple[type, ...], ...]:
    """The classes counted apart (every family's ASSM, scan and window attention; MambaIR v1's
    SS2D scan is counted at its selective_scan call)."""
    return part_classes("ASSM"), part_classes("SelectiveScan"), part_classes("WindowAttention")


# -- parameters ----------------------------------------------------------------------------
def _param_category(path: List[Tuple[str, nn.Module]], pname: str) -> str:
    ASSM, SelectiveScan, WindowAttention = _parts()

    name, mod = path[-1]
    if isinstance(mod, nn.LayerNorm):
        return "norm"
    if isinstance(mod, SelectiveScan):
        return "scan"
    if isinstance(mod, nn.Embedding) or any(".route." in n for n, _ in path) or isinstance(mod, ASSM):
        return "routing"
    if isinstance(mod, WindowAttention):
        return "attention"
    if isinstance(mod, nn.Conv2d):
        return "conv"
    if isinstance(mod, nn.Linear):
        return "linear"
    return "elementwise"  # layer scales


def parameters_by_category(model: nn.Module) -> Dict[str, int]:
    """Number of parameters per category of :data:`CATEGORIES`."""
    out = {c: 0 for c in CATEGORIES}

    def walk(prefix: str, mod: nn.Module, path: List[Tuple[str, nn.Module]]) -> None:
        path = path + [(prefix, mod)]
        for pname, p in mod.named_parameters(recurse=False):
            out[_param_category(path, pname)] += p.numel()
        for cname, child in mod.named_children():
            walk(f"{prefix}.{cname}" if prefix else cname, child, path)

    walk("", model, [])
    return out


# -- entry points ---------------------------------------------------------------------------
def count_complexity(model: nn.Module, input_size: Tuple[int, int], batch: int = 1) -> Complexity:
    """Parameters and MACs of ``model`` (MambaIRv2 or MambaIR v1) for one
    inference forward pass of a ``batch×C×H×W`` input, ``input_size = (H, W)``. The model is
    not modified (a copy on the ``meta`` device is run)."""
    h, w = (int(s) for s in input_size)
    if h < 1 or w < 1 or batch < 1:
        raise ValueError(f"input size and batch must be positive, got {input_size}, {batch}")
    cfg = model.config
    params = parameters_by_category(model)
    meta = model if _is_meta(model) else copy.deepcopy(model).to("meta")
    meta.eval()
    device = torch.device("meta")
    counter = _Counter(device)
    x = torch.empty(batch, cfg.in_chans, h, w, device=device)
    hooks = _prompt_hooks(meta, counter)
    try:
        with torch.no_grad(), _module_stack(meta, counter), _counting_scans(counter), counter:
            meta(x)
    finally:
        for hd in hooks:
            hd.remove()
    ws = family_of(model).pad_multiple(cfg)
    by = {c: Counts(counter.totals[c][0], counter.totals[c][1], params[c]) for c in CATEGORIES}
    return Complexity(
        params=sum(params.values()),
        macs_paper=sum(v.macs_paper for v in by.values()),
        macs_all=sum(v.macs_all for v in by.values()),
        by_module=by, input_size=(h, w),
        padded_size=(-(-h // ws) * ws, -(-w // ws) * ws),
        output_size=(h * cfg.upscale, w * cfg.upscale))


def config_complexity(config: Any, input_size: Tuple[int, int], batch: int = 1) -> Complexity:
    """:func:`count_complexity` of a network configuration, built directly on the meta device."""
    with torch.device("meta"):
        model = family_of(config).build(config)
    return count_complexity(model, input_size, batch=batch)


def count_module_macs(model: nn.Module, input_shape: Tuple[int, ...]) -> Counts:
    """MACs (both conventions) of one inference forward of any module on an input of
    ``input_shape``, by the same operator rules as :func:`count_complexity` (matrix products,
    convolutions, attention, LayerNorm; element-wise operations only in ``all``), e.g. a peer
    model such as SwinIR, so that its MACs compare with ours. A selective scan is counted only
    through :func:`count_complexity`. The model is not modified (a copy on ``meta`` is run)."""
    meta = model if _is_meta(model) else copy.deepcopy(model).to("meta")
    meta.eval()
    device = torch.device("meta")
    counter = _Counter(device)
    with torch.no_grad(), _module_stack(meta, counter), counter:
        meta(torch.empty(*input_shape, device=device))
    return Counts(sum(v[0] for v in counter.totals.values()), sum(v[1] for v in counter.totals.values()))


def variant_complexity(variant: str, scale: int, input_size: Tuple[int, int]) -> Complexity:
    """:func:`count_complexity` of a paper variant, built directly on the meta device."""
    with torch.device("meta"):
        model = create_model(variant, scale=scale)
    return count_complexity(model, input_size)


def _is_meta(model: nn.Module) -> bool:
    p = next(model.parameters(), None)
    return p is not None and p.device.type == "meta"


def format_table(c: Complexity) -> str:
    """A human-readable table of a :class:`Complexity`."""
    rows = [f"{'module':<12} {'params':>12} {'paper GMACs':>12} {'all GMACs':>12}  what"]
    for k, v in c.by_module.items():
        rows.append(f"{k:<12} {v.params:>12,} {v.macs_paper / 1e9:>12.3f} {v.macs_all / 1e9:>12.3f}  {CATEGORY_HELP[k]}")
    rows.append(f"{'total':<12} {c.params:>12,} {c.macs_paper / 1e9:>12.3f} {c.macs_all / 1e9:>12.3f}")
    return "\n".join(rows)
