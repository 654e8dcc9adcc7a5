"""onnxruntime (CPU) latency of the exported graph next to the PyTorch model (its fast paths) in
the same process, runs interleaved (ORT, PyTorch, ORT, …) so that both see the same machine
load; random weights (latency does not depend on them). Both get the same thread count (each
of --threads in turn, one export); medians of --repeats runs after one warm-up each. --profile
also writes onnxruntime's profile and sums its time per operator type.

    PYTHONPATH=src python3 benchmarks/onnx_latency.py --threads 1 2 --json benchmarks/results/onnx_latency.json
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import torch

CASES = {"light_x4_128": ("light", 4, 128), "base_x4_64": ("base", 4, 64)}


def profile_by_op(profile_file: str, runs: int) -> List[Dict]:
    """onnxruntime's profile summed per operator type: milliseconds per run, share, node count."""
    events = json.loads(Path(profile_file).read_text())
    total: Dict[str, float] = collections.Counter()
    nodes: Dict[str, set] = collections.defaultdict(set)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            total[op] += e["dur"] / 1e3
            nodes[op].add(e["name"])
    whole = sum(total.values())
    return [{"op": op, "ms_per_run": ms / runs, "share": ms / whole, "nodes": len(nodes[op])}
            for op, ms in sorted(total.items(), key=lambda kv: -kv[1])]


def measure(model, path: Path, size: int, threads: int, repeats: int, profile: bool, prefix: Path) -> Dict:
    """Interleaved runs of the graph in onnxruntime and of ``model`` at ``threads`` threads."""
    import onnxruntime as ort

    from mambairv2.analysis.measure import median
    from mambairv2.integrations.onnx_export import onnx_session
    from mambairv2.ops import describe

    torch.set_num_threads(threads)
    session = onnx_session(path, threads=threads)
    x = torch.rand(1, 3, size, size)
    feed = {session.get_inputs()[0].name: x.numpy()}
    with torch.no_grad():
        session.run(None, feed)  # warm-ups
        model(x)
        ort_times, torch_times = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            y = session.run(None, feed)[0]
            ort_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ref = model(x)
            torch_times.append(time.perf_counter() - t0)
    row = {"threads": threads, "onnxruntime_s": median(ort_times), "pytorch_s": median(torch_times),
           "onnxruntime_times_s": ort_times, "pytorch_times_s": torch_times,
           "ratio": median(ort_times) / median(torch_times),
           "max_abs_err": (torch.from_numpy(y) - ref).abs().max().item(),
           "pytorch_ops": {op: c.name for op, c in describe().items()}}
    if profile:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.enable_profiling = True
        options.profile_file_prefix = str(prefix)
        prof = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        prof.run(None, feed)
        row["profile_by_op"] = profile_by_op(prof.end_profiling(), 1)[:15]
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=["light_x4_128"], choices=sorted(CASES))
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--profile", action="store_true", help="onnxruntime profile, summed per operator type")
    p.add_argument("--json", default=None)
    args = p.parse_args()

    import onnxruntime as ort

    from mambairv2.integrations.onnx_export import export_onnx
    from mambairv2.models import create_model

    load_before = list(os.getloadavg())
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            variant, scale, size = CASES[case]
            torch.manual_seed(0)
            model = create_model(variant, scale=scale).eval()
            path = Path(tmp) / f"{case}.onnx"
            t0 = time.perf_counter()
            export_onnx(model, path, dynamic=True)
            export_s = time.perf_counter() - t0
            for threads in args.threads:
                row = measure(model, path, size, threads, args.repeats, args.profile, Path(tmp) / f"{case}_{threads}")
                row.update(case=case, variant=variant, scale=scale, size=size, export_s=export_s,
                           graph_mb=path.stat().st_size / 1e6)
                results.append(row)
                print(f"{case}, {threads} thread(s): onnxruntime {row['onnxruntime_s']:.3f} s, PyTorch "
                      f"{row['pytorch_s']:.3f} s ({row['ratio']:.2f}x); max |ORT - PyTorch| {row['max_abs_err']:.2g}; "
                      f"export {export_s:.0f} s", flush=True)
                for r in row.get("profile_by_op", []):
                    print(f"  {r['op']:<20} {r['ms_per_run']:9.1f} ms  {100 * r['share']:5.1f}%  {r['nodes']} nodes")
    out = {"results": results, "torch": torch.__version__, "onnxruntime": ort.__version__,
           "platform": platform.platform(), "command": " ".join(sys.argv),
           "load_average_before": load_before, "load_average_after": list(os.getloadavg())}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
