"""``mambairv2 bench``: latency, memory, MACs and roofline fraction of a variant."""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Dict, List

from .errors import CLIError

DTYPES = ("float32", "bfloat16", "float16")


def add_parser(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "bench", help="measure speed, memory, MACs and roofline fraction",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Times the forward pass of a variant (random weights: speed does not depend on "
        "them) on random square inputs: warm-up, several timed runs, median latency, peak memory, "
        "MACs (selective scan included, comparable with the paper's tables), achieved GFLOP/s and "
        "the device's sgemm GFLOP/s measured in the same run, so the fraction of the matmul "
        "roofline is reported. With --train, the time of a training step instead.")
    p.add_argument("--variant", default="light", help="light, small, base, large, denoise or jpeg")
    p.add_argument("--scale", type=int, default=4, help="SR scale (2, 3 or 4)")
    p.add_argument("--size", type=int, default=128, help="input height and width (LR pixels)")
    p.add_argument("--sizes", default=None,
                   help="comma-separated sizes for a sweep (overrides --size), e.g. 64,128,256")
    p.add_argument("--batch", type=int, default=1, help="batch size")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--dtype", default="float32", choices=DTYPES,
                   help="compute dtype (half types use autocast on CUDA)")
    p.add_argument("--backend", default="auto",
                   help="selective scan backend: auto, chunked, compiled, reference, mamba_ssm")
    p.add_argument("--compare", action="append", default=[], metavar="BACKEND",
                   help="also time the model with this scan backend in the same run, at every size "
                        "(repeatable; e.g. --compare chunked)")
    p.add_argument("--compare-reference", action="store_true",
                   help="same as --compare reference (one run per size: it is slow)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    p.add_argument("--repeats", type=int, default=3, help="timed runs (the median is reported)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--compile", action="store_true", help="run through torch.compile")
    p.add_argument("--train", action="store_true", help="time a training step (forward, L1 loss, backward, Adam)")
    p.add_argument("--json", dest="json_out", default=None, help="write the results to this JSON file")
    p.set_defaults(func=run)


def _device(name: str):
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device cuda: no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise CLIError(f"--device must be cpu, cuda or auto, got {name!r}")
    return torch.device(name)


def run(args: argparse.Namespace) -> int:
    import torch

    from .. import bench, create_model
    from ..config import VARIANTS
    from ..ops import BACKENDS, implementation, resolve_backend

    if args.variant not in VARIANTS:
        raise CLIError(f"unknown variant {args.variant!r}; choose one of {', '.join(VARIANTS)}")
    compare = list(dict.fromkeys(args.compare + (["reference"] if args.compare_reference else [])))
    for name in [args.backend, *compare]:
        if name not in BACKENDS:
            raise CLIError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    try:
        sizes = sorted(int(s) for s in args.sizes.split(",")) if args.sizes else [args.size]
    except ValueError:
        raise CLIError(f"--sizes must be comma-separated integers, got {args.sizes!r}") from None
    if min(sizes) < 1 or args.batch < 1 or args.repeats < 1:
        raise CLIError("sizes, --batch and --repeats must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = _device(args.device)
    dtype = getattr(torch, args.dtype)
    if device.type == "cpu" and dtype != torch.float32:
        print("note: half precision on CPU runs through autocast and is usually slower", file=sys.stderr)

    try:
        model = create_model(args.variant, scale=args.scale).to(device)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    model.train(args.train)
    params = sum(p.numel() for p in model.parameters())
    runner = torch.compile(model) if args.compile else model
    sgemm = bench.sgemm_gflops(device)
    print(f"{args.variant} x{model.config.upscale}  params {params:,}  device {device}  threads "
          f"{torch.get_num_threads()}  sgemm {sgemm:.1f} GFLOP/s", file=sys.stderr)

    results: List[Dict] = []
    for size in sizes:
        x = torch.rand(args.batch, model.config.in_chans, size, size, device=device)
        macs = bench.count_macs(model.eval(), x)
        model.train(args.train)
        backend = _backend_used(x, args.backend, args.train, resolve_backend)
        with implementation(selective_scan=args.backend) if args.backend != "auto" else implementation():
            if args.train:
                fn = _train_step(runner, model, x, device, dtype)
            else:
                fn = _forward(runner, x, device, dtype)
            times = bench.time_call(fn, device, args.warmup, args.repeats)
        latency = bench.median(times)
        work = macs["total"] * (3 if args.train else 1)  # backward ≈ 2× forward
        gflops = 2 * work / latency / 1e9
        row = {
            "size": size, "batch": args.batch, "backend": backend, "latency_s": latency,
            "times_s": times, "peak_memory_mb": bench.peak_memory_mb(device),
            "macs_g": macs["total"] / 1e9, "macs_scan_g": macs["scan"] / 1e9, "gflops": gflops,
            "roofline_fraction": gflops / sgemm,
            "us_per_pixel": latency / (args.batch * size * size) * 1e6,
        }
        results.append(row)
        print(f"  {size:5d}²  {latency:8.3f} s  {row['macs_g']:8.2f} GMACs  {gflops:7.1f} GFLOP/s  "
              f"{100 * row['roofline_fraction']:5.1f}% of sgemm  {row['us_per_pixel']:7.2f} µs/px  "
              f"peak {row['peak_memory_mb']:.0f} MB", file=sys.stderr)
        for name in compare:
            with implementation(selective_scan=name) if name != "auto" else implementation():
                fn = _train_step(runner, model, x, device, dtype) if args.train else _forward(runner, x, device, dtype)
                slow = name == "reference"  # the sequential scan is slow: one run, no warm-up
                other = bench.median(bench.time_call(fn, device, warmup=0 if slow else args.warmup,
                                                     repeats=1 if slow else args.repeats))
            used = _backend_used(x, name, args.train, resolve_backend)
            row[f"{name}_latency_s"] = other
            row[f"speedup_vs_{name}"] = other / latency
            print(f"         {used} scan: {other:.3f} s  -> {backend} is {other / latency:.1f}x faster",
                  file=sys.stderr)

    report = {
        "variant": args.variant, "scale": model.config.upscale, "params": params,
        "mode": "train_step" if args.train else "forward", "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "dtype": args.dtype, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "compile": bool(args.compile), "sgemm_gflops": sgemm, "results": results,
    }
    if args.json_out:
        path = Path(args.json_out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(report, indent=2))
        os.replace(tmp, path)
    else:
        print(json.dumps(report, indent=2))
    return 0


def _backend_used(x, name: str, train: bool, resolve_backend) -> str:
    """The scan backend the model's scans resolve to (training needs gradients, which the
    compiled CPU kernel does not provide: ``auto`` then falls back to ``chunked``)."""
    used = resolve_backend(x, name)
    if train and name == "auto" and used == "compiled":
        return "chunked"
    return used


def _forward(runner, x, device, dtype):
    import torch

    from ..bench import autocast_for

    def fn():
        with torch.no_grad(), autocast_for(device, dtype):
            return runner(x)
    return fn


def _train_step(runner, model, x, device, dtype):
    import torch

    from ..bench import autocast_for

    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    s = model.config.upscale
    target = torch.rand(x.shape[0], x.shape[1], x.shape[2] * s, x.shape[3] * s, device=device)

    def fn():
        opt.zero_grad(set_to_none=True)
        with autocast_for(device, dtype):
            loss = (runner(x).float() - target).abs().mean()
        loss.backward()
        opt.step()
    return fn
