"""``mambairv2 info FILE``: what a checkpoint holds (variant, task, scale, parameters)."""
from __future__ import annotations

import argparse
import json

from .errors import CLIError


def add_parser(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "info", help="show the configuration detected in a checkpoint",
        description="Reads a checkpoint (the authors' BasicSR .pth or a .safetensors written by "
        "this package), detects its configuration from the tensors and prints the variant, task, "
        "scale and parameter count. Nothing is unpickled beyond plain tensors.")
    p.add_argument("file", help="checkpoint file (.pth or .safetensors)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def describe(path: str) -> dict:
    """Summary of a checkpoint file as a dict."""
    from ..checkpoint import CheckpointError, load_model
    from ..config import variant_name

    try:
        model = load_model(path)
    except CheckpointError as exc:
        raise CLIError(str(exc)) from None
    c = model.config
    return {
        "file": str(path),
        "arch": c.arch,
        "variant": variant_name(c),
        "task": c.task,
        "scale": c.upscale,
        "in_chans": c.in_chans,
        "params": sum(p.numel() for p in model.parameters()),
        "config": c.to_dict(),
    }


def run(args: argparse.Namespace) -> int:
    d = describe(args.file)
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    print(f"file:     {d['file']}")
    print(f"arch:     {d['arch']}")
    print(f"variant:  {d['variant']}")
    print(f"task:     {d['task']}")
    print(f"scale:    x{d['scale']}")
    print(f"channels: {d['in_chans']}")
    print(f"params:   {d['params']:,}")
    c = d["config"]
    print(f"config:   embed_dim={c['embed_dim']} depths={c['depths']} heads={c['num_heads']} "
          f"d_state={c['d_state']} inner_rank={c['inner_rank']} num_tokens={c['num_tokens']} "
          f"mlp_ratio={c['mlp_ratio']} window={c['window_size']} upsampler={c['upsampler'] or 'none'}")
    return 0
