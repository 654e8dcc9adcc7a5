"""ONNX export of a MambaIRv2 network, and its self-check with onnxruntime.

The network's own forward is written for speed (cached window plans built with Python integers,
compiled kernels, a scan whose chunk carry loops as many times as there are chunks). An exported
graph must instead be one fixed set of operators for every height and width, so the export
traces :class:`ExportForward`: the same computation on the same parameters, written with
shape-generic operators only:

- mirror padding as one gather whose indices are computed from the size;
- (shifted) window attention as Swin writes it: ``roll`` + window partition, the shift mask
  computed in the graph from the padded size;
- SGN routing as a sort of the unique keys ``group·L + position`` (:func:`sgn_order_by_unique_key`):
  ONNX ``TopK`` promises no order among ties, unique keys have none, so the graph keeps the
  stable order of the PyTorch model;
- the selective scan chunked with a fixed chunk length (two unrolled sweeps of ``CHUNK`` steps)
  and the carry between chunks by a fixed number of doubling rounds
  (:func:`scan_for_export`), enough for ``MAX_TOKENS`` tokens; no loop depends on the size.

:func:`export_onnx` writes the file (``torch.onnx.export``, dynamo exporter, optional dynamic
height and width), :func:`verify_onnx` runs it with onnxruntime and returns the largest
absolute difference from the PyTorch model. Needs the ``[onnx]`` extra (onnx, onnxscript,
onnxruntime), imported lazily.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.mambairv2 import MambaIRv2
from ..models.mambairv2.attention import window_partition
from ..models.layers.heads import HEADS
from ..ops import implementation

Tensor = torch.Tensor
PathLike = Union[str, "Path"]

#: Steps per chunk of the exported scan (each step is a few operators in the graph).
CHUNK = 16
#: Longest token sequence (padded height × width) the exported scan's carry covers.
MAX_TOKENS = 4096 * 4096
MIN_LOG_DECAY = -60.0  # as the chunked scan: exp(Δ·A) clamped at ≈ 9e-27 (no subnormals)
DEFAULT_OPSET = 18
#: Height and width of the input traced for a dynamic export. The graph does not depend on it,
#: but the tracer keeps every intermediate tensor until it is done, so its memory grows with the
#: sample's tokens times the layers (base x4: over 24 GB at 37×53, 3.6 GB at 8×12). 8×12 is
#: padded on both axes (to one 16×16 window), so the padding gathers are traced too.
TRACE_SIZE = (8, 12)


# -- shape-generic pieces --------------------------------------------------------------------
def mirror_index(size: Tensor | int, target: Tensor | int, device: torch.device) -> Tensor:
    """Indices into ``[0, size)`` for ``target`` positions following [x, flip(x), x, …]: the
    network's mirror padding (see ``model.network.mirror_pad``) as one gather."""
    i = torch.arange(target, device=device)
    j = i % (2 * size)
    return torch.where(j < size, j, 2 * size - 1 - j)


def shift_mask(hp: int, wp: int, ws: int, shift: int, device: torch.device) -> Tensor:
    """Swin's shifted-window attention mask ``nW×ws²×ws²`` (0 within a region, −100 across)
    for a padded ``hp×wp`` grid, from index comparisons (no Python loop over the size)."""

    def region(n: int) -> Tensor:
        i = torch.arange(n, device=device)
        return (i >= n - ws).to(torch.int64) + (i >= n - shift).to(torch.int64)

    ids = (region(hp)[:, None] * 3 + region(wp)[None, :]).to(torch.float32)
    win = window_partition(ids[None, :, :, None], ws).squeeze(-1)  # nW×n
    diff = win[:, None, :] - win[:, :, None]
    return torch.where(diff != 0, torch.full_like(diff, -100.0), torch.zeros_like(diff))


def sgn_order_by_unique_key(groups: Tensor) -> Tuple[Tensor, Tensor]:
    """The stable sort of the tokens by group (``B×L`` → order, inverse), as an ordinary sort of
    the unique keys ``group·L + position``: equal to ``torch.sort(groups, stable=True)``, and
    exportable as ONNX ``TopK``, which does not promise any order among equal keys."""
    length = groups.shape[-1]
    position = torch.arange(length, device=groups.device)
    order = torch.argsort(groups * length + position, dim=-1)
    inverse = torch.zeros_like(order).scatter(-1, order, position.expand_as(order))
    return order, inverse


