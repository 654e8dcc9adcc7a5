"""``mambairv2 info FILE``: what a checkpoint holds (variant, task, scale, parameters);
``mambairv2 info --kernels``: which implementation each operator uses here, and why."""
from __future__ import annotations

import argparse
import json

from .errors import CLIError


def add_parser(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "info", help="show the configuration detected in a checkpoint",
        description="Reads a checkpoint (the authors' BasicSR .pth or a .safetensors written by "
        "this package), detects its configuration from the tensors and prints the variant, task, "
        "scale and parameter count. Nothing is unpickled beyond plain tensors. With --kernels, "
        "prints which implementation of each operator (selective scan, window attention, SGN "
        "routing, LayerNorm, linear+activation) runs on this machine for inference and training, "
        "and why (compiler missing, dtype, gradients needed...); the selection can be changed with "
        "MAMBAIRV2_IMPLEMENTATION=auto|pytorch|reference.")
    p.add_argument("file", nargs="?", help="checkpoint file (.pth or .safetensors)")
    p.add_argument("--kernels", action="store_true",
                   help="show the operator implementations used here instead of a checkpoint")
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


def kernels() -> dict:
    """Per device/dtype/mode: each operator's implementation and the reason."""
    import torch

    from ..ops import describe as describe_ops, selected

    cases = [("cpu", torch.float32, False), ("cpu", torch.float32, True), ("cpu", torch.float64, False)]
    if torch.cuda.is_available():
        cases += [("cuda", torch.float32, False), ("cuda", torch.bfloat16, False), ("cuda", torch.float32, True)]
    out = {"selection": selected("selective_scan"), "threads": torch.get_num_threads(), "cases": []}
    for device, dtype, grad in cases:
        chosen = describe_ops(device, dtype, requires_grad=grad)
        out["cases"].append({"device": device, "dtype": str(dtype).replace("torch.", ""),
                             "mode": "training" if grad else "inference",
                             "ops": {op: {"implementation": c.name, "reason": c.reason}
                                     for op, c in chosen.items()}})
    return out


def _print_kernels(d: dict) -> None:
    print(f"selection: {d['selection']} (MAMBAIRV2_IMPLEMENTATION or mambairv2.ops.implementation)  "
          f"threads: {d['threads']}")
    for case in d["cases"]:
        print(f"{case['device']} {case['dtype']} {case['mode']}:")
        for op, c in case["ops"].items():
            print(f"  {op:<17} {c['implementation']:<10} {c['reason']}")


def run(args: argparse.Namespace) -> int:
    if args.kernels:
        d = kernels()
        print(json.dumps(d, indent=2)) if args.json else _print_kernels(d)
        return 0
    if not args.file:
        raise CLIError("give a checkpoint file, or --kernels")
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
