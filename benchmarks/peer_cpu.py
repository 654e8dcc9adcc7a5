"""MambaIRv2 against SwinIR on this CPU, in one process: the peer benchmark of the README.

Each case pairs a MambaIRv2 variant with its SwinIR peer (light with SwinIR-light, base with
SwinIR-classic, both x4, random weights: speed does not depend on them). SwinIR is spandrel's
own implementation, imported from the installed package. Every round times one forward of each
model of every case and the machine's float32 matmul roof (a 2048² product through MKL's
``torch.mm`` and through oneDNN's linear, the faster of the two being the roof: MKL takes a slow
path on some CPUs), one after the other, all in the same process with the same threads, so that
all of them see the same machine state; the medians over the rounds are reported. With
``--peer-fast`` each peer is also timed with its linear layers through the same oneDNN linear
that MambaIRv2 uses (``mambairv2.ops.linear``), so the ratios are given against the stock peer
and against the peer at its best. MACs of both models are counted by the same operator
counter (``mambairv2.analysis.complexity``, the paper's convention: matrix products and
convolutions, LayerNorm 5 per element; the selective scan by its formula).

    python benchmarks/peer_cpu.py [--cases light:16,light:64,light:128,light:256,base:64,base:128] [--rounds 5]
        [--threads 2] [--peer-fast] [--json benchmarks/results/peer_cpu.json] [--docs docs/performance.md]

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
FAST = " (oneDNN linear)"  # suffix of a peer whose linear layers run through mambairv2.ops.linear
#: the issue's goals: (times faster than the peer, or MAC/s relative to the peer's; roofline fraction)
GOALS = {"light": ("speed", 3.0, 0.45), "base": ("macs_per_s", 1.5, 0.65)}
#: inputs up to this side (small images, tiles) are judged by speed alone: at least as fast as the
#: peer, whose fixed per-layer costs then dominate as ours do (no roofline goal)
SMALL, SMALL_GOAL = 64, ("speed", 1.0, None)


def goal(variant: str, size: int) -> Tuple[str, float, Optional[float]]:
    """The goal of a case: (kind, target, roofline fraction or None)."""
    return SMALL_GOAL if size <= SMALL and variant == "light" else GOALS[variant]
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


class OneDNNLinear(nn.Module):
    """An ``nn.Linear`` computed by ``mambairv2.ops.linear`` (oneDNN's linear on CPU)."""

    def __init__(self, layer: nn.Linear) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from mambairv2.ops import linear

        return linear(x, self.layer)


def with_onednn_linears(model: nn.Module) -> nn.Module:
    """``model`` with every ``nn.Linear`` replaced by :class:`OneDNNLinear` (same weights)."""
    for name, child in model.named_children():
        if isinstance(child, nn.Linear):
            setattr(model, name, OneDNNLinear(child))
        else:
            with_onednn_linears(child)
    return model


def build(name: str) -> nn.Module:
    """A model of the benchmark by name: a MambaIRv2 variant, a key of :data:`SWINIR`, or
    such a key + :data:`FAST` (the same SwinIR with oneDNN linears)."""
    torch.manual_seed(0)
    if name.endswith(FAST):
        return with_onednn_linears(build(name[:-len(FAST)]))
    if name in SWINIR:
        return swinir_class()(**SWINIR[name]).eval()
    from mambairv2 import create_model

    return create_model(name, scale=4).eval()


def count_macs(name: str, model: nn.Module, size: int) -> float:
    """Paper-convention MACs of one forward of a 1×3×size×size input, by the package's counter."""
    from mambairv2.analysis import complexity

    if name.endswith(FAST):
        return count_macs(name[:-len(FAST)], build(name[:-len(FAST)]), size)
    if name in SWINIR:
        return complexity.count_module_macs(model, (1, 3, size, size)).macs_paper
    return complexity.count_complexity(model, (size, size)).macs_paper


def _time(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def peers(variant: str, peer_fast: bool) -> Tuple[str, ...]:
    """The peer models timed against ``variant``: the stock peer, and with ``peer_fast`` also
    the peer with oneDNN linears."""
    return (PEER[variant], PEER[variant] + FAST) if peer_fast else (PEER[variant],)


def measure(cases: List[Tuple[str, int]], rounds: int, threads: int, peer_fast: bool = False) -> Dict[str, Any]:
    """Times every case's models and the roofs, interleaved over ``rounds`` rounds."""
    from mambairv2.analysis.measure import roofs as measure_roofs

    torch.set_num_threads(threads)
    names = sorted({v for v, _ in cases} | {p for v, _ in cases for p in peers(v, peer_fast)})
    models = {n: build(n) for n in names}
    inputs = {s: torch.rand(1, 3, s, s, generator=torch.Generator().manual_seed(s)) for _, s in cases}
    runs = [(n, s) for v, s in cases for n in (v, *peers(v, peer_fast))]
    # counted first: a run of many minutes must not fail at its end
    macs = {(n, s): count_macs(n, models[n], s) for n, s in runs}
    times: Dict[Tuple[str, int], List[float]] = {r: [] for r in runs}
    roof_runs: List[Dict[str, Any]] = []
    with torch.inference_mode():
        for n, s in runs:  # warm-up: kernels built, caches and allocator primed
            models[n](inputs[s])
        for _ in range(rounds):
            roof_runs.append(measure_roofs(torch.device("cpu")))
            for n, s in runs:
                times[(n, s)].append(_time(lambda: models[n](inputs[s])))
    roofline = statistics.median(r["roof"] for r in roof_runs)
    results = []
    for v, s in cases:
        row: Dict[str, Any] = {"variant": v, "size": s}
        keys = [("ours", v), ("peer", PEER[v])] + ([("peer_fast", PEER[v] + FAST)] if peer_fast else [])
        for key, n in keys:
            lat, m = statistics.median(times[(n, s)]), macs[(n, s)]
            row[key] = {"model": n, "latency_s": lat, "times_s": times[(n, s)], "macs_g": m / 1e9,
                        "gflops": 2 * m / lat / 1e9, "roofline_fraction": 2 * m / lat / 1e9 / roofline}
        for key, suffix in (("peer", ""), ("peer_fast", "_fast")):
            if key in row:
                row["speedup" + suffix] = row[key]["latency_s"] / row["ours"]["latency_s"]
                row["macs_per_s_ratio" + suffix] = row["ours"]["gflops"] / row[key]["gflops"]
        kind, target, roof = goal(v, s)
        reached = row["speedup" if kind == "speed" else "macs_per_s_ratio"]
        row["goal"] = {"kind": kind, "target": target, "reached": reached,
                       "roofline_target": roof, "roofline_reached": row["ours"]["roofline_fraction"]}
        results.append(row)
    return {"threads": threads, "rounds": rounds, "roof_gflops": roofline,
            "matmul_gflops": statistics.median(r["matmul"] for r in roof_runs),
            "onednn_gflops": statistics.median(r["onednn"] or 0.0 for r in roof_runs),
            "roof_runs": roof_runs, "peer_fast": peer_fast,
            "torch": torch.__version__, "machine": platform.machine(), "cpu": _cpu_name(),
            "commit": _commit(), "load_average": _load_average(), "results": results}


def _load_average() -> Optional[List[float]]:
    """The 1, 5 and 15 minute load averages when the run ends (None where unknown)."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


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


def roof_text(report: Dict[str, Any]) -> str:
    """How a report's roof was measured (reports before the oneDNN roof had only the sgemm)."""
    if "roof_gflops" not in report:
        return f"sgemm roofline {report['sgemm_gflops']:.0f} GFLOP/s (2048² torch.mm, same run)"
    return (f"float32 roof {report['roof_gflops']:.0f} GFLOP/s, the faster of a 2048² product "
            f"through torch.mm (MKL, {report['matmul_gflops']:.0f}) and through oneDNN's linear "
            f"({report['onednn_gflops']:.0f}), same run")


def table(report: Dict[str, Any]) -> str:
    """The markdown table of a report."""
    fast = any("peer_fast" in r for r in report["results"])
    load = report.get("load_average")
    lines = [
        f"Measured on commit `{report['commit']}`, {report['cpu']}, {report['threads']} threads, "
        f"float32, batch 1, medians of {report['rounds']} interleaved rounds; {roof_text(report)}"
        + (f"; load average {' '.join(f'{x:.2f}' for x in load)} at its end." if load else "."),
        "",
        "| model x4 | input | ours | GMACs | % roof | peer | peer | GMACs | % roof "
        "| ours vs peer: speed | MAC/s | " + ("peer, oneDNN linears | % roof | speed | MAC/s | " if fast else "")
        + "goal |",
        "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|---|---|" if fast else "") + "---|",
    ]
    for r in report["results"]:
        o, p, g = r["ours"], r["peer"], r["goal"]
        what = "× faster" if g["kind"] == "speed" else "× MAC/s"
        extra = ""
        if fast:
            f = r["peer_fast"]
            extra = (f"{f['latency_s']:.3f} s | {100 * f['roofline_fraction']:.0f}% | "
                     f"{r['speedup_fast']:.2f}× | {r['macs_per_s_ratio_fast']:.2f}× | ")
        lines.append(
            f"| MambaIRv2-{r['variant']} | {r['size']}² | {o['latency_s']:.3f} s | {o['macs_g']:.1f} "
            f"| {100 * o['roofline_fraction']:.0f}% | {p['model']} | {p['latency_s']:.3f} s | "
            f"{p['macs_g']:.1f} | {100 * p['roofline_fraction']:.0f}% | {r['speedup']:.2f}× | "
            f"{r['macs_per_s_ratio']:.2f}× | {extra}≥ {g['target']}{what}"
            + (f", ≥ {100 * g['roofline_target']:.0f}% |" if g["roofline_target"] is not None else " |"))
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
    ap.add_argument("--cases", default="light:16,light:64,light:128,light:256,base:64,base:128",
                    help="comma-separated VARIANT:SIZE (variants: light, base)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peer-fast", action="store_true",
                    help="also time each peer with its linear layers through oneDNN (mambairv2.ops.linear)")
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
        report = measure(cases, args.rounds, args.threads, args.peer_fast)
        report["command"] = "python benchmarks/peer_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_report(args.json, report)
    print(table(report))
    if args.docs:
        write_docs(args.docs, report, report.get("command", "python benchmarks/peer_cpu.py"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
