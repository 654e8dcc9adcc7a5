"""Prints the README's speed table (Markdown) from ``mambairv2 bench --json`` files.

    python benchmarks/bench_table.py benchmarks/results/cpu_light_x4.json benchmarks/results/cpu_base_x4.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def rows(report: dict) -> list:
    out = []
    for r in report["results"]:
        ref = r.get("reference_latency_s")
        out.append([
            f"{report['variant']} x{report['scale']}", f"{r['size']}²", f"{r['latency_s']:.3f} s",
            f"{r['peak_memory_mb']:.0f} MB", f"{r['macs_g']:.1f}", f"{r['gflops']:.1f}",
            f"{100 * r['roofline_fraction']:.1f}%", f"{r['us_per_pixel']:.1f}",
            "–" if ref is None else f"{ref:.2f} s", "–" if ref is None else f"{r['speedup_vs_reference']:.1f}×",
        ])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path, help="bench JSON files")
    args = p.parse_args()
    head = ["model", "input", "latency", "peak memory", "GMACs", "GFLOP/s", "of sgemm", "µs/px",
            "reference scan", "speed-up"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for f in args.files:
        for r in rows(json.loads(f.read_text())):
            print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
