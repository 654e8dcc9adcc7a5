"""Largest difference from the authors' outputs over every golden case, per dtype and scan backend.

    python benchmarks/golden_errors.py [--golden ../shared/golden] [--backends chunked,reference,compiled]

float32 CPU runs use the compiled attention/routing/LayerNorm kernels where they build (with any
implementation); MAMBAIRV2_IMPLEMENTATION=pytorch measures PyTorch alone.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

import mambairv2
from mambairv2.ops import implementation


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(os.environ.get("MAMBAIRV2_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    p.add_argument("--golden", type=Path, default=shared / "golden")
    p.add_argument("--backends", default="chunked", help="comma-separated scan backends")
    args = p.parse_args()
    cases = json.loads((args.golden / "index.json").read_text())
    worst = {}
    for case in cases:
        io = torch.load(args.golden / f"{case}_io.pt", weights_only=True)
        for dtype in (torch.float64, torch.float32):
            model = mambairv2.load_model(args.golden / f"{case}.pth", dtype=dtype)
            for backend in args.backends.split(","):
                if backend == "compiled" and dtype != torch.float32:
                    continue  # the compiled CPU scan is float32 only
                for k in "ab":
                    with torch.no_grad(), implementation(selective_scan=backend):
                        out = model(io[f"input_{k}"].to(dtype))
                    err = (out.double() - io[f"output_{k}"]).abs().max().item()
                    key = f"{backend} {str(dtype).replace('torch.', '')}"
                    worst[key] = max(worst.get(key, 0.0), err)
        print(f"{case}: done", flush=True)
    for key, err in worst.items():
        print(f"{key}: max abs error {err:.2e} over {len(cases)} cases")


if __name__ == "__main__":
    main()
