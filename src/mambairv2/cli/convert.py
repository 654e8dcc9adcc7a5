"""``mambairv2 convert CKPT OUT.safetensors|OUT.pth``: any MambaIRv2 checkpoint → safetensors with
the detected configuration in its header, or a BasicSR ``.pth`` with it beside ``params``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import CLIError
from .model_option import add_model_argument, load_model_arg, model_from_args, resolve_model


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "convert", help="convert a checkpoint to .safetensors or .pth (weights + detected configuration)",
        description="Convert a MambaIRv2 checkpoint (a released BasicSR .pth, a bare state dict or "
                    "a .safetensors) into a .safetensors file holding the weights and, in its "
                    "header, the detected configuration, or into a BasicSR .pth holding 'params' "
                    "and the configuration beside them (the authors' loader reads 'params' only). "
                    "No code is unpickled; the result loads with load_model() and 'mambairv2 "
                    "restore --weights'.")
    add_model_argument(p)
    p.add_argument("output", metavar="OUT", nargs="?", help="output file (.safetensors or .pth)")
    p.add_argument("-o", dest="output_option", metavar="OUT", help="the same as OUT")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"),
                   help="dtype of the stored weights (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from ..models import describe, save_checkpoint, save_safetensors

    if args.output is None and args.model and args.model_positional and args.output_option is None:
        args.output = args.model_positional  # `convert --model X OUT`: OUT was read as MODEL
        args.model_positional = None
    model_from_args(args)
    args.output = args.output or args.output_option
    if not args.output:
        raise CLIError("give the output file (OUT or -o OUT)")
    ref = resolve_model(args)
    from ..utils.outputs import OutputError, check_output

    try:
        out = check_output(args.output, "OUT", inputs=[ref.path] if ref.path else [], overwrite=args.overwrite,
                           suffixes=(".safetensors", ".pth"))
    except OutputError as exc:
        raise CLIError(str(exc)) from None
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[args.dtype]
    _, model = load_model_arg(args, "cpu", dtype)
    try:
        if out.suffix.lower() == ".pth":
            save_checkpoint(out, model.state_dict(), config=model.config)
        else:
            save_safetensors(model, out)
    except OSError as exc:
        raise CLIError(f"{out}: cannot write ({exc.strerror or exc})") from None
    info = describe(model)
    print(f"wrote {out}: {info.label} from {ref.label}, {info.arch}, {info.in_chans}-channel input, "
          f"{info.params:,} parameters, {args.dtype}", file=sys.stderr)
    return 0
