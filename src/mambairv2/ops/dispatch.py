"""The one switch that selects how every operator of ``ops`` is computed.

Each operator (selective scan, window attention, SGN routing, LayerNorm, linear/conv with
activation) has a reference path and fast paths; which one runs is decided here and only here:

- ``"auto"`` (default): the fastest implementation that applies to the call (compiled CPU
  kernels, oneDNN fused ops, ``mamba_ssm``/Triton on CUDA), else the PyTorch path.
- ``"pytorch"``: standard PyTorch operators only (portable, exportable; no compiled kernels,
  no oneDNN-private ops, no ``mamba_ssm``).
- ``"reference"``: the plain formulas (sequential scan, explicit softmax attention): the
  oracles, slow.
- ``"export"``: what ``torch.onnx.export``'s tracer can record as one graph for every image
  size: no data-dependent Python control flow, no compiled kernels, sizes read from the tensors
  (a scan with a fixed number of steps, SGN as a sort of unique keys, plain LayerNorm/linear).
  Modules with a faster formulation built from Python integers (cached window plans) ask
  :func:`shape_generic` and take their shape-generic one instead.

``implementation(name, **per_op)`` selects for everything run inside the block (per thread and
asyncio task); a per-op keyword names one op's concrete implementation, e.g.
``implementation(selective_scan="chunked")``. The environment variable ``MAMBAIRV2_IMPLEMENTATION``
only sets the default selection of a process.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import warnings
from typing import Callable, Dict, Iterator, Mapping, NamedTuple, Optional

import torch

ENV_VAR = "MAMBAIRV2_IMPLEMENTATION"
SELECTIONS = ("auto", "pytorch", "reference", "export")
#: every operator with its concrete implementations (besides the three selections)
OPS: Mapping[str, tuple] = {
    "selective_scan": ("reference", "chunked", "compiled", "mamba_ssm", "triton", "export"),
    "window_attention": ("reference", "sdpa", "compiled", "export"),
    "sgn_route": ("pytorch", "compiled", "export"),
    "layer_norm": ("pytorch", "compiled"),
    "linear_act": ("pytorch", "onednn"),
}

_override: contextvars.ContextVar[Optional[Dict[str, str]]] = contextvars.ContextVar(
    "mambairv2_implementation", default=None)
#: the whole-model selection of the innermost block that named one (None: the process default)
_selection: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar(
    "mambairv2_selection", default=None)


class Choice(NamedTuple):
    """The implementation an operator uses for a call, and why."""

    name: str
    reason: str


class Probe(NamedTuple):
    """What a choice depends on: the device type, the dtype, whether autograd records the call,
    and whether CPU autocast is on."""

    device: str
    dtype: torch.dtype
    grad: bool
    autocast: bool = False

    @classmethod
    def of(cls, *tensors: Optional[torch.Tensor]) -> "Probe":
        """The probe of a call on ``tensors`` (None entries ignored; the first sets device/dtype)."""
        first = tensors[0]
        if first is None:
            first = next(t for t in tensors if t is not None)
        grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
        device = first.device.type
        return cls(device, first.dtype, grad, device == "cpu" and autocast_cpu())

    @property
    def cpu_float32_inference(self) -> bool:
        """The case the compiled CPU kernels and oneDNN fusions are written for: float32 CPU
        inference, or CPU inference under bfloat16 autocast (the kernels then take their
        bfloat16 inputs in float32 and compute in float32; oneDNN's GEMMs run in bfloat16)."""
        return self.not_cpu_float32_inference() is None

    @property
    def bfloat16_autocast(self) -> bool:
        """Whether the call runs under CPU bfloat16 autocast."""
        return self.autocast and cpu_autocast_dtype() == torch.bfloat16

    def not_cpu_float32_inference(self) -> Optional[str]:
        """Why this is not float32 (or bfloat16-autocast) CPU inference (None where it is)."""
        if self.device != "cpu":
            return f"{self.device} tensors (the CPU fast path does not apply)"
        if self.grad:
            return "gradients needed (the CPU fast path is inference only)"
        if self.autocast and not self.bfloat16_autocast:
            return "CPU float16 autocast on (the CPU fast path is float32 or bfloat16 autocast)"
        if self.dtype != torch.float32 and not (self.bfloat16_autocast and self.dtype == torch.bfloat16):
            return f"{str(self.dtype).replace('torch.', '')} (the CPU fast path is float32)"
        return None


#: decisions of :func:`cpu_inference_choice` by operator, selection, probe and autocast dtype:
#: a handful per process (bounded all the same); a kernel's availability is settled once
_choices: Dict[tuple, Choice] = {}
_MAX_CHOICES = 256


def cpu_inference_choice(op: str, probe: Probe, fast: str, available: Callable[[], bool],
                         unavailable: Callable[[], Optional[str]], plain: str = "pytorch") -> Choice:
    """The choice of an operator whose only fast path (``fast``) is for float32 CPU inference:
    the selection in force, else ``fast`` where it applies and ``available()``, else ``plain``
    with the reason (``unavailable()`` says why the fast path is missing). Taken once per
    operator, selection and probe (every call of a forward asks the same question)."""
    sel = selected(op)
    key = (op, sel, probe, probe.autocast and cpu_autocast_dtype(), fast, plain)
    choice = _choices.get(key)
    if choice is None:
        choice = _cpu_inference_choice(op, sel, probe, fast, available, unavailable, plain)
        if len(_choices) >= _MAX_CHOICES:
            _choices.clear()
        _choices[key] = choice
    return choice


def _cpu_inference_choice(op: str, sel: str, probe: Probe, fast: str, available: Callable[[], bool],
                          unavailable: Callable[[], Optional[str]], plain: str) -> Choice:
    if sel in SELECTIONS and sel != "auto":  # a whole-model selection: the op's own, else plain
        return Choice(sel if sel in OPS[op] else plain, f"selected {sel!r}")
    if sel != "auto":
        return Choice(sel, f"selected {sel!r}")
    why = probe.not_cpu_float32_inference()
    if why:
        return Choice(plain, why)
    if not available():
        return Choice(plain, f"{fast} unavailable: {unavailable()}")
    return Choice(fast, "float32 CPU inference")


def autocast_cpu() -> bool:
    """Whether CPU autocast is on."""
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def cpu_autocast_dtype() -> torch.dtype:
    """The dtype CPU autocast casts to (meaningful while it is on)."""
    try:
        return torch.get_autocast_dtype("cpu")
    except (AttributeError, TypeError):  # torch < 2.4
        return torch.get_autocast_cpu_dtype()


def _check(op: Optional[str], name: str) -> None:
    allowed = SELECTIONS + (OPS[op] if op else ())
    if name not in allowed:
        what = f"operator {op!r}" if op else "the implementation"
        raise ValueError(f"unknown implementation {name!r} for {what}; choose one of {', '.join(allowed)}")


@functools.lru_cache(maxsize=1)
def _default() -> str:
    """The process's default selection (read once)."""
    name = os.environ.get(ENV_VAR, "").strip() or "auto"
    if name not in SELECTIONS:
        warnings.warn(f"{ENV_VAR}={name!r} is not one of {', '.join(SELECTIONS)}; using 'auto'",
                      RuntimeWarning, stacklevel=3)
        return "auto"
    return name


@contextlib.contextmanager
def implementation(name: Optional[str] = None, **per_op: str) -> Iterator[None]:
    """Select implementations for every ``ops`` call made inside the block.

    Args:
        name: ``"auto"``, ``"pytorch"``, ``"reference"`` or ``"export"`` for every operator
            (None keeps the enclosing selection).
        per_op: ``OP=IMPLEMENTATION`` for single operators (see :data:`OPS`), e.g.
            ``selective_scan="chunked"``, ``window_attention="reference"``.
    """
    if name is not None:
        _check(None, name)
    for op, impl in per_op.items():
        if op not in OPS:
            raise ValueError(f"unknown operator {op!r}; operators: {', '.join(OPS)}")
        _check(op, impl)
    current = dict(_override.get() or {})
    if name is not None:
        current = {op: name for op in OPS}
    current.update(per_op)
    token = _override.set(current)
    whole = _selection.set(name) if name is not None else None
    try:
        yield
    finally:
        if whole is not None:
            _selection.reset(whole)
        _override.reset(token)


def shape_generic() -> bool:
    """Whether the selection in force is ``"export"``: modules must then take their
    formulation that a tracer records as one graph for every size (sizes read from tensors,
    no plans cached by Python integers)."""
    return (_selection.get() or _default()) == "export"


def selected(op: str) -> str:
    """The selection in force for ``op``: a selection name or one of its implementations."""
    current = _override.get()
    if current and op in current:
        return current[op]
    return _default()
