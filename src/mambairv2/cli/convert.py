"""``mambairv2 convert CKPT OUT.safetensors``: any MambaIRv2 checkpoint → safetensors with the
detected configuration in its header."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import CLIError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "convert", help="convert a checkpoint to .safetensors (weights + detected configuration)",
        description="Convert a MambaIRv2 checkpoint (a released BasicSR .pth, a bare state dict or "
                    "a .safetensors) into a .safetensors file holding the weights and, in its "
                    "header, the detected configuration. No code is unpickled; the result loads "
                    "with load_model() and 'mambairv2 restore --weights'.")
    p.add_argument("checkpoint", metavar="CKPT", help="input checkpoint (.pth or .safetensors)")
    p.add_argument("output", metavar="OUT", help="output file (.safetensors)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"),
                   help="dtype of the stored weights (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from ..checkpoint import CheckpointError, load_model, save_safetensors

    src, out = Path(args.checkpoint), Path(args.output)
    if out.suffix.lower() != ".safetensors":
        raise CLIError(f"{out}: the output name must end in .safetensors")
    if out.exists() and not args.overwrite:
        raise CLIError(f"{out} exists (--overwrite replaces it)")
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise CLIError(f"{out}: the output must not be the input checkpoint")
    if out.exists() and out.is_dir():
        raise CLIError(f"{out}: is a folder")
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[args.dtype]
    try:
        model = load_model(src, device="cpu", dtype=dtype)
    except CheckpointError as exc:
        raise CLIError(str(exc)) from None
    try:
        save_safetensors(model, out)
    except OSError as exc:
        raise CLIError(f"{out}: cannot write ({exc.strerror or exc})") from None
    cfg = model.config
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {out}: {cfg.arch} x{cfg.upscale}, {cfg.in_chans}-channel input, "
          f"{n:,} parameters, {args.dtype}", file=sys.stderr)
    return 0
