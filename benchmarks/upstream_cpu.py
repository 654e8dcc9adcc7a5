"""CPU forward time of the spandrel upstream folders (pure PyTorch: chunked scan, plain attention,
no C kernels, no oneDNN-private calls) against this project's own path (``load_model``'s default
dispatch), on the same weights and input, float32, ``torch.inference_mode()``.

    PYTHONPATH=src python benchmarks/upstream_cpu.py --out benchmarks/results/cpu_upstream_spandrel.json

Needs an importable spandrel (the folders import ``spandrel.util``); run it with the Python of an
environment that has spandrel and torchvision (``bash scripts/host_env.sh``).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
FOLDERS = REPO / "integrations" / "spandrel_upstream" / "folders"
CASES = {"light_x4_128": ("light", 4, 128), "base_x4_64": ("base", 4, 64)}


def upstream(family: str):
    name = f"spandrel.architectures.{family}"
    folder = FOLDERS / family
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def timed(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> list:
    with torch.inference_mode():
        model(x)  # warm-up: plans, caches, first-call allocations
        out = []
        for _ in range(repeats):
            t = time.perf_counter()
            model(x)
            out.append(time.perf_counter() - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from mambairv2.models import create_model

    arch = upstream("MambaIRv2").MambaIRv2Arch()
    results = {}
    for label in args.cases:
        variant, scale, size = CASES[label]
        torch.manual_seed(0)
        project = create_model(variant, scale=scale).eval()
        ours = arch.load(project.state_dict()).model.eval()
        x = torch.rand(1, 3, size, size)
        load_before = os.getloadavg()
        with torch.inference_mode():
            diff = (ours(x) - project(x)).abs().max().item()
        rows = {}
        for name, model in (("project_fast_path", project), ("spandrel_upstream", ours)):
            t = timed(model, x, args.repeats)
            rows[name] = {"median_s": statistics.median(t), "runs_s": t}
        rows["upstream_over_fast"] = rows["spandrel_upstream"]["median_s"] / rows["project_fast_path"]["median_s"]
        rows["max_abs_difference"] = diff
        # the machine's 1/5/15-minute load averages before and after the case (shared machines)
        rows["loadavg_before"], rows["loadavg_after"] = list(load_before), list(os.getloadavg())
        results[label] = rows
        print(label, json.dumps({k: (v["median_s"] if isinstance(v, dict) else v) for k, v in rows.items()}))
        cases = "" if args.cases == list(CASES) else " --cases " + " ".join(args.cases)
        # written after each case, so a run cut short keeps what it measured
        args.out.write_text(json.dumps({
            "command": f"PYTHONPATH=src python benchmarks/upstream_cpu.py --out {args.out} --threads {args.threads}"
                       f" --repeats {args.repeats}{cases}",
            "torch": torch.__version__, "threads": args.threads, "cpu_count": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "platform": platform.platform(),
            "note": "shared 2-core machine with other jobs running: timings are indicative only",
            "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
