"""ONNX export of a MambaIR or MambaIRv2 network, and its self-check with onnxruntime.

The export traces the model's own forward under ``ops.implementation("export")``: every
operator and every module then takes its shape-generic formulation (see ``ops.dispatch``), so
the TorchScript tracer records one graph for every height and width. Nothing of the network is
written here: :func:`export_onnx` writes the file, :func:`verify_onnx` runs it with onnxruntime
and returns the largest absolute difference from the PyTorch model. Needs the ``[onnx]`` extra
(onnx, onnxscript, onnxruntime), imported lazily.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from ..models import describe, set_routing
from ..ops import implementation

Tensor = torch.Tensor
PathLike = Union[str, "Path"]

DEFAULT_OPSET = 18
#: Height and width of the input traced for a dynamic export. The graph does not depend on it,
#: but the tracer keeps every intermediate tensor until it is done, so its memory grows with the
#: sample's tokens times the layers (base x4: over 24 GB at 37×53, 3.6 GB at 8×12). 8×12 is
#: padded on both axes (to one 16×16 window), so the padding gathers are traced too.
TRACE_SIZE = (8, 12)


def prepare_for_export(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with the deterministic argmax routing (what a graph can hold)."""
    model.eval()
    return set_routing(model, "argmax")


# -- export and verification -----------------------------------------------------------------
def export_onnx(model: nn.Module, path: PathLike, *, opset: int = DEFAULT_OPSET, dynamic: bool = True,
                dtype: torch.dtype = torch.float32, sample_size: Tuple[int, int] = TRACE_SIZE,
                dynamo: bool = False) -> Path:
    """Writes ``model`` (any family; put in eval mode with argmax routing) as ONNX, one file with
    the weights inside, tracing its forward under ``ops.implementation("export")``.

    Input ``input``: ``1×C×H×W`` in [0, 1]; output ``output``: ``1×C×(H·s)×(W·s)``. With
    ``dynamic`` height and width are free (one graph for every size, traced at ``sample_size``),
    else fixed to ``sample_size``. ``dtype`` float16 exports a half-precision graph (scan kept in float32).
    ``dynamo`` selects torch.export's exporter (needs onnxscript; far slower on this graph of
    unrolled scan steps: it did not finish a light model in 15 minutes on a busy 2-core machine),
    else the TorchScript tracer (sizes are traced, so the graph stays shape-generic)."""
    import onnx  # noqa: F401 - fail early with ImportError when the extra is missing

    from ..utils.atomic import atomic_path

    model = prepare_for_export(model.to(dtype=dtype, device="cpu"))
    x = torch.rand(1, describe(model).in_chans, *sample_size, dtype=dtype)
    with torch.no_grad(), implementation("export"), atomic_path(path) as tmp:
        if dynamo:
            dims = torch.export.Dim.DYNAMIC
            program = torch.onnx.export(model, (x,), None, dynamo=True, opset_version=opset,
                                        input_names=["input"], output_names=["output"],
                                        dynamic_shapes={"x": {2: dims, 3: dims}} if dynamic else None)
            program.save(str(tmp), external_data=False)
        else:
            axes = {"input": {2: "height", 3: "width"}, "output": {2: "out_height", 3: "out_width"}}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer and deprecation warnings
                torch.onnx.export(model, (x,), str(tmp), dynamo=False, opset_version=opset,
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


def verify_onnx(path: PathLike, model: nn.Module, inputs: Iterable[Tensor],
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
