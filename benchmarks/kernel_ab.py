"""A/B of one C kernel of ``ops``: the working tree's source against another commit's, in one
process, interleaved, on whole-model forwards.

Both builds are loaded side by side (each is a ``NativeKernel``: the other commit's C file and
headers are written to a temporary folder and built there) and the module's kernel object is
swapped between forwards, so everything else (model, PyTorch, machine state) is shared. The
entry point and its arguments must be the same in both versions. Times are per forward: wall and
process CPU time (CPU time is less disturbed by other load on the machine), and the CPU time of
the kernel's calls alone (the calls one forward makes, recorded with their arguments and
replayed; with several threads compare wall times: CPU time counts the threads' waiting); medians over the rounds, the order of A and B alternating from round to round.

    python benchmarks/kernel_ab.py scan [--against main] [--cases light:128,base:64]
        [--rounds 5] [--threads 1] [--json benchmarks/results/kernel_ab_scan.json]
"""
from __future__ import annotations

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer_cpu  # noqa: E402 - the sibling benchmark: models, machine description, commit

ROOT = peer_cpu.ROOT
#: kernel name → the ``ops`` module holding its ``_KERNEL``
KERNELS = {"scan": "mambairv2.ops.scan_compiled", "attention": "mambairv2.ops.attention_compiled",
           "layer_norm": "mambairv2.ops.layer_norm_compiled", "routing": "mambairv2.ops.routing_compiled"}
#: kernel name → (the ``ops`` module that calls its wrapper, the wrapper's name there)
CALLERS = {"scan": ("mambairv2.ops.selective_scan", "selective_scan_compiled"),
           "attention": ("mambairv2.ops.attention", "window_attention_compiled"),
           "layer_norm": ("mambairv2.ops.layer_norm", "layer_norm_compiled"),
           "routing": ("mambairv2.ops.routing", "sgn_route_compiled")}


def recorded_calls(kernel: str, forward: Callable[[], object]) -> List[Tuple[Callable, tuple, dict]]:
    """The kernel wrapper's calls made by one ``forward``, with their arguments, to replay."""
    caller = importlib.import_module(CALLERS[kernel][0])
    name = CALLERS[kernel][1]
    wrapper = getattr(caller, name)
    calls: List[Tuple[Callable, tuple, dict]] = []

    def record(*args: Any, **kwargs: Any) -> Any:
        calls.append((wrapper, args, kwargs))
        return wrapper(*args, **kwargs)

    setattr(caller, name, record)
    try:
        forward()
    finally:
        setattr(caller, name, wrapper)
    return calls