def gather_tokens(x: Tensor, index: Tensor) -> Tensor:
    """``x[b, index[b, l], :]`` for ``x``: ``B×L×C``, ``index``: ``B×L``."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def _shift_right(x: Tensor, shift: int, fill: float) -> Tensor:
    """``x`` moved ``shift`` places along dim 1 (filled with ``fill``), same length; a gather,
    so that a shift longer than the tensor costs nothing (padding would allocate it)."""
    source = torch.arange(x.shape[1], device=x.device) - shift
    moved = x.index_select(1, source.clamp(min=0))
    return torch.where((source >= 0).view(1, -1, 1, 1), moved, torch.full_like(moved, fill))


def scan_for_export(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                    chunk: int = CHUNK, max_tokens: int = MAX_TOKENS) -> Tensor:
    """Selective scan ``h_t = exp(Δ_t·A)·h_{t-1} + Δ_t·B_t·u_t``, ``y_t = C_t·h_t + D·u_t``.

    ``u``, ``delta``: ``B×L×D`` (Δ already biased and softplus-ed); ``A``: ``D×N``; ``B``, ``C``:
    ``B×L×N`` (one group); returns ``B×L×D``. The sequence is cut into chunks of ``chunk`` steps;
    two sweeps of ``chunk`` vectorised steps run all chunks at once (the chunked scan's scheme);
    the state entering each chunk comes from a doubling (Hillis–Steele) scan over the chunks with
    a fixed number of rounds, ``log2(max_tokens / chunk)``: rounds past the number of chunks
    change nothing, so the graph is the same for every length up to ``max_tokens``.
    """
    bsz, length, dim = u.shape
    nc = (length + chunk - 1) // chunk
    index = torch.arange(nc * chunk, device=u.device)
    inside = (index < length).to(u.dtype).view(1, -1, 1)
    index = torch.clamp(index, max=length - 1)

    def steps(x: Tensor) -> Tensor:  # B×L×K → B×nc×chunk×K, zero padded (Δ = 0: no change)
        # a gather rather than F.pad: padding amounts computed from the size become constants
        # in a traced graph, a gather's indices do not
        return (x.index_select(1, index) * inside).reshape(bsz, nc, chunk, x.shape[-1])

    delta, u, B, C = steps(delta), steps(u), steps(B), steps(C)
    A = A[None, None]  # 1×1×D×N

    def step(t: int) -> Tuple[Tensor, Tensor]:
        decay = torch.exp(torch.clamp(delta[:, :, t, :, None] * A, min=MIN_LOG_DECAY))
        inc = (delta[:, :, t] * u[:, :, t])[..., None] * B[:, :, t, None, :]
        return decay, inc  # B×nc×D×N

    chunk_decay, h = step(0)  # from a zero state
    for t in range(1, chunk):  # 1. each chunk from a zero state: its local end state
        decay, inc = step(t)
        h = h * decay + inc
        chunk_decay = chunk_decay * decay
    a, b = chunk_decay, h
    for r in range(max(1, math.ceil(math.log2(max(2, max_tokens // chunk))))):
        shift = 1 << r
        b = b + a * _shift_right(b, shift, 0.0)
        a = a * _shift_right(a, shift, 1.0)
    h = _shift_right(b, 1, 0.0)  # the state entering each chunk
    ys = []
    for t in range(chunk):  # 2. again from the true entry states, reading out y
        decay, inc = step(t)
        h = h * decay + inc
        ys.append((h * C[:, :, t, None, :]).sum(-1))
    y = torch.stack(ys, 2).reshape(bsz, nc * chunk, dim)[:, :length]
    return y + u.reshape(bsz, nc * chunk, dim)[:, :length] * D


# -- the network, written for export ---------------------------------------------------------
def _norm(ln: nn.LayerNorm, x: Tensor) -> Tensor:
    """The LayerNorm module's computation with its own (constant) normalised shape: a shape read
    from ``x`` would be a traced value, which the exporter cannot turn into ONNX's attribute."""
    return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)


