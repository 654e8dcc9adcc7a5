"""GPU checks and latencies: golden outputs on CUDA (float32 and half dtypes, each scan
backend), the selective-scan vectors and gradients on CUDA, a chunk-size sweep of the chunked
scan, and ``mambairv2 bench`` latencies of light/base x4 at 256² and 512².

Usage (on a CUDA machine)::

    python benchmarks/gpu_check.py --golden ../shared/golden --out gpu.json

Each part is guarded, so a failure is recorded in the JSON and the others still run.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List

import torch

import mambairv2
from mambairv2.ops import implementation, mamba_ssm_available, selective_scan
from mambairv2.ops import scan_chunked

CASES = ["light_x2", "light_x3", "light_x4", "full_x2", "full_x3", "full_x4", "full_denoise",
         "full_jpeg_gray", "full_real_x4"]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def guarded(results: Dict[str, Any], key: str, fn: Callable[[], Any]) -> None:
    t0 = time.time()
    try:
        results[key] = fn()
    except Exception as exc:  # noqa: BLE001 - recorded, the other parts go on
        results[key] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
    print(f"[{time.time() - t0:6.1f} s] {key}: {json.dumps(results[key])[:600]}", flush=True)


def golden(folder: Path, backends: List[str]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for case in CASES:
        io = torch.load(folder / f"{case}_io.pt", weights_only=True)
        for dname, dtype in DTYPES.items():
            model = mambairv2.load_model(folder / f"{case}.pth", device="cuda", dtype=dtype)
            for backend in backends:
                errs = []
                for k in "ab":
                    with torch.no_grad(), implementation(selective_scan=backend):
                        y = model(io[f"input_{k}"].to("cuda", dtype))
                    errs.append((y.double().cpu() - io[f"output_{k}"]).abs().max().item())
                out[f"{case}/{dname}/{backend}"] = max(errs)
    return out


def scan_grads() -> Dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    b, d, n, L = 2, 8, 4, 300
    args = dict(u=torch.randn(b, d, L, generator=g), delta=torch.randn(b, d, L, generator=g),
                A=-torch.rand(d, n, generator=g) - 0.1, B=torch.randn(b, n, L, generator=g),
                C=torch.randn(b, n, L, generator=g), D=torch.randn(d, generator=g),
                delta_bias=torch.randn(d, generator=g))
    res = {}
    for dtype in (torch.float64, torch.float32):
        grads = {}
        for backend in ("reference", "chunked"):
            ts = {k: v.to("cuda", dtype).requires_grad_() for k, v in args.items()}
            y = selective_scan(**ts, delta_softplus=True, backend=backend)
            (y * torch.linspace(-1, 1, L, device="cuda", dtype=dtype)).sum().backward()
            grads[backend] = (y.detach(), {k: v.grad for k, v in ts.items()})
        yerr = (grads["reference"][0] - grads["chunked"][0]).abs().max().item()
        gerr = max((grads["reference"][1][k] - grads["chunked"][1][k]).abs().max().item() for k in args)
        res[str(dtype)] = {"y_err": yerr, "grad_err": gerr}
    return res


def chunk_sweep(sizes=(256, 512), chunks=(8, 16, 32, 64, 128)) -> Dict[str, Any]:
    out = {}
    for size in sizes:
        model = mambairv2.create_model("light", scale=4).cuda().eval()
        x = torch.rand(1, 3, size, size, device="cuda")
        for T in chunks:
            scan_chunked.GPU_TOKENS_PER_STEP = max(1, (size * size) // T)
            with torch.no_grad(), implementation(selective_scan="chunked"):
                model(x)
                torch.cuda.synchronize()
                times = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    model(x)
                    torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
            out[f"light_x4/{size}/T{T}"] = min(times)
    scan_chunked.GPU_TOKENS_PER_STEP = 8192
    return out


def bench(variant: str, size: int, dtype: str, backend: str, json_dir: Path) -> Dict[str, Any]:
    path = json_dir / f"bench_{variant}_{size}_{dtype}_{backend}.json"
    cmd = [sys.executable, "-m", "mambairv2", "bench", "--variant", variant, "--scale", "4", "--size",
           str(size), "--device", "cuda", "--dtype", dtype, "--backend", backend, "--warmup", "2",
           "--repeats", "5", "--json", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        return {"error": proc.stderr[-1500:]}
    return json.loads(path.read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--golden", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--skip", default="", help="comma-separated parts to skip")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    res: Dict[str, Any] = {"torch": torch.__version__, "device": torch.cuda.get_device_name(),
                           "mamba_ssm": mamba_ssm_available()}
    backends = ["chunked"] + (["mamba_ssm"] if res["mamba_ssm"] else [])
    print(json.dumps(res), flush=True)
    if "golden" not in skip:
        guarded(res, "golden", lambda: golden(args.golden, backends))
    if "grads" not in skip:
        guarded(res, "scan_grads", scan_grads)
    if "sweep" not in skip:
        guarded(res, "chunk_sweep", chunk_sweep)
    args.out.write_text(json.dumps(res, indent=1))
    if "bench" not in skip:
        jd = args.out.parent
        for variant in ("light", "base"):
            for size in (256, 512):
                for dtype in ("float32", "bfloat16"):
                    for backend in backends:
                        guarded(res, f"bench/{variant}/{size}/{dtype}/{backend}",
                                lambda: bench(variant, size, dtype, backend, jd))
                        args.out.write_text(json.dumps(res, indent=1))
    args.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
