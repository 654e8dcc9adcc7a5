"""bfloat16 against float32 on this CPU: speed, golden-case differences and PSNR, in one process.

``--dtype bfloat16`` on a CPU is autocast with float32 weights (``mambairv2.ops.precision``):
oneDNN's GEMMs in bfloat16, the scan, attention, LayerNorm and routing kernels in float32.

    python benchmarks/bfloat16_cpu.py [--cases light:128,base:64] [--rounds 5] [--threads 2]
        [--golden ../shared/golden] [--psnr-data ../shared/data/sr] [--skip-psnr] [--skip-golden]
        [--json benchmarks/results/bfloat16_cpu.json]

Speed: every round times one float32 and one bfloat16 forward of each case (random weights,
batch 1) and the float32 and bfloat16 roofs (``mambairv2.analysis.measure.roofs``); medians
over the rounds. Golden cases: the largest pixel difference of the bfloat16 output from the
float32 output on each case's two inputs. PSNR: ``mambairv2 evaluate`` of the bundled light
x4 model on Set5 and Set14 (Y channel, scale-cropped) in both dtypes.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer_cpu  # noqa: E402 - the sibling benchmark: models, machine description, commit

ROOT = peer_cpu.ROOT
SHARED = Path(os.environ.get("MAMBAIRV2_SHARED", ROOT.parent / "shared"))


def speed(cases: List[Tuple[str, int]], rounds: int) -> Dict[str, Any]:
    """float32 and bfloat16 forwards of every case and both roofs, interleaved over rounds."""
    from mambairv2.analysis.measure import roofs
    from mambairv2.models import set_routing
    from mambairv2.ops import compute_precision

    models = {v: set_routing(peer_cpu.build(v), "argmax") for v in sorted({v for v, _ in cases})}
    inputs = {s: torch.rand(1, 3, s, s, generator=torch.Generator().manual_seed(s)) for _, s in cases}
    times: Dict[Tuple[str, int, str], List[float]] = {(v, s, d): [] for v, s in cases
                                                      for d in ("float32", "bfloat16")}
    roof_runs: Dict[str, List[Dict[str, Any]]] = {"float32": [], "bfloat16": []}
    cpu = torch.device("cpu")
    with torch.inference_mode():
        for v, s, d in times:  # warm-up
            with compute_precision(cpu, d):
                models[v](inputs[s])
        for _ in range(rounds):
            for d in roof_runs:
                roof_runs[d].append(roofs(cpu, getattr(torch, d)))
            for v, s, d in times:
                with compute_precision(cpu, d):
                    t0 = time.perf_counter()
                    models[v](inputs[s])
                    times[(v, s, d)].append(time.perf_counter() - t0)
    roof = {d: statistics.median(r["roof"] for r in runs) for d, runs in roof_runs.items()}
    rows = []
    for v, s in cases:
        f32, bf = (statistics.median(times[(v, s, d)]) for d in ("float32", "bfloat16"))
        rows.append({"variant": v, "size": s, "float32_s": f32, "bfloat16_s": bf,
                     "times_float32_s": times[(v, s, "float32")], "times_bfloat16_s": times[(v, s, "bfloat16")],
                     "speedup": f32 / bf, "goal": 1.8})
    return {"roof_gflops": roof, "roof_runs": roof_runs, "rows": rows}


def golden(folder: Path) -> Dict[str, float]:
    """Per golden case, the largest |bfloat16 − float32| over its two inputs' outputs."""
    import mambairv2
    from mambairv2.ops import compute_precision

    out = {}
    for case in json.loads((folder / "index.json").read_text()):
        io = torch.load(folder / f"{case}_io.pt", weights_only=True)
        model = mambairv2.models.set_routing(mambairv2.load_model(folder / f"{case}.pth"), "argmax")
        worst = 0.0
        with torch.inference_mode():
            for k in "ab":
                x = io[f"input_{k}"].float()
                ref = model(x)
                with compute_precision("cpu", "bfloat16"):
                    half = model(x)
                worst = max(worst, (half.float() - ref).abs().max().item())
        out[case] = worst
        print(f"golden {case}: max |bfloat16 - float32| {worst:.2e}", file=sys.stderr, flush=True)
    return out


def psnr(data: Path) -> Dict[str, Dict[str, float]]:
    """PSNR (dB) of the bundled light x4 model on Set5 and Set14 in float32 and bfloat16."""
    from mambairv2.cli.main import main

    result: Dict[str, Dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for d in ("float32", "bfloat16"):
            path = Path(tmp) / f"{d}.json"
            argv = ["evaluate", "--model", "light_x4", "--task", "sr", "--device", "cpu", "--dtype", d,
                    "--hr-dir", str(data / "Set5/HR"), "--hr-dir", str(data / "Set14/HR"),
                    "--json", str(path), "-q"]
            if main(argv) != 0:
                raise RuntimeError(f"mambairv2 {' '.join(argv)} failed")
            report = json.loads(path.read_text())
            for name, ds in report["datasets"].items():
                result.setdefault(name, {})[d] = ds["psnr"]
    for name, r in result.items():
        r["difference_db"] = r["bfloat16"] - r["float32"]
    return result


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="light:128,base:64", help="comma-separated VARIANT:SIZE")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--golden", type=Path, default=SHARED / "golden")
    ap.add_argument("--psnr-data", type=Path, default=SHARED / "data/sr")
    ap.add_argument("--skip-psnr", action="store_true", help="no Set5/Set14 evaluation")
    ap.add_argument("--skip-golden", action="store_true", help="no golden-case differences")
    peer_cpu.add_output_options(ap, ROOT / "benchmarks/results/bfloat16_cpu.json")
    args = ap.parse_args(argv)
    peer_cpu.check_output(ap, args)
    from mambairv2.ops import check_cpu_bfloat16

    check_cpu_bfloat16()
    torch.set_num_threads(args.threads)
    cases = [(v, int(s)) for v, s in (item.split(":") for item in args.cases.split(","))]
    report: Dict[str, Any] = {
        "command": "python benchmarks/bfloat16_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "threads": args.threads, "rounds": args.rounds, "torch": torch.__version__,
        "cpu": peer_cpu._cpu_name(), "commit": peer_cpu._commit(),
        "speed": speed(cases, args.rounds)}
    if not args.skip_golden:
        report["golden_max_abs_difference"] = golden(args.golden)
    if not args.skip_psnr:
        report["psnr"] = psnr(args.psnr_data)
    report["load_average"] = peer_cpu._load_average()
    peer_cpu.write_report(args.json, report)
    sp = report["speed"]
    print(f"roofs: float32 {sp['roof_gflops']['float32']:.0f}, bfloat16 {sp['roof_gflops']['bfloat16']:.0f} GFLOP/s")
    for r in sp["rows"]:
        print(f"{r['variant']} x4 {r['size']}²: float32 {r['float32_s']:.3f} s, bfloat16 {r['bfloat16_s']:.3f} s, "
              f"{r['speedup']:.2f}× (goal ≥ {r['goal']}×)")
    if "golden_max_abs_difference" in report:
        print("golden max |bf16 - f32|: " + ", ".join(
            f"{k} {v:.1e}" for k, v in report["golden_max_abs_difference"].items()))
    for name, r in report.get("psnr", {}).items():
        print(f"{name}: PSNR float32 {r['float32']:.3f} dB, bfloat16 {r['bfloat16']:.3f} dB "
              f"({r['difference_db']:+.3f} dB; goal within 0.02)")
    print(f"load average {report['load_average']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