class ExportForward(nn.Module):
    """``model``'s forward with shape-generic operators (see the module docstring); holds the
    model (parameters shared, nothing copied). Equal to ``model(x)`` up to float rounding."""

    def __init__(self, model: MambaIRv2) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        m, c = self.model, self.model.config
        ws = c.window_size
        h0, w0 = x.shape[-2], x.shape[-1]
        hp, wp = (h0 + ws - 1) // ws * ws, (w0 + ws - 1) // ws * ws
        x = x.index_select(2, mirror_index(h0, hp, x.device)).index_select(3, mirror_index(w0, wp, x.device))
        mean = m.mean.to(x.dtype)
        x = (x - mean) * m.img_range
        first = m.conv_first(x)
        mask = shift_mask(hp, wp, ws, ws // 2, x.device).to(x.dtype)
        t = _norm(m.patch_embed.norm, first.flatten(2).transpose(1, 2))
        for group in m.layers:
            y = t
            for layer in group.residual_group.layers:
                y = self._layer(layer, y, hp, wp, mask)
            img = y.transpose(1, 2).reshape(y.shape[0], -1, hp, wp)
            t = group.conv(img).flatten(2).transpose(1, 2) + t
        feat = _norm(m.norm, t).transpose(1, 2).reshape(t.shape[0], -1, hp, wp)
        feat = m.conv_after_body(feat) + first
        x = HEADS[c.upsampler].forward(m, feat, x)
        x = x / m.img_range + mean
        s = c.upscale
        return x[:, :, : h0 * s, : w0 * s]

    def _layer(self, layer: nn.Module, x: Tensor, hp: int, wp: int, mask: Tensor) -> Tensor:
        size = (hp, wp)
        shortcut = x
        x_win = self._window_attention(layer, _norm(layer.norm1, x), hp, wp, mask,
                                       self.model.relative_position_index_SA) + shortcut
        x_win = layer.convffn1(_norm(layer.norm2, x_win), size) + x_win
        x = x_win + shortcut * layer.scale1
        shortcut = x
        x_aca = self._assm(layer.assm, _norm(layer.norm3, x), hp, wp, layer.embeddingA.weight) + x
        x = layer.convffn2(_norm(layer.norm4, x_aca), size) + x_aca
        return x + shortcut * layer.scale2

    @staticmethod
    def _window_attention(layer: nn.Module, x: Tensor, hp: int, wp: int, mask: Tensor, rpi: Tensor) -> Tensor:
        attn = layer.win_mhsa
        ws, heads, shift = attn.window_size, attn.num_heads, layer.shift_size
        b, _, c = x.shape
        n = ws * ws
        qkv = layer.wqkv(x).reshape(b, hp, wp, 3 * c)
        if shift:
            qkv = torch.roll(qkv, shifts=(-shift, -shift), dims=(1, 2))
        win = window_partition(qkv, ws)  # (B·nW)×n×3C
        q, k, v = win.reshape(-1, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4).unbind(0)
        bias = attn._gather_bias(rpi).to(x.dtype)  # heads×n×n
        scores = (q * attn.scale) @ k.transpose(-2, -1) + bias
        if shift:
            nw = mask.shape[0]
            scores = (scores.reshape(-1, nw, heads, n, n) + mask[None, :, None]).reshape(-1, heads, n, n)
        out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(-1, n, c)
        out = attn.proj(out)
        img = out.reshape(b, hp // ws, wp // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
        if shift:
            img = torch.roll(img, shifts=(shift, shift), dims=(1, 2))
        return img.reshape(b, hp * wp, c)

    @staticmethod
    def _assm(assm: nn.Module, x: Tensor, hp: int, wp: int, embedding_a: Tensor) -> Tensor:
        b, length, c = x.shape
        pool = assm.embeddingB.weight @ embedding_a  # T×N prompt pool
        logits = assm.route[2](F.gelu(assm.route[0](x)))
        groups = torch.argmax(logits, -1)  # the first maximum, as the model's max().indices
        prompt = pool[groups]
        order, inverse = sgn_order_by_unique_key(groups)
        img = assm.in_proj(x.transpose(1, 2).reshape(b, c, hp, wp))
        img = img * torch.sigmoid(assm.CPE(img))
        tokens = gather_tokens(img.flatten(2).transpose(1, 2), order)
        y = ExportForward._selective_scan(assm.selectiveScan, tokens, prompt)
        y = assm.out_proj(_norm(assm.out_norm, y))
        return gather_tokens(y, inverse)

    @staticmethod
    def _selective_scan(ss: nn.Module, x: Tensor, prompt: Tensor) -> Tensor:
        x_dbl = F.linear(x, ss.x_proj_weight[0])
        dt, b_, c_ = torch.split(x_dbl, [ss.dt_rank, ss.d_state, ss.d_state], dim=-1)
        c_ = c_ + prompt  # prompts stay in raster order, as released
        ct = torch.float64 if x.dtype == torch.float64 else torch.float32  # half types: scan in float32
        delta = F.softplus(F.linear(dt, ss.dt_projs_weight[0]).to(ct) + ss.dt_projs_bias.view(-1).to(ct))
        y = scan_for_export(x.to(ct), delta, -torch.exp(ss.A_logs.to(ct)), b_.to(ct), c_.to(ct),
                            ss.Ds.to(ct))
        return y.to(x.dtype)


def prepare_for_export(model: MambaIRv2) -> ExportForward:
    """The :class:`ExportForward` of ``model`` (eval mode, argmax routing)."""
    model.eval()
    if any(getattr(m, "routing", "argmax") != "argmax" for m in model.modules()):
        raise ValueError("only the deterministic argmax routing can be exported")
    return ExportForward(model).eval()


# -- export and verification -----------------------------------------------------------------
def export_onnx(model: MambaIRv2, path: PathLike, *, opset: int = DEFAULT_OPSET, dynamic: bool = True,
                dtype: torch.dtype = torch.float32, sample_size: Tuple[int, int] = TRACE_SIZE,
                dynamo: bool = False) -> Path:
    """Writes ``model`` as ONNX (one file, weights inside) through :class:`ExportForward`.

    Input ``input``: ``1×C×H×W`` in [0, 1]; output ``output``: ``1×C×(H·s)×(W·s)``. With
    ``dynamic`` height and width are free (one graph for every size, traced at ``sample_size``),
    else fixed to ``sample_size``. ``dtype`` float16 exports a half-precision graph (scan kept in float32).
    ``dynamo`` selects torch.export's exporter (needs onnxscript; far slower on this graph of
    unrolled scan steps: it did not finish a light model in 15 minutes on a busy 2-core machine),
    else the TorchScript tracer (sizes are traced, so the graph stays shape-generic)."""
    import onnx  # noqa: F401 - fail early with ImportError when the extra is missing

    from ..utils.atomic import atomic_path

    model = model.to(dtype=dtype, device="cpu")
    wrapper = prepare_for_export(model)
    x = torch.rand(1, model.config.in_chans, *sample_size, dtype=dtype)
    with torch.no_grad(), implementation("pytorch"), atomic_path(path) as tmp:
        if dynamo:
            dims = torch.export.Dim.DYNAMIC
            program = torch.onnx.export(wrapper, (x,), None, dynamo=True, opset_version=opset,
                                        input_names=["input"], output_names=["output"],
                                        dynamic_shapes={"x": {2: dims, 3: dims}} if dynamic else None)
            program.save(str(tmp), external_data=False)
        else:
            axes = {"input": {2: "height", 3: "width"}, "output": {2: "out_height", 3: "out_width"}}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer and deprecation warnings
                torch.onnx.export(wrapper, (x,), str(tmp), dynamo=False, opset_version=opset,
                                  input_names=["input"], output_names=["output"],
                                  dynamic_axes=axes if dynamic else None, do_constant_folding=True)
    return Path(path)


def onnx_session(path: PathLike, threads: Optional[int] = None):
    """An onnxruntime CPU ``InferenceSession`` for the file."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def verify_onnx(path: PathLike, model: MambaIRv2, inputs: Iterable[Tensor],
                session=None) -> List[Tuple[Tuple[int, ...], float]]:
    """Runs the ONNX file with onnxruntime on each ``1×C×H×W`` input and returns, per input in
    order, its shape and the largest absolute difference from ``model`` (its own fast PyTorch
    path) in the model's dtype."""
    session = session or onnx_session(path)
    name = session.get_inputs()[0].name
    dtype = next(model.parameters()).dtype
    errors: List[Tuple[Tuple[int, ...], float]] = []
    for x in inputs:
        x = x.to(dtype)
        with torch.no_grad():
            expected = model(x).float()
        got = torch.from_numpy(session.run(None, {name: x.numpy()})[0]).float()
        if got.shape != expected.shape:
            raise ValueError(f"onnxruntime output {tuple(got.shape)} != PyTorch {tuple(expected.shape)}")
        errors.append((tuple(x.shape), (got - expected).abs().max().item()))
    return errors


def verification_inputs(in_chans: int, sizes: Sequence[Tuple[int, int]], image: Optional[Tensor] = None,
                        seed: int = 0) -> list:
    """Seeded random inputs of the given sizes, then ``image`` (``1×C×H×W``) if given."""
    g = torch.Generator().manual_seed(seed)
    out = [torch.rand(1, in_chans, h, w, generator=g) for h, w in sizes]
    if image is not None:
        out.append(image)
    return out
