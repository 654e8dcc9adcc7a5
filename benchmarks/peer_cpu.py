"""MambaIRv2 against SwinIR on this CPU, in one process: the peer benchmark of the README.

Each case pairs a MambaIRv2 variant with its SwinIR peer (light with SwinIR-light, base with
SwinIR-classic, both x4, random weights: speed does not depend on them). SwinIR is spandrel's
own implementation, imported from the installed package. Every round times one forward of each
model of every case and one large sgemm (the matmul roofline), one after the other, all in the
same process with the same threads, so that all of them see the same machine state; the
medians over the rounds are reported. MACs of both models are counted by the same operator
counter (``mambairv2.analysis.complexity``, the paper's convention: matrix products and
convolutions, LayerNorm 5 per element; the selective scan by its formula).

    python benchmarks/peer_cpu.py [--cases light:128,light:256,base:64,base:128] [--rounds 5]
        [--threads 2] [--json benchmarks/results/peer_cpu.json] [--docs docs/performance.md]

``--docs`` rewrites the table between the ``peer-benchmark`` markers of that file from the
JSON (``--from-json`` does only that, without measuring).
"""
from __future__ import annotations

import argparse
import enum
import importlib
import json
import platform
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
#: SwinIR x4 configurations of the authors' released models (001_classicalSR_DF2K_s64w8_SwinIR-M,
#: 002_lightweightSR_DIV2K_s64w8_SwinIR-S)
SWINIR = {
    "SwinIR-light": dict(upscale=4, img_size=64, window_size=8, img_range=1.0, depths=[6] * 4,
                         embed_dim=60, num_heads=[6] * 4, mlp_ratio=2.0,
                         upsampler="pixelshuffledirect", resi_connection="1conv"),
    "SwinIR-classic": dict(upscale=4, img_size=64, window_size=8, img_range=1.0, depths=[6] * 6,
                           embed_dim=180, num_heads=[6] * 6, mlp_ratio=2.0, upsampler="pixelshuffle",
                           resi_connection="1conv"),
}
PEER = {"light": "SwinIR-light", "base": "SwinIR-classic"}
#: the issue's goals: (times faster than the peer, or MAC/s relative to the peer's; roofline fraction)
GOALS = {"light": ("speed", 3.0, 0.45), "base": ("macs_per_s", 1.5, 0.65)}
MARK_START, MARK_END = "<!-- peer-benchmark:start -->", "<!-- peer-benchmark:end -->"


def swinir_class() -> type:
    """spandrel's SwinIR class. ``import spandrel`` imports torchvision for two other
    architectures; where torchvision is not importable (its PyPI wheels need another torch) a
    stand-in with those names, which raise when called, lets spandrel import."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - missing or not loadable beside this torch
        def unavailable(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("torchvision is not installed (peer benchmark stand-in)")

        class InterpolationMode(enum.Enum):
            NEAREST = "nearest"
            BILINEAR = "bilinear"
            BICUBIC = "bicubic"

        tv = types.ModuleType("torchvision")
        transforms = types.ModuleType("torchvision.transforms")
        functional = types.ModuleType("torchvision.transforms.functional")
        functional.InterpolationMode = InterpolationMode
        functional.rotate = functional.normalize = unavailable
        tv.transforms, transforms.functional = transforms, functional
        sys.modules.update({"torchvision": tv, "torchvision.transforms": transforms,
                            "torchvision.transforms.functional": functional})
    return importlib.import_module("spandrel.architectures.SwinIR.__arch.SwinIR").SwinIR


def build(name: str) -> nn.Module:
    """A model of the benchmark by name: a MambaIRv2 variant, or a key of :data:`SWINIR`."""
    torch.manual_seed(0)
    if name in SWINIR:
        return swinir_class()(**SWINIR[name]).eval()
    from mambairv2 import create_model

    return create_model(name, scale=4).eval()


def count_macs(name: str, model: nn.Module, size: int) -> float:
    """Paper-convention MACs of one forward of a 1×3×size×size input, by the package's counter."""
    from mambairv2.analysis import complexity

    if name in SWINIR:
        return complexity.count_module_macs(model, (1, 3, size, size)).macs_paper
    return complexity.count_complexity(model, (size, size)).macs_paper


