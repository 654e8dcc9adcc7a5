"""Where a CPU forward of MambaIRv2 spends its time, by operator category (``torch.profiler``).

Each call of an ``ops`` operator made by the model (window attention, selective scan, SGN
routing, LayerNorm, linear, fused linear/convolution with activation) is wrapped in a profiler
range of its own, so the compiled C kernels, which the profiler cannot see, are timed with the
PyTorch ops they call. Every other top-level PyTorch op is put in a category by its name
(convolutions split into depth-wise and dense by the weight's shape). Times are the profiled
forward's CPU times; ``python`` is the rest of the profiled wall time (interpreter, hooks).
The un-profiled latency of the same forward is reported beside it.

``--dtype bfloat16`` profiles the CPU's bfloat16 mode (``mambairv2.ops.compute_precision``).
A float32 profile also gives the share of its time spent in GEMMs (linears and dense
convolutions) and the bfloat16 bound that follows from it (Amdahl): the speed-up if every GEMM
ran faster by the ratio of the machine's bfloat16 and float32 roofs (measured in the same run)
and nothing else changed.

    python benchmarks/profile_cpu.py [--cases light:128,base:64] [--threads 1] [--repeats 3]
        [--dtype float32|bfloat16] [--json benchmarks/results/profile_cpu.json]
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer_cpu  # noqa: E402 - the sibling benchmark: machine description, commit

ROOT = peer_cpu.ROOT
#: the ``ops`` functions the model modules call, each timed as its own category
OPS_FUNCTIONS = ("window_attention", "selective_scan", "sgn_route", "sgn_order", "linear", "linear_act",
                 "conv_act", "conv_gate", "layer_norm")
#: categories of the remaining top-level PyTorch ops, by op name
ATEN_CATEGORIES = {
    "gemm (aten)": ("aten::linear", "aten::addmm", "aten::mm", "aten::bmm", "aten::matmul"),
    "copy/gather": ("aten::contiguous", "aten::clone", "aten::copy_", "aten::index_select", "aten::gather",
                    "aten::cat", "aten::pixel_shuffle", "aten::index", "aten::take_along_dim",
                    "aten::pad", "aten::constant_pad_nd", "aten::reflection_pad2d", "aten::flip",
                    "aten::repeat", "aten::to", "aten::_to_copy", "aten::empty", "aten::zeros"),
}


#: the categories that are matrix products (what bfloat16 makes faster)
GEMM_CATEGORIES = ("linear", "linear_act", "conv", "conv_act", "conv_gate", "gemm (aten)")


@contextlib.contextmanager
def ops_ranges() -> Iterator[None]:
    """Wraps every ``ops`` function the loaded model modules call in a profiler range
    ``ops::NAME`` (and ``ops.LayerNorm.forward`` as ``ops::layer_norm``); undone on exit."""
    from mambairv2 import ops

    def ranged(name: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            with record_function(f"ops::{name}"):
                return fn(*args, **kwargs)
        return call

    originals = {getattr(ops, n): n for n in OPS_FUNCTIONS}
    patched: List[Tuple[Any, str, Any]] = []
    for module in [m for k, m in sys.modules.items() if k.startswith("mambairv2.models") and m]:
        for attr, value in list(vars(module).items()):
            if callable(value) and value in originals:
                patched.append((module, attr, value))
                setattr(module, attr, ranged(originals[value], value))
    forward = ops.LayerNorm.forward
    patched.append((ops.LayerNorm, "forward", forward))
    ops.LayerNorm.forward = ranged("layer_norm", forward)
    try:
        yield
    finally:
        for owner, attr, value in reversed(patched):
            setattr(owner, attr, value)


def category(name: str, shapes: List[Any]) -> str:
    """The category of a top-level profiler event."""
    if name.startswith("ops::"):
        return name[5:]
    if name in ("aten::conv2d", "aten::convolution", "aten::_convolution", "aten::mkldnn_convolution"):
        weight = shapes[1] if len(shapes) > 1 else []
        return "conv depth-wise" if len(weight) == 4 and weight[1] == 1 else "conv"
    for cat, names in ATEN_CATEGORIES.items():
        if name in names:
            return cat
    return "elementwise/other"


def profile_case(variant: str, size: int, repeats: int, dtype: str = "float32") -> Dict[str, Any]:
    """Profiles ``repeats`` forwards of ``variant`` x4 on a size² input after a warm-up."""
    from mambairv2.ops import compute_precision

    model = peer_cpu.build(variant)
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode(), compute_precision(torch.device("cpu"), dtype):
        model(x)
        plain = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            plain.append(time.perf_counter() - t0)
        with ops_ranges():
            model(x)
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                t0 = time.perf_counter()
                for _ in range(repeats):
                    model(x)
                wall = time.perf_counter() - t0
    per_cat: Dict[str, float] = defaultdict(float)
    per_op: Dict[str, float] = defaultdict(float)
    for event in prof.events():
        if event.cpu_parent is not None:
            continue
        cat = category(event.name, event.input_shapes or [])
        seconds = event.cpu_time_total / 1e6 / repeats
        per_cat[cat] += seconds
        if cat in ("elementwise/other", "copy/gather", "gemm (aten)"):
            per_op[event.name] += seconds
    total = wall / repeats
    per_cat["python"] = max(0.0, total - sum(per_cat.values()))
    rows = sorted(per_cat.items(), key=lambda kv: -kv[1])
    return {"variant": variant, "size": size, "repeats": repeats, "dtype": dtype,
            "gemm_fraction": sum(per_cat.get(c, 0.0) for c in GEMM_CATEGORIES) / total,
            "latency_s": statistics.median(plain), "latency_runs_s": plain, "profiled_s": total,
            "categories": [{"category": c, "seconds": s, "fraction": s / total} for c, s in rows],
            "top_aten_ops": [{"op": o, "seconds": s, "fraction": s / total}
                             for o, s in sorted(per_op.items(), key=lambda kv: -kv[1])[:12]]}


def bfloat16_bound(gemm_fraction: float, roof_ratio: float) -> float:
    """Amdahl's bound: the speed-up of a forward whose GEMM share ``gemm_fraction`` runs
    ``roof_ratio`` times faster while the rest does not change."""
    return 1.0 / ((1.0 - gemm_fraction) + gemm_fraction / roof_ratio)


def add_bounds(report: Dict[str, Any]) -> None:
    """Adds the bfloat16 bound to every float32 case of ``report`` (needs both roofs)."""
    roofs = report.get("roofs_gflops") or {}
    if not roofs.get("bfloat16") or not roofs.get("float32"):
        return
    ratio = roofs["bfloat16"] / roofs["float32"]
    report["roof_ratio_bfloat16"] = ratio
    for case in report["cases"]:
        if case.get("dtype", "float32") == "float32":
            case["bfloat16_bound"] = bfloat16_bound(case["gemm_fraction"], ratio)


def table(report: Dict[str, Any]) -> str:
    lines = [f"Commit `{report['commit']}`, {report['cpu']}, {report['threads']} thread(s), load average "
             f"{report['load_average'][0][0]:.2f} → {report['load_average'][-1][0]:.2f}."]
    if report.get("roof_ratio_bfloat16"):
        r = report["roofs_gflops"]
        lines.append(f"Roofs: float32 {r['float32']:.0f} GFLOP/s, bfloat16 {r['bfloat16']:.0f} GFLOP/s "
                     f"({report['roof_ratio_bfloat16']:.2f}×).")
    for case in report["cases"]:
        gemm = f"; GEMMs {100 * case['gemm_fraction']:.0f}% of it" if "gemm_fraction" in case else ""
        if "bfloat16_bound" in case:
            gemm += f", so bfloat16 GEMMs alone give at most {case['bfloat16_bound']:.2f}×"
        lines += ["", f"MambaIRv2-{case['variant']} x4 {case['size']}², {case.get('dtype', 'float32')}: "
                      f"{case['latency_s']:.3f} s per forward ({case['profiled_s']:.3f} s profiled{gemm})",
                  "", "| category | s | share |", "|---|---|---|"]
        lines += [f"| {r['category']} | {r['seconds']:.4f} | {100 * r['fraction']:.1f}% |" for r in case["categories"]]
    return "\n".join(lines)


def machine_roofs() -> Dict[str, Any]:
    """The float32 and (where the CPU has it natively) bfloat16 roofs, best of three each."""
    from mambairv2.analysis.measure import roofs
    from mambairv2.ops.precision import cpu_native_bfloat16

    cpu = torch.device("cpu")
    out: Dict[str, Any] = {"float32": max(roofs(cpu)["roof"] for _ in range(3))}
    if not cpu_native_bfloat16():
        return out
    out["bfloat16"] = max(roofs(cpu, torch.bfloat16)["roof"] for _ in range(3))
    return out


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="light:128,base:64", help="comma-separated VARIANT:SIZE")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    peer_cpu.add_output_options(ap, ROOT / "benchmarks/results/profile_cpu.json")
    args = ap.parse_args(argv)
    peer_cpu.check_output(ap, args)
    torch.set_num_threads(args.threads)
    load = [list(os.getloadavg())]
    cases = []
    for item in args.cases.split(","):
        variant, size = item.split(":")
        cases.append(profile_case(variant, int(size), args.repeats, args.dtype))
        load.append(list(os.getloadavg()))
    report = {"threads": args.threads, "torch": torch.__version__, "cpu": peer_cpu._cpu_name(),
              "commit": peer_cpu._commit(), "load_average": load, "cases": cases,
              "roofs_gflops": machine_roofs(),
              "command": "python benchmarks/profile_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    add_bounds(report)
    peer_cpu.write_report(args.json, report)
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
