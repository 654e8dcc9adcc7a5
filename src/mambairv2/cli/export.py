"""``mambairv2 export MODEL -o model.onnx``: ONNX export of the model's own forward traced under
``ops.implementation("export")``, then a self-check with onnxruntime against the PyTorch model
(see :mod:`mambairv2.integrations.onnx_export`)."""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from ..defaults import MAX_EXPORT_PIXELS
from .errors import CLIError, parse_size
from .model_option import add_model_argument, load_model_arg, model_from_args, resolve_model

TOLERANCE = 1e-4  # float32: the largest accepted |onnxruntime − PyTorch|


#: The oldest opset torch's (dynamo) ONNX exporter writes.
MIN_OPSET = 18


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export", help="export a model to ONNX and verify it with onnxruntime",
        description="Export a MambaIR or MambaIRv2 model to ONNX (input 'input' 1×C×H×W in [0, 1], output "
                    "'output' 1×C×(H·s)×(W·s)), then run the file with onnxruntime on a random input "
                    "(and on --image) and compare with PyTorch: the largest absolute error is "
                    "printed, and the command fails (exit 1) when it exceeds --tolerance in "
                    "float32. Needs: pip install 'mambairv2[onnx]'.")
    add_model_argument(p, variants=True)
    p.add_argument("-o", "--output", required=True, help="ONNX file to write")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 18)")
    p.add_argument("--dynamic", action="store_true",
                   help="free height and width (one graph for every size); default: fixed --size")
    p.add_argument("--size", default="64x64", help="WIDTHxHEIGHT of the fixed input without --dynamic (default: %(default)s)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16"),
                   help="graph dtype (float16: half-precision weights and activations, scan in float32)")
    p.add_argument("--image", default=None, help="also verify on this image (default: random inputs only)")
    p.add_argument("--tolerance", type=float, default=TOLERANCE,
                   help="largest accepted error in float32 (default: %(default)g)")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime check")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from ..models import describe

    model_from_args(args)
    from ..utils.outputs import OutputError, check_output

    ref = resolve_model(args, variants=True)  # an unknown name: one line before anything else
    try:
        out = check_output(args.output, "-o", inputs=[p for p in (ref.path, args.image) if p],
                           overwrite=args.overwrite, suffixes=(".onnx",))
    except OutputError as exc:
        raise CLIError(str(exc)) from None
    size = parse_size(args.size, "--size")
    if not args.dynamic and size[0] * size[1] > MAX_EXPORT_PIXELS:
        raise CLIError(f"--size {args.size}: {size[0] * size[1]:,} pixels, over the {MAX_EXPORT_PIXELS:,} an "
                       "export traces and verifies at once; export a smaller size, or --dynamic")
    if not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        raise CLIError(f"--tolerance must be a finite number ≥ 0, got {args.tolerance}")
    try:
        from ..integrations import onnx_export as ox
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise CLIError(f"ONNX export needs the [onnx] extra ({exc.name} missing): "
                       "pip install 'mambairv2[onnx]'") from None
    newest = int(onnx.defs.onnx_opset_version())
    if args.opset is not None and not MIN_OPSET <= args.opset <= newest:
        raise CLIError(f"--opset must be between {MIN_OPSET} and {newest} (the installed onnx's newest), "
                       f"got {args.opset}")
    _, model = load_model_arg(args, variants=True)
    dtype = torch.float16 if args.dtype == "float16" else torch.float32
    in_chans = describe(model).in_chans
    if args.image:
        from ..analysis.inputs import image_tensor

        image = image_tensor(args.image, in_chans)  # an unreadable file: one-line error
    else:
        image = None
    started = time.perf_counter()
    print(f"exporting {describe(model).label} from {ref.label} "
          f"({'dynamic H×W' if args.dynamic else f'{size[0]}×{size[1]}'}, {args.dtype}) …", file=sys.stderr)
    ox.export_onnx(model, out, opset=args.opset or ox.DEFAULT_OPSET, dynamic=args.dynamic, dtype=dtype,
                   sample_size=ox.TRACE_SIZE if args.dynamic else size)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.0f} s",
          file=sys.stderr)
    if args.no_verify:
        return 0
    sizes = [(37, 53), (64, 64)] if args.dynamic else [size]
    if image is not None and not args.dynamic and tuple(image.shape[-2:]) != size:
        print(f"note: --image is {image.shape[-2]}×{image.shape[-1]}, the graph takes {size[0]}×{size[1]}: "
              "its centre crop is used", file=sys.stderr)
        image = _crop(image, size)
    inputs = ox.verification_inputs(in_chans, sizes, image)
    errors = ox.verify_onnx(out, model.to(dtype), inputs)
    worst = max(err for _, err in errors)
    for i, (shape, err) in enumerate(errors):
        what = "image" if image is not None and i == len(errors) - 1 else "random input"
        print(f"onnxruntime vs PyTorch, {what} {shape[2]}×{shape[3]}: max abs error {err:.3g}")
    if dtype == torch.float32 and not worst <= args.tolerance:
        raise CLIError(f"max abs error {worst:.3g} exceeds {args.tolerance:g}: the export is not faithful "
                       f"({out} was kept for inspection)", code=1)
    return 0


def _crop(x, size):
    h, w = size
    top, left = max(0, (x.shape[-2] - h) // 2), max(0, (x.shape[-1] - w) // 2)
    x = x[..., top:top + h, left:left + w]
    if tuple(x.shape[-2:]) != (h, w):
        raise CLIError(f"--image is smaller than --size {w}x{h}")
    return x