def other_build(module: Any, rev: str, folder: Path) -> Any:
    """The module's kernel built from the C file and headers of commit ``rev``."""
    from mambairv2.ops.native import NativeKernel

    mine = module._KERNEL
    ops_dir = "src/mambairv2/ops"
    names = subprocess.run(["git", "ls-tree", "--name-only", rev, ops_dir + "/"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in names:
        if name.endswith(".h") or name == f"{ops_dir}/{mine.source.name}":
            text = subprocess.run(["git", "show", f"{rev}:{name}"], cwd=ROOT, check=True,
                                  capture_output=True).stdout
            (folder / Path(name).name).write_bytes(text)
    kernel = NativeKernel(mine.source.name, mine.what + f" ({rev})", mine.symbol, mine.argtypes)
    kernel.source = folder / mine.source.name
    if not kernel.available():
        raise RuntimeError(f"the {rev} kernel does not build: {kernel.error()}")
    return kernel


def measure(kernel: str, rev: str, cases: List[str], rounds: int, threads: int) -> Dict[str, Any]:
    """Interleaved forwards of every case with each build; returns the report."""
    torch.set_num_threads(threads)
    module = importlib.import_module(KERNELS[kernel])
    with tempfile.TemporaryDirectory() as tmp:
        builds = {"worktree": module._KERNEL, rev: other_build(module, rev, Path(tmp))}
        if not builds["worktree"].available():
            raise RuntimeError(f"the working tree's kernel does not build: {builds['worktree'].error()}")
        rows, load = [], [list(os.getloadavg())]
        try:
            for case in cases:
                variant, size = case.split(":")
                model = peer_cpu.build(variant)
                x = torch.rand(1, 3, int(size), int(size), generator=torch.Generator().manual_seed(0))
                wall: Dict[str, List[float]] = {k: [] for k in builds}
                cpu: Dict[str, List[float]] = {k: [] for k in builds}
                calls_cpu: Dict[str, List[float]] = {k: [] for k in builds}
                calls_wall: Dict[str, List[float]] = {k: [] for k in builds}
                outs = {}
                with torch.inference_mode():
                    for name, build in builds.items():
                        module._KERNEL = build
                        outs[name] = model(x)
                    calls = recorded_calls(kernel, lambda: model(x))
                    for r in range(rounds):
                        for name in (list(builds) if r % 2 == 0 else list(builds)[::-1]):
                            module._KERNEL = builds[name]
                            t0, c0 = time.perf_counter(), time.process_time()
                            model(x)
                            wall[name].append(time.perf_counter() - t0)
                            cpu[name].append(time.process_time() - c0)
                            t0, c0 = time.perf_counter(), time.process_time()
                            for fn, args, kwargs in calls:
                                fn(*args, **kwargs)
                            calls_wall[name].append(time.perf_counter() - t0)
                            calls_cpu[name].append(time.process_time() - c0)
                load.append(list(os.getloadavg()))
                a, b = outs[rev], outs["worktree"]
                row: Dict[str, Any] = {"case": case, "max_abs_difference": (a - b).abs().max().item()}
                for name in builds:
                    row[name] = {"wall_s": statistics.median(wall[name]), "wall_runs_s": wall[name],
                                 "cpu_s": statistics.median(cpu[name]), "cpu_runs_s": cpu[name],
                                 "kernel_cpu_s": statistics.median(calls_cpu[name]),
                                 "kernel_cpu_runs_s": calls_cpu[name],
                                 "kernel_wall_s": statistics.median(calls_wall[name]),
                                 "kernel_wall_runs_s": calls_wall[name]}
                row["kernel_calls"] = len(calls)
                row["kernel_cpu_ratio"] = row[rev]["kernel_cpu_s"] / row["worktree"]["kernel_cpu_s"]
                row["kernel_wall_ratio"] = row[rev]["kernel_wall_s"] / row["worktree"]["kernel_wall_s"]
                row["cpu_ratio"] = row[rev]["cpu_s"] / row["worktree"]["cpu_s"]
                row["wall_ratio"] = row[rev]["wall_s"] / row["worktree"]["wall_s"]
                rows.append(row)
        finally:
            module._KERNEL = builds["worktree"]
    return {"kernel": kernel, "against": rev, "threads": threads, "rounds": rounds, "load_average": load,
            "commit": peer_cpu._commit(), "cpu": peer_cpu._cpu_name(), "torch": torch.__version__,
            "cases": rows}


def table(report: Dict[str, Any]) -> str:
    rev = report["against"]
    lines = [f"{report['kernel']} kernel: working tree (`{report['commit']}`) against `{rev}`, "
             f"{report['threads']} thread(s), medians of {report['rounds']} interleaved rounds, load average "
             f"{report['load_average'][0][0]:.2f} → {report['load_average'][-1][0]:.2f}", "",
             f"| case | forward CPU s: {rev} (range) | worktree (range) | ratio | wall ratio | "
             f"kernel calls | their CPU s: {rev} (range) | worktree (range) | ratio | wall ratio | max |Δ| |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["cases"]:
        def cell(name: str, key: str) -> str:
            runs = r[name][key + "_runs_s"]
            return f"{r[name][key + '_s']:.3f} ({min(runs):.3f}–{max(runs):.3f})"
        lines.append(f"| {r['case']} | {cell(rev, 'cpu')} | {cell('worktree', 'cpu')} | {r['cpu_ratio']:.3f}× | "
                     f"{r['wall_ratio']:.3f}× | {r['kernel_calls']} | {cell(rev, 'kernel_cpu')} | "
                     f"{cell('worktree', 'kernel_cpu')} | {r['kernel_cpu_ratio']:.3f}× | {r['kernel_wall_ratio']:.3f}× | "
                     f"{r['max_abs_difference']:.1e} |")
    return "\n".join(lines)


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kernel", choices=sorted(KERNELS))
    ap.add_argument("--against", default="main", help="the commit whose kernel source is A")
    ap.add_argument("--cases", default="light:128,base:64", help="comma-separated VARIANT:SIZE")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    peer_cpu.add_output_options(ap, None)
    args = ap.parse_args(argv)
    if args.json is None:
        args.json = ROOT / f"benchmarks/results/kernel_ab_{args.kernel}.json"
    peer_cpu.check_output(ap, args)
    report = measure(args.kernel, args.against, args.cases.split(","), args.rounds, args.threads)
    report["command"] = "python benchmarks/kernel_ab.py " + " ".join(argv if argv is not None else sys.argv[1:])
    peer_cpu.write_report(args.json, report)
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
