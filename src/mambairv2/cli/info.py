"""``mambairv2 info MODEL``: what a model holds (family, variant, task, scale, parameters);
``mambairv2 info --models``: every model name this install knows;
``mambairv2 info --kernels``: which implementation each operator uses here, and why."""
from __future__ import annotations

import argparse
import json

from ..utils.text import brief, printable
from .errors import CLIError
from .model_option import KINDS_HELP, load_model_arg


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
    p.add_argument("file", nargs="?", metavar="MODEL", help=KINDS_HELP + ", or a variant name")
    p.add_argument("--model", "--weights", "--variant", dest="model", metavar="NAME", help="the same as MODEL")
    p.add_argument("--kernels", action="store_true",
                   help="show the operator implementations used here instead of a checkpoint")
    p.add_argument("--models", action="store_true",
                   help="list every model name this install knows (bundled, variants, downloaded)")
    p.add_argument("--variants", action="store_true",
                   help="list the named variants with their parameter counts (create_model / bench names)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def describe(args: argparse.Namespace) -> dict:
    """Summary of a model as a dict."""
    from ..models import describe as describe_model

    ref, model = load_model_arg(args, variants=True)
    info = describe_model(model)
    return {
        "model": ref.label,
        "kind": ref.kind,
        "file": str(ref.path) if ref.path else ref.label,
        "family": info.family,
        "arch": info.arch,
        "variant": info.variant,
        "task": info.task,
        "scale": info.scale,
        "in_chans": info.in_chans,
        "params": info.params,
        "config": model.config.to_dict(),
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


def variants() -> list:
    """The named variants: name, family, task, SR scales, parameters (at x4 for SR)."""
    import torch

    from ..models import FAMILIES, create_model

    rows = []
    for family in FAMILIES:
        for name in family.variants:
            with torch.device("meta"):  # shapes only: no memory, no initialisation work
                model = create_model(name, scale=4)
            rows.append({"name": name, "family": family.display, "arch": model.config.arch,
                         "task": model.config.task,
                         "scales": [2, 3, 4] if name in family.sr_variants else [1],
                         "params": sum(p.numel() for p in model.parameters())})
    return rows


def _print_models(rows: list) -> None:
    """The table of :func:`~mambairv2.models.list_models`; every cell escaped and cut, since the
    downloaded rows come from ``downloads.json``, a file anyone may have edited."""
    from ..models.degradation import task_name

    print(f"{'name':<28} {'family':<10} {'task':<22} {'scales':<8} source")
    for r in rows:
        task = brief(task_name(r["task"]) if isinstance(r["task"], str) else r["task"] or "?", 22)
        scales = brief(",".join(map(str, r["scales"])), 8)
        print(f"{brief(r['name']):<28} {brief(r['family'], 10):<10} {task:<22} {scales:<8} {r['source']}")


def _print_variants(rows: list) -> None:
    print(f"{'name':<16} {'arch':<15} {'task':<8} {'scales':<8} params (x4 for SR)")
    for r in rows:
        print(f"{r['name']:<16} {r['arch']:<15} {r['task']:<8} {','.join(map(str, r['scales'])):<8} "
              f"{r['params']:,}")


def run(args: argparse.Namespace) -> int:
    listings = [flag for flag, on in (("--models", args.models), ("--variants", args.variants),
                                      ("--kernels", args.kernels)) if on]
    model = args.model or args.file
    if len(listings) > 1 or (listings and model):
        what = " and ".join(listings + ([f"the model {model}"] if model else []))
        raise CLIError(f"info shows one thing at a time; got {what}")
    if args.models:
        from ..models import list_models

        rows = list_models()
        print(json.dumps(rows, indent=2)) if args.json else _print_models(rows)
        return 0
    if args.variants:
        rows = variants()
        print(json.dumps(rows, indent=2)) if args.json else _print_variants(rows)
        return 0
    if args.kernels:
        d = kernels()
        print(json.dumps(d, indent=2)) if args.json else _print_kernels(d)
        return 0
    args.model = args.model or args.file
    if not args.model:
        raise CLIError("give a model (a checkpoint file or a name), or --models, --kernels or --variants")
    from ..models.degradation import task_name

    d = describe(args)
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    print(printable(f"model:    {d['model']}"))
    if d["kind"] != "variant":
        print(printable(f"file:     {d['file']}"))
    print(f"family:   {d['family']}")
    print(f"arch:     {d['arch']}")
    print(f"variant:  {d['variant']}")
    print(f"task:     {d['task']} ({task_name(d['task'])})")
    print(f"scale:    x{d['scale']}")
    print(f"channels: {d['in_chans']}")
    print(f"params:   {d['params']:,}")
    c = {k: v for k, v in d["config"].items() if k not in ("arch", "upscale", "in_chans")}
    c["upsampler"] = c["upsampler"] or "none"
    print("config:   " + " ".join(f"{k}={v}" for k, v in c.items()))
    return 0
