"""The scaling goals of the CPU issue, in one process: MambaIRv2 against SwinIR at the smallest
input and at a large one restored in tiles, and ours on one thread against two.

Three kinds of case, all timed interleaved over the rounds in one process (medians reported):

* ``VARIANT:SIZE`` (e.g. ``light:16``): one forward of each model on a 1×3×SIZE×SIZE input, as in
  ``peer_cpu.py`` (light against SwinIR-light, base against SwinIR-classic, x4, random weights).
  Forwards this short are repeated within a timing until it lasts ``--min-time`` seconds.
* ``VARIANT:SIZE/TILE`` (e.g. ``light:1024/256``): the whole restore of a SIZE² image through the
  package's tiled path (:func:`mambairv2.inference.restore_tensor`, tile TILE with the default
  overlap unless ``--overlap``) for both models: same tile, same overlap, same tile grid (the
  report lists each model's tile starts).
* ``--thread-cases VARIANT:SIZE``: ours alone at 1 and at ``--threads`` threads; the per-core
  ratio is ``threads · t(threads) / t(1)``: ≥ 1 means one thread does at least as much per core.

    python benchmarks/scaling_cpu.py [--cases light:16,base:16,light:1024/256,base:1024/256]
        [--thread-cases light:128,base:64] [--rounds 3] [--threads 2]
        [--json benchmarks/results/scaling_cpu.json]

The goals (issue 28): nothing slower than the peer at 16² or at 1024² tiled (speed ≥ 1), one
thread no worse per core than two (per-core ratio ≥ 1).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer_cpu  # noqa: E402 - the sibling benchmark: models, peers, machine description

ROOT = peer_cpu.ROOT
Case = Tuple[str, int, Optional[int]]  # variant, size, tile (None: one forward of the whole input)


def parse_cases(text: str, tiles: bool = True) -> List[Case]:
    """``VARIANT:SIZE[/TILE],…`` → cases; raises ValueError on an unknown variant or form."""
    cases: List[Case] = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        variant, _, rest = item.partition(":")
        if variant not in peer_cpu.PEER or not rest:
            raise ValueError(f"bad case {item!r}: VARIANT:SIZE[/TILE] with VARIANT in {', '.join(peer_cpu.PEER)}")
        size, _, tile = rest.partition("/")
        if tile and not tiles:
            raise ValueError(f"bad case {item!r}: no tile here")
        cases.append((variant, int(size), int(tile) if tile else None))
    return cases


def _timed(fn: Callable[[], object], min_time: float) -> float:
    """Seconds per call of ``fn``, repeating it until the timing lasts ``min_time`` seconds."""
    calls, t0 = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_time:
            return elapsed / calls


def _load() -> List[float]:
    try:
        return list(os.getloadavg())
    except OSError:
        return []


def tile_grid(name: str, model: nn.Module, size: int, tile: int, overlap: int) -> Dict[str, Any]:
    """The tile and tile starts :func:`restore_tensor` uses for a SIZE² image with this model."""
    from mambairv2.inference.api import _config, check_tile, tile_starts

    window = int(_config(model, "window_size", 1))
    rounded = check_tile(tile, overlap, window)
    padded = -(-size // window) * window
    return {"tile": rounded, "overlap": overlap, "starts": tile_starts(padded, rounded, overlap, window)}


def measure(cases: List[Case], thread_cases: List[Case], rounds: int, threads: int, overlap: int,
            min_time: float) -> Dict[str, Any]:
    """Times every case interleaved over ``rounds`` rounds; returns the report."""
    from mambairv2.inference import restore_tensor

    names = sorted({v for v, _, _ in cases + thread_cases} | {peer_cpu.PEER[v] for v, _, _ in cases})
    models = {n: peer_cpu.build(n) for n in names}
    inputs = {s: torch.rand(1, 3, s, s, generator=torch.Generator().manual_seed(s))
              for _, s, _ in cases + thread_cases}
    # (label, threads, timing of one round, warm-up): interleaved in this order
    runs: List[Tuple[str, int, Callable[[], float], Callable[[], object]]] = []
    grids: Dict[str, Dict[str, Any]] = {}

    def forward(n: str, s: int) -> Callable[[], float]:
        return lambda: _timed(lambda: models[n](inputs[s]), min_time)

    def restore(n: str, s: int, t: int) -> Callable[[], float]:
        return lambda: _timed(lambda: restore_tensor(models[n], inputs[s], tile=t, tile_overlap=overlap), 0)

    def one_tile(n: str, t: int) -> Callable[[], object]:
        return lambda: models[n](torch.rand(1, 3, t, t))

    for v, s, t in cases:
        pair = (v, peer_cpu.PEER[v])
        for n in pair:
            label = f"{n}:{s}" + (f"/{t}" if t else "")
            runs.append((label, threads, restore(n, s, t) if t else forward(n, s),
                         one_tile(n, t) if t else forward(n, s)))
            if t:
                grids[label] = tile_grid(n, models[n], s, t, overlap)
        if t and grids[f"{v}:{s}/{t}"] != grids[f"{pair[1]}:{s}/{t}"]:
            raise RuntimeError(f"the tile grids of {v} and {pair[1]} differ: {grids}")
    for v, s, _ in thread_cases:
        for th in (1, threads):
            runs.append((f"{v}:{s}@{th}", th, forward(v, s), forward(v, s)))
    times: Dict[str, List[float]] = {label: [] for label, _, _, _ in runs}
    load = [_load()]
    with torch.inference_mode():
        for _, th, _, warm in runs:  # kernels built, caches and allocator primed
            torch.set_num_threads(th)
            warm()
        for _ in range(rounds):
            for label, th, fn, _ in runs:
                torch.set_num_threads(th)
                times[label].append(fn())
            load.append(_load())
    torch.set_num_threads(threads)

    def stats(label: str) -> Dict[str, Any]:
        ts = times[label]
        return {"latency_s": statistics.median(ts), "times_s": ts, "spread_s": max(ts) - min(ts)}

    peer_rows = []
    for v, s, t in cases:
        tail = f":{s}" + (f"/{t}" if t else "")
        ours, peer = stats(v + tail), stats(peer_cpu.PEER[v] + tail)
        row: Dict[str, Any] = {"variant": v, "size": s, "tile": t, "ours": ours,
                               "peer": dict(peer, model=peer_cpu.PEER[v]),
                               "speedup": peer["latency_s"] / ours["latency_s"]}
        if t:
            row["tile_grid"] = grids[v + tail]
        row["goal_met"] = row["speedup"] >= 1.0
        peer_rows.append(row)
    thread_rows = []
    for v, s, _ in thread_cases:
        one, many = stats(f"{v}:{s}@1"), stats(f"{v}:{s}@{threads}")
        ratio = threads * many["latency_s"] / one["latency_s"]
        thread_rows.append({"variant": v, "size": s, "threads_1": one, f"threads_{threads}": many,
                            "speedup": one["latency_s"] / many["latency_s"],
                            "per_core_ratio": ratio, "goal_met": ratio >= 1.0})
    return {"threads": threads, "rounds": rounds, "tile_overlap": overlap, "min_time_s": min_time,
            "load_average": load, "torch": torch.__version__, "cpu": peer_cpu._cpu_name(),
            "commit": peer_cpu._commit(), "peer": peer_rows, "thread_scaling": thread_rows}


def table(report: Dict[str, Any]) -> str:
    """Markdown tables of a report."""
    th = report["threads"]
    lines = [f"Commit `{report['commit']}`, {report['cpu']}, float32, batch 1, medians of "
             f"{report['rounds']} interleaved rounds; load average before/after "
             f"{report['load_average'][0][:1]} / {report['load_average'][-1][:1]}.", "",
             f"| model x4 | input | ours ({th} threads) | peer | peer | ours vs peer | goal ≥ 1× |",
             "|---|---|---|---|---|---|---|"]
    for r in report["peer"]:
        what = f"{r['size']}²" + (f" in {r['tile_grid']['tile']}² tiles (overlap {r['tile_grid']['overlap']}, "
                                  f"{len(r['tile_grid']['starts']) ** 2} tiles)" if r["tile"] else "")
        lines.append(f"| MambaIRv2-{r['variant']} | {what} | {r['ours']['latency_s']:.4g} s | "
                     f"{r['peer']['model']} | {r['peer']['latency_s']:.4g} s | {r['speedup']:.2f}× | "
                     f"{'met' if r['goal_met'] else 'missed'} |")
    if report["thread_scaling"]:
        lines += ["", f"| model x4 | input | 1 thread | {th} threads | speed-up | per-core ratio "
                      f"({th}·t{th}/t1) | goal ≥ 1 |", "|---|---|---|---|---|---|---|"]
        for r in report["thread_scaling"]:
            lines.append(f"| MambaIRv2-{r['variant']} | {r['size']}² | {r['threads_1']['latency_s']:.4g} s | "
                         f"{r[f'threads_{th}']['latency_s']:.4g} s | {r['speedup']:.2f}× | "
                         f"{r['per_core_ratio']:.2f} | {'met' if r['goal_met'] else 'missed'} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    from mambairv2.defaults import DEFAULT_TILE_OVERLAP

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="light:16,base:16,light:1024/256,base:1024/256",
                    help="comma-separated VARIANT:SIZE or VARIANT:SIZE/TILE (empty: none)")
    ap.add_argument("--thread-cases", default="light:128,base:64",
                    help="comma-separated VARIANT:SIZE, ours at 1 and --threads threads (empty: none)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--overlap", type=int, default=DEFAULT_TILE_OVERLAP)
    ap.add_argument("--min-time", type=float, default=0.5,
                    help="seconds a single-forward timing lasts at least (short forwards repeated)")
    peer_cpu.add_output_options(ap, ROOT / "benchmarks/results/scaling_cpu.json")
    args = ap.parse_args(argv)
    peer_cpu.check_output(ap, args)
    try:
        cases, thread_cases = parse_cases(args.cases), parse_cases(args.thread_cases, tiles=False)
    except ValueError as exc:
        ap.error(str(exc))
    report = measure(cases, thread_cases, args.rounds, args.threads, args.overlap, args.min_time)
    report["command"] = "python benchmarks/scaling_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
    peer_cpu.write_report(args.json, report)
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
