"""``mambairv2 bench``: latency, memory, MACs and roofline fraction of a variant."""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Dict, List, Tuple

from ..defaults import DEFAULT_VARIANT_SCALE
from .errors import CLIError
from .model_option import add_model_option, load_model_arg, model_files

DTYPES = ("float32", "bfloat16", "float16")


class _Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: …)" only where the help does not already say it, and not to flags."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.nargs == 0 or action.default in (None, []):
            return text
        return super()._get_help_string(action)


def add_parser(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "bench", help="measure speed, memory, MACs and roofline fraction",
        formatter_class=_Defaults,
        description="Times the forward pass of a model (a variant name gives random weights: speed "
        "does not depend on them) on random square inputs: warm-up, several timed runs, median latency, peak memory, "
        "MACs (counted as the paper counts them, selective scan included: see `mambairv2 analyze complexity`), achieved GFLOP/s and "
        "the fraction of the machine's matmul roof measured in the same run: the faster of torch.mm (MKL) and oneDNN's "
        "linear, both printed, in the run's dtype (bfloat16 runs against the bfloat16 roof). With --train, the time of a training step instead.")
    add_model_option(p, default="light", variants=True)
    p.add_argument("--scale", type=int, default=DEFAULT_VARIANT_SCALE,
                   help=f"SR scale of a variant (2, 3 or 4; default: {DEFAULT_VARIANT_SCALE}, as the bundled model)")
    p.add_argument("--size", type=int, default=128, help="input height and width (LR pixels)")
    p.add_argument("--sizes", default=None,
                   help="comma-separated sizes for a sweep (overrides --size), e.g. 64,128,256")
    p.add_argument("--batch", type=int, default=1, help="batch size")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--dtype", default="float32", choices=DTYPES,
                   help="compute dtype: half types run under autocast with float32 weights (CPU "
                        "bfloat16: refused where the CPU has no native bfloat16)")
    p.add_argument("--backend", default="auto",
                   help="selective scan backend: auto, chunked, compiled, reference, mamba_ssm, triton, export")
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
    p.add_argument("--json", dest="json_out", default=None, metavar="OUT",
                   help="also write the results, every timing included, to this JSON file (the table "
                        "on stdout is the output otherwise)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
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

    sizes, compare = _check_args(args)
    if args.threads is not None and args.threads < 1:
        raise CLIError(f"--threads must be a positive number of threads, got {args.threads}")
    if args.json_out:
        from ..utils.outputs import OutputError, check_output

        try:
            check_output(args.json_out, "--json", inputs=model_files(args), overwrite=args.overwrite,
                         suffixes=(".json",))
        except OutputError as exc:
            raise CLIError(str(exc)) from None
    if args.threads:
        torch.set_num_threads(args.threads)
    device = _device(args.device)
    dtype = getattr(torch, args.dtype)
    if device.type == "cpu" and dtype == torch.bfloat16:
        from ..ops import check_cpu_bfloat16

        try:
            check_cpu_bfloat16()
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    elif device.type == "cpu" and dtype == torch.float16:
        print("note: float16 on CPU runs through autocast and is usually slower", file=sys.stderr)
    ref, model = _model(args, device)
    runner = torch.compile(model) if args.compile else model
    from ..analysis import measure as bench

    roof_dtype = torch.bfloat16 if dtype == torch.bfloat16 else torch.float32
    roofs = bench.roofs(device, roof_dtype)
    params = sum(p.numel() for p in model.parameters())
    print(f"{ref.label} x{model.config.upscale}  params {params:,}  device {device}  threads "
          f"{torch.get_num_threads()}  {bench.describe_roofs(roofs, roof_dtype)}")
    results = [_measure_size(args, model, runner, size, device, dtype, roofs["roof"], compare)
               for size in sizes]
    report = {
        "variant": args.model, "scale": model.config.upscale, "params": params,
        "mode": "train_step" if args.train else "forward", "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "dtype": args.dtype, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "compile": bool(args.compile), "sgemm_gflops": roofs["matmul"], "onednn_gflops": roofs["onednn"],
        "roof_gflops": roofs["roof"], "roof_dtype": str(roof_dtype).replace("torch.", ""), "results": results,
    }
    _write_report(report, args.json_out, args.overwrite)
    return 0


def _check_args(args: argparse.Namespace) -> Tuple[List[int], List[str]]:
    """The sizes to time and the backends to compare; CLIError on a bad argument."""
    from ..ops import BACKENDS

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
    return sizes, compare


def _model(args: argparse.Namespace, device):
    from ..models import set_routing

    ref, model = load_model_arg(args, device, variants=True, scale=args.scale)
    return ref, set_routing(model, "argmax").train(args.train)


def _measure_size(args, model, runner, size: int, device, dtype, roof: float, compare: List[str]) -> Dict:
    """Times one size (and the compared backends at it); prints a line, returns the JSON row."""
    import torch

    from ..analysis import measure as bench
    from ..ops import resolve_backend

    x = torch.rand(args.batch, model.config.in_chans, size, size, device=device)
    macs = bench.count_macs(model, x)
    backend = _backend_used(x, args.backend, args.train, resolve_backend)
    with _selected(args.backend):
        fn = _step(args, runner, model, x, device, dtype)
        times = bench.time_call(fn, device, args.warmup, args.repeats)
    latency = bench.median(times)
    work = macs["total"] * (3 if args.train else 1)  # backward ≈ 2× forward
    gflops = 2 * work / latency / 1e9
    row = {
        "size": size, "batch": args.batch, "backend": backend, "latency_s": latency,
        "times_s": times, "peak_memory_mb": bench.peak_memory_mb(device),
        "macs_g": macs["total"] / 1e9, "macs_all_g": macs["all"] / 1e9,
        "macs_scan_g": macs["scan"] / 1e9, "gflops": gflops,
        "roofline_fraction": gflops / roof,
        "us_per_pixel": latency / (args.batch * size * size) * 1e6,
    }
    print(f"  {size:5d}²  {latency:8.3f} s  {row['macs_g']:8.2f} GMACs  {gflops:7.1f} GFLOP/s  "
          f"{100 * row['roofline_fraction']:5.1f}% of roof  {row['us_per_pixel']:7.2f} µs/px  "
          f"peak {row['peak_memory_mb']:.0f} MB")
    for name in compare:
        _compare_backend(args, model, runner, x, device, dtype, name, backend, latency, row)
    return row


def _compare_backend(args, model, runner, x, device, dtype, name: str, backend: str, latency: float,
                     row: Dict) -> None:
    """Times the model with scan backend ``name`` and adds its latency and speed-up to ``row``."""
    from ..analysis import measure as bench
    from ..ops import resolve_backend

    with _selected(name):
        fn = _step(args, runner, model, x, device, dtype)
        slow = name == "reference"  # the sequential scan is slow: one run, no warm-up
        other = bench.median(bench.time_call(fn, device, warmup=0 if slow else args.warmup,
                                             repeats=1 if slow else args.repeats))
    used = _backend_used(x, name, args.train, resolve_backend)
    row[f"{name}_latency_s"] = other
    row[f"speedup_vs_{name}"] = other / latency
    print(f"         {used} scan: {other:.3f} s  -> {backend} is {other / latency:.1f}x faster")


def _selected(name: str):
    """The dispatch-layer selection that runs the selective scan with backend ``name``."""
    from ..ops import implementation

    return implementation(selective_scan=name) if name != "auto" else implementation()


def _step(args, runner, model, x, device, dtype):
    return _train_step(runner, model, x, device, dtype) if args.train else _forward(runner, x, device, dtype)


def _write_report(report: Dict, json_out, overwrite: bool = False) -> None:
    """The report as JSON, written atomically to ``json_out`` (none without it: the table is the
    output)."""
    if not json_out:
        return
    from ..utils.atomic import atomic_path

    with atomic_path(json_out, overwrite=overwrite) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2))


def _backend_used(x, name: str, train: bool, resolve_backend) -> str:
    """The scan backend the model's scans resolve to (training needs gradients, which the
    compiled CPU kernel does not provide: ``auto`` then falls back to ``chunked``)."""
    used = resolve_backend(x, name)
    if train and name == "auto" and used == "compiled":
        return "chunked"
    return used


def _forward(runner, x, device, dtype):
    import torch

    from ..analysis.measure import autocast_for

    def fn():
        with torch.no_grad(), autocast_for(device, dtype):
            return runner(x)
    return fn


def _train_step(runner, model, x, device, dtype):
    import torch

    from ..analysis.measure import autocast_for

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
