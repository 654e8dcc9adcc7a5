"""onnxruntime (CPU) latency of the exported graph next to ``mambairv2 bench`` (PyTorch, fast
paths) in the same run: light x4 at 128², base x4 at 64² (random weights: latency does not
depend on them). Both get the same thread count; medians of --repeats runs after one warm-up.

    PYTHONPATH=src python3 benchmarks/onnx_latency.py --threads 2 --json benchmarks/results/onnx_latency.json
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

CASES = (("light", 4, 128), ("base", 4, 64))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None)
    args = p.parse_args()

    from mambairv2 import create_model
    from mambairv2.analysis.measure import median
    from mambairv2.integrations.onnx_export import export_onnx, onnx_session

    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant, scale, size in CASES:
            torch.manual_seed(0)
            model = create_model(variant, scale=scale).eval()
            path = Path(tmp) / f"{variant}_x{scale}.onnx"
            t0 = time.perf_counter()
            export_onnx(model, path, dynamic=True)
            export_s = time.perf_counter() - t0
            session = onnx_session(path, threads=args.threads)
            x = torch.rand(1, 3, size, size)
            feed = {session.get_inputs()[0].name: x.numpy()}
            session.run(None, feed)  # warm-up
            ort_times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                y = session.run(None, feed)[0]
                ort_times.append(time.perf_counter() - t0)
            with torch.no_grad():
                err = (torch.from_numpy(y) - model(x)).abs().max().item()
            bench_json = Path(tmp) / "bench.json"
            subprocess.run([sys.executable, "-m", "mambairv2", "bench", "--variant", variant, "--scale", str(scale),
                            "--size", str(size), "--threads", str(args.threads), "--repeats", str(args.repeats),
                            "--json", str(bench_json)], check=True, capture_output=True)
            bench = json.loads(bench_json.read_text())
            row = {"variant": variant, "scale": scale, "size": size, "threads": args.threads,
                   "onnxruntime_s": median(ort_times), "export_s": export_s, "max_abs_err": err,
                   "mambairv2_bench": bench}
            results.append(row)
            first = bench["results"][0]
            row["pytorch_s"], row["pytorch_backend"] = first["latency_s"], first["backend"]
            print(f"{variant} x{scale} {size}²: onnxruntime {row['onnxruntime_s']:.3f} s, mambairv2 bench "
                  f"{row['pytorch_s']:.3f} s (scan {row['pytorch_backend']}); max |ORT − PyTorch| {err:.2g}; "
                  f"export {export_s:.0f} s", flush=True)
    out = {"results": results, "torch": torch.__version__, "platform": platform.platform(),
           "onnxruntime": __import__("onnxruntime").__version__}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
