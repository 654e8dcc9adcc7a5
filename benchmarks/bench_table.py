"""Prints the README's speed table (Markdown) from ``mambairv2 bench --json`` files.

    python benchmarks/bench_table.py benchmarks/results/cpu_light_x4.json \\
        benchmarks/results/cpu_base_x4.json benchmarks/results/cpu_base_x4_256.json \\
        --pytorch-only benchmarks/results/cpu_light_x4_pytorch_only.json \\
        benchmarks/results/cpu_base_x4_pytorch_only.json

``--pytorch-only`` files are runs with ``MAMBAIRV2_IMPLEMENTATION=pytorch`` (no compiled CPU kernels); their
latencies fill the "PyTorch only" column.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Tuple


def _key(report: dict, r: dict) -> Tuple[str, int, int]:
    return report["variant"], report["scale"], r["size"]


def rows(report: dict, plain: Dict[Tuple[str, int, int], float]) -> List[List[str]]:
    out = []
    for r in report["results"]:
        ref = r.get("reference_latency_s")
        torch_only = plain.get(_key(report, r))
        out.append([
            f"{report['variant']} x{report['scale']}", f"{r['size']}²", f"{r['latency_s']:.3f} s",
            f"{r['peak_memory_mb']:.0f} MB", f"{r['macs_g']:.1f}", f"{r['gflops']:.1f}",
            f"{100 * r['roofline_fraction']:.1f}%", f"{r['us_per_pixel']:.1f}",
            "–" if torch_only is None else f"{torch_only:.3f} s",
            "–" if ref is None else f"{ref:.2f} s", "–" if ref is None else f"{r['speedup_vs_reference']:.1f}×",
        ])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path, help="bench JSON files")
    p.add_argument("--pytorch-only", nargs="*", type=Path, default=[],
                   help="bench JSON files of runs with MAMBAIRV2_IMPLEMENTATION=pytorch")
    args = p.parse_args()
    plain = {}
    for f in args.pytorch_only:
        report = json.loads(f.read_text())
        plain.update({_key(report, r): r["latency_s"] for r in report["results"]})
    head = ["model", "input", "latency", "peak memory", "GMACs", "GFLOP/s", "of sgemm", "µs/px",
            "PyTorch only", "reference scan", "speed-up"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for f in args.files:
        for r in rows(json.loads(f.read_text()), plain):
            print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
