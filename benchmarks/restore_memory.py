"""Peak memory of tiled vs untiled restoration, and PSNR of tiled vs whole-image output.

Every measurement runs in a fresh Python process, so each peak is that process's own
(``ru_maxrss`` on the CPU, ``torch.cuda.max_memory_allocated`` on CUDA), not a leftover of an
earlier run. Usage::

    python benchmarks/restore_memory.py --weights ../shared/golden/light_x2.pth \\
        --size 1024 --tile 256 --untiled-sizes 256,384,512 --psnr-size 512 \\
        --out benchmarks/results/restore_memory.json

``--untiled-sizes`` measures whole-image runs at several sizes; when ``--size`` itself is among
them it is measured directly, otherwise the untiled peak at ``--size`` is extrapolated from a
least-squares line through them (peak = base + bytes/pixel · pixels; the working set of the
network is proportional to the pixel count) and marked as extrapolated in the JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MAMBAIRV2_SHARED", REPO.parent / "shared"))


def test_image(size: int, seed: int = 0):
    """A ``size×size`` RGB float image in [0, 1]: Kodak images from the shared data tiled and
    cropped (natural content, so seams would show), or smooth noise when they are absent."""
    import numpy as np

    folder = SHARED / "data" / "denoise" / "Kodak24"
    files = sorted(folder.glob("*.png")) if folder.is_dir() else []
    if files:
        from PIL import Image

        canvas = np.zeros((size, size, 3), np.float32)
        k, y = 0, 0
        while y < size:
            x, row_h = 0, 0
            while x < size:
                arr = np.asarray(Image.open(files[(seed + k) % len(files)]).convert("RGB"), np.float32) / 255
                k += 1
                h, w = min(arr.shape[0], size - y), min(arr.shape[1], size - x)
                canvas[y:y + h, x:x + w] = arr[:h, :w]
                x += w
                row_h = max(row_h, h)
            y += row_h
        return canvas, f"Kodak24 mosaic from {folder}"
    rng = np.random.default_rng(seed)
    small = rng.random((size // 8 + 1, size // 8 + 1, 3)).astype(np.float32)
    return np.kron(small, np.ones((8, 8, 1), np.float32))[:size, :size], "synthetic 8×8-block noise"


# -- child: one measurement --------------------------------------------------------------------
def child(spec: Dict[str, Any]) -> None:
    import numpy as np
    import torch

    from mambairv2.models import load_model
    from mambairv2.inference.api import restore_tensor

    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    model = load_model(spec["weights"], device=device)
    img, source = test_image(spec["size"])
    x = torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    y = restore_tensor(model, x, tile=spec["tile"], tile_overlap=spec["overlap"])
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    result = {"size": spec["size"], "tile": spec["tile"], "overlap": spec["overlap"], "seconds": seconds,
              "rss_before_restore_bytes": before,
              "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
              "image": source}
    if device.type == "cuda":
        result["cuda_peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
    if spec.get("save"):
        np.save(spec["save"], y[0].numpy())
    print(json.dumps(result), flush=True)


def measure(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Runs ``child(spec)`` in a fresh interpreter and returns its JSON result."""
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]))
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"measurement {spec} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    kind = "tiled" if spec["tile"] else "untiled"
    peak = result.get("cuda_peak_allocated_bytes", result["peak_rss_bytes"])
    print(f"  {kind:8s} {spec['size']}² tile={spec['tile']}: peak {peak / 2**20:,.0f} MiB, "
          f"{result['seconds']:.1f} s", file=sys.stderr, flush=True)
    return result


def psnr(a, b) -> float:
    import numpy as np

    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1).astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--weights", default=str(SHARED / "golden" / "light_x2.pth"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    p.add_argument("--size", type=int, default=1024, help="image side for the memory comparison")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--untiled-sizes", default="1024",
                   help="comma-separated sides of whole-image runs (include --size to measure it directly)")
    p.add_argument("--psnr-size", type=int, default=512, help="image side for tiled-vs-whole PSNR (0: skip)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "restore_memory.json"))
    args = p.parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return 0
    if not Path(args.weights).exists():
        print(f"weights not found: {args.weights}", file=sys.stderr)
        return 2
    base = dict(weights=args.weights, device=args.device, threads=args.threads, overlap=args.overlap)
    report: Dict[str, Any] = {
        "weights": args.weights, "device": args.device, "threads": args.threads,
        "python": platform.python_version(), "machine": platform.machine(),
        "metric": "peak CUDA memory allocated" if args.device.startswith("cuda") else "peak RSS (ru_maxrss)",
    }
    peak_key = "cuda_peak_allocated_bytes" if args.device.startswith("cuda") else "peak_rss_bytes"

    print("memory:", file=sys.stderr)
    tiled = measure(dict(base, size=args.size, tile=args.tile))
    untiled = [measure(dict(base, size=s, tile=None)) for s in
               sorted({int(s) for s in args.untiled_sizes.split(",") if s.strip()})]
    direct = [u for u in untiled if u["size"] == args.size]
    if direct:
        untiled_peak, extrapolated = direct[0][peak_key], False
    else:
        import numpy as np

        if len(untiled) < 2:
            raise SystemExit("need --size among --untiled-sizes, or at least two untiled sizes to extrapolate")
        px = np.array([u["size"] ** 2 for u in untiled], np.float64)
        pk = np.array([u[peak_key] for u in untiled], np.float64)
        slope, intercept = np.polyfit(px, pk, 1)
        untiled_peak, extrapolated = float(intercept + slope * args.size ** 2), True
        report["untiled_fit"] = {"bytes_per_pixel": slope, "intercept_bytes": intercept}
    report["memory"] = {
        "size": args.size, "tile": args.tile, "overlap": args.overlap,
        "tiled": tiled, "untiled_runs": untiled,
        "tiled_peak_bytes": tiled[peak_key], "untiled_peak_bytes": untiled_peak,
        "untiled_extrapolated": extrapolated,
        "ratio_tiled_over_untiled": tiled[peak_key] / untiled_peak,
    }
    print(f"  tiled/untiled peak at {args.size}²: {tiled[peak_key] / untiled_peak:.3f}"
          + (" (untiled extrapolated)" if extrapolated else ""), file=sys.stderr)

    if args.psnr_size:
        import numpy as np

        print("tiled vs whole:", file=sys.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            whole_f, tiled_f = os.path.join(tmp, "whole.npy"), os.path.join(tmp, "tiled.npy")
            measure(dict(base, size=args.psnr_size, tile=None, save=whole_f))
            measure(dict(base, size=args.psnr_size, tile=args.tile, save=tiled_f))
            whole, tiled_out = np.load(whole_f), np.load(tiled_f)
        q = lambda a: np.rint(np.clip(a, 0, 1) * 255) / 255  # noqa: E731
        report["psnr_tiled_vs_whole"] = {
            "size": args.psnr_size, "tile": args.tile, "overlap": args.overlap,
            "psnr_db": psnr(whole, tiled_out), "psnr_8bit_db": psnr(q(whole), q(tiled_out)),
            "max_abs_diff": float(np.abs(whole - tiled_out).max()),
            "fraction_8bit_values_changed": float(np.mean(q(whole) != q(tiled_out))),
        }
        r = report["psnr_tiled_vs_whole"]
        print(f"  PSNR {r['psnr_db']:.2f} dB (8-bit {r['psnr_8bit_db']:.2f} dB), max |diff| {r['max_abs_diff']:.4f}",
              file=sys.stderr)
    report["children_max_rss_bytes"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