def sgemm_gflops(n: int = 2048) -> float:
    """GFLOP/s of one ``n×n`` float32 matmul (the practical matmul roofline), best of 3."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_time(lambda: torch.mm(a, b)) for _ in range(3))
    return 2 * n ** 3 / best / 1e9


def _time(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(cases: List[Tuple[str, int]], rounds: int, threads: int) -> Dict[str, Any]:
    """Times every case's pair and the sgemm, interleaved over ``rounds`` rounds."""
    torch.set_num_threads(threads)
    names = sorted({v for v, _ in cases} | {PEER[v] for v, _ in cases})
    models = {n: build(n) for n in names}
    inputs = {s: torch.rand(1, 3, s, s, generator=torch.Generator().manual_seed(s)) for _, s in cases}
    runs = [(n, s) for v, s in cases for n in (v, PEER[v])]
    # counted first: a run of many minutes must not fail at its end
    macs = {(n, s): count_macs(n, models[n], s) for n, s in runs}
    times: Dict[Tuple[str, int], List[float]] = {r: [] for r in runs}
    sgemm: List[float] = []
    with torch.inference_mode():
        for n, s in runs:  # warm-up: kernels built, caches and allocator primed
            models[n](inputs[s])
        for _ in range(rounds):
            sgemm.append(sgemm_gflops())
            for n, s in runs:
                times[(n, s)].append(_time(lambda: models[n](inputs[s])))
    roofline = statistics.median(sgemm)
    results = []
    for v, s in cases:
        row: Dict[str, Any] = {"variant": v, "size": s}
        for key, n in (("ours", v), ("peer", PEER[v])):
            lat, m = statistics.median(times[(n, s)]), macs[(n, s)]
            row[key] = {"model": n, "latency_s": lat, "times_s": times[(n, s)], "macs_g": m / 1e9,
                        "gflops": 2 * m / lat / 1e9, "roofline_fraction": 2 * m / lat / 1e9 / roofline}
        row["speedup"] = row["peer"]["latency_s"] / row["ours"]["latency_s"]
        row["macs_per_s_ratio"] = row["ours"]["gflops"] / row["peer"]["gflops"]
        kind, target, roof = GOALS[v]
        reached = row["speedup" if kind == "speed" else "macs_per_s_ratio"]
        row["goal"] = {"kind": kind, "target": target, "reached": reached,
                       "roofline_target": roof, "roofline_reached": row["ours"]["roofline_fraction"]}
        results.append(row)
    return {"threads": threads, "rounds": rounds, "sgemm_gflops": roofline, "sgemm_runs": sgemm,
            "torch": torch.__version__, "machine": platform.machine(), "cpu": _cpu_name(),
            "commit": _commit(), "results": results}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _commit() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def table(report: Dict[str, Any]) -> str:
    """The markdown table of a report."""
    lines = [
        f"Measured on commit `{report['commit']}`, {report['cpu']}, {report['threads']} threads, "
        f"float32, batch 1, medians of {report['rounds']} interleaved rounds; sgemm roofline "
        f"{report['sgemm_gflops']:.0f} GFLOP/s (2048² matmul, same run).",
        "",
        "| model x4 | input | ours | GMACs | % roofline | peer | peer | GMACs | % roofline "
        "| ours vs peer: speed | MAC/s | goal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        o, p, g = r["ours"], r["peer"], r["goal"]
        what = "× faster" if g["kind"] == "speed" else "× MAC/s"
        lines.append(
            f"| MambaIRv2-{r['variant']} | {r['size']}² | {o['latency_s']:.3f} s | {o['macs_g']:.1f} "
            f"| {100 * o['roofline_fraction']:.0f}% | {p['model']} | {p['latency_s']:.3f} s | "
            f"{p['macs_g']:.1f} | {100 * p['roofline_fraction']:.0f}% | {r['speedup']:.2f}× | "
            f"{r['macs_per_s_ratio']:.2f}× | ≥ {g['target']}{what}, ≥ {100 * g['roofline_target']:.0f}% |")
    return "\n".join(lines)


def add_output_options(ap: argparse.ArgumentParser, default: Optional[Path]) -> None:
    """``--json PATH`` (default ``default``) and ``--overwrite``."""
    ap.add_argument("--json", type=Path, default=default,
                    help="where the JSON report goes" + (f" (default: {default.relative_to(ROOT)})" if default else ""))
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --json file")


def check_output(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuses, before anything is measured, a ``--json`` that exists without ``--overwrite``
    (the committed results are the default paths) or that is a folder."""
    path = args.json
    if path is None:
        return
    if path.is_dir():
        ap.error(f"--json {path} is a folder")
    if path.exists() and not args.overwrite:
        ap.error(f"--json {path} exists; pass --overwrite to replace it, or name another file")


def write_report(path: Optional[Path], report: Dict[str, Any]) -> None:
    """Writes a benchmark's JSON report whole or not at all (its folder made if missing)."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(report, indent=2) + "\n")
    part.replace(path)


def write_docs(path: Path, report: Dict[str, Any], command: str) -> None:
    """Replaces the table between the markers of ``path`` (appends the markers if absent)."""
    block = f"{MARK_START}\n```\n{command}\n```\n\n{table(report)}\n{MARK_END}"
    text = path.read_text() if path.exists() else ""
    if MARK_START in text and MARK_END in text:
        head, rest = text.split(MARK_START, 1)
        text = head + block + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
    path.write_text(text)


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="light:128,light:256,base:64,base:128",
                    help="comma-separated VARIANT:SIZE (variants: light, base)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    add_output_options(ap, ROOT / "benchmarks/results/peer_cpu.json")
    ap.add_argument("--docs", type=Path, default=None, help="rewrite the table in this markdown file")
    ap.add_argument("--from-json", action="store_true", help="only rewrite --docs from --json")
    args = ap.parse_args(argv)
    if args.from_json:
        report = json.loads(args.json.read_text())
    else:
        check_output(ap, args)
        cases = []
        for item in args.cases.split(","):
            variant, size = item.split(":")
            if variant not in PEER:
                ap.error(f"unknown variant {variant!r}; choose from {', '.join(PEER)}")
            cases.append((variant, int(size)))
        report = measure(cases, args.rounds, args.threads)
        report["command"] = "python benchmarks/peer_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_report(args.json, report)
    print(table(report))
    if args.docs:
        write_docs(args.docs, report, report.get("command", "python benchmarks/peer_cpu.py"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
