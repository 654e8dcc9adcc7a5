"""``mambairv2 restore INPUT... -o OUT_DIR``: restore image files, folders and glob patterns."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..defaults import DEFAULT_TILE_OVERLAP
from ..utils.text import printable
from .errors import CLIError
from .model_option import add_model_option, load_model_arg, model_files, resolve_model

EPILOG = """examples:
  mambairv2 restore photo.jpg -o out                          # the bundled default (Light x4)
  mambairv2 restore photo.jpg -o out --model MambaIRv2_lightSR_x2.pth
  mambairv2 restore scans/ -r -o restored --model model.safetensors --tile auto --ext png
  mambairv2 restore "shots/*.png" -o out --model model.pth --suffix _x2 --device cuda --dtype bfloat16
  mambairv2 restore photos/ -o out --json report.json          # per-file report for scripts
  torchrun --nproc_per_node 4 -m mambairv2 restore photos/ -o out   # 4 GPUs (or CPU ranks)

Outputs keep their input's name; super-resolution keeps the input's format (16-bit stays
16-bit, alpha is kept; GIF, PPM, TGA and extension-less inputs become PNG), denoising and
JPEG-artifact models write lossless PNG, unless --ext/--suffix say otherwise. Existing
outputs are skipped unless --overwrite, so a rerun resumes an interrupted run (and removes the
temporary files it left). When stdout is not a terminal, one line per file goes to stdout.
Files that cannot be restored are reported one per line on stderr; the exit code is 1 if any
failed.

Under torchrun, the inputs are split among the ranks (each file exactly once), each rank uses
its own GPU (--device auto) or a share of the CPU cores, and rank 0 prints the summary and
writes --json."""


def _tile_arg(text: str):
    if text.lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size in pixels or 'auto', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"tile size must be positive, got {value}")
    return value


def _nonnegative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {value}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ..defaults import DEFAULT_MAX_PIXELS, EXT_CHOICES

    p = subparsers.add_parser(
        "restore", help="restore images: super-resolution, denoising, JPEG artifact removal",
        description="Restore images with a MambaIRv2 model. Inputs are never modified; every "
                    "output is written to a temporary file and renamed into place.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders (their image files; see --recursive) or glob patterns")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="folder for the restored images")
    add_model_option(p, extra=": any of the authors' MambaIR/MambaIRv2 checkpoints (github.com/csguoh/"
                     "MambaIR), the configuration detected from its tensors")
    p.add_argument("-r", "--recursive", action="store_true", help="also restore images in subfolders "
                   "(the folder structure is kept under OUT_DIR)")
    p.add_argument("--tile", type=_tile_arg, default=None, metavar="N|auto",
                   help="restore in overlapping tiles of N input pixels (rounded to the model's "
                        "window, 16) to bound memory; 'auto' picks N from the memory this process "
                        "may use (free RAM or GPU memory, cgroup and ulimit -v limits), prints it, "
                        "and halves it on an out-of-memory error (default: whole image)")
    p.add_argument("--tile-overlap", type=_nonnegative, default=DEFAULT_TILE_OVERLAP, metavar="N",
                   help="overlap of neighbouring tiles in input pixels, blended with smooth weights "
                        "(default: %(default)s)")
    p.add_argument("--self-ensemble", action="store_true",
                   help="average the results of the 8 flips/transposes (8x slower, slightly better)")
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda|mps",
                   help="where to run (default: %(default)s: CUDA, else MPS, else CPU)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="computation precision; bfloat16 on a CPU: mixed precision with float32 "
                        "weights (the scan and softmax in float32), refused where the CPU has no "
                        "native bfloat16 (default: %(default)s)")
    p.add_argument("--routing", default="argmax", choices=("argmax", "gumbel"),
                   help="token routing of the attentive state-space module: 'argmax' is "
                        "deterministic, 'gumbel' samples as the released code does (default: %(default)s)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the gumbel routing, reset for every image (default: random)")
    p.add_argument("--ext", "--format", dest="ext", default=None, choices=EXT_CHOICES,
                   help="output format; 'same': the input's (default: 'same' for super-resolution, "
                        "lossless 'png' for denoising and JPEG-artifact models)")
    p.add_argument("--suffix", default="", help="appended to output file names, e.g. _x2 (default: none)")
    p.add_argument("--quality", type=int, default=95, metavar="Q",
                   help="JPEG/WebP quality 1-100; 100 makes WebP lossless (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip them)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help="refuse images with more pixels than this (default: %(default)s)")
    p.add_argument("--json", metavar="REPORT", default=None,
                   help="write a JSON report: per file the input, output, status, reason, sizes, "
                        "seconds and tile, and the summary")
    p.add_argument("-q", "--quiet", action="store_true", help="print only failures and the summary")
    p.set_defaults(func=run)
    return p


# -- printing ------------------------------------------------------------------------------------
class Reporter:
    """Where messages go: failures, notes and the summary to stderr; one line per file to stdout
    when stdout is not a terminal (scripts, CI); a progress bar when both are terminals."""

    def __init__(self, quiet: bool, prefix: str = "") -> None:
        self.quiet = quiet
        self.prefix = prefix
        self.lines = not quiet and not sys.stdout.isatty()
        self.bar_wanted = not quiet and sys.stdout.isatty() and sys.stderr.isatty()

    def err(self, msg: str) -> None:
        from tqdm import tqdm

        tqdm.write(printable(self.prefix + msg), file=sys.stderr)

    def info(self, msg: str) -> None:
        if not self.quiet:
            self.err(msg)

    def result(self, r) -> None:
        """The line of one file's result."""
        if r.status == "failed":
            self.err(f"failed: {r.input}: {r.reason}")
        elif r.status == "skipped":
            if self.lines:
                print(printable(f"{self.prefix}skipped: {r.input}: {r.reason}"), flush=True)
            else:
                self.info(f"skipped: {r.input}: {r.reason}")
        elif self.lines:
            (w, h), (ow, oh) = r.size_in, r.size_out
            print(printable(f"{self.prefix}restored: {r.input}: {w}×{h} → {ow}×{oh} in {r.seconds:.2f} s → "
                            f"{r.output}"), flush=True)
        for note in r.notes:
            self.info(f"note: {r.output}: {note}")


# -- running -------------------------------------------------------------------------------------
def _check_options(args: argparse.Namespace) -> None:
    if not 1 <= args.quality <= 100:
        raise CLIError(f"--quality must be between 1 and 100, got {args.quality}")
    if args.max_pixels < 1:
        raise CLIError("--max-pixels must be positive")
    if args.seed is not None and args.routing != "gumbel":
        print("warning: --seed has no effect without --routing gumbel (argmax routing is deterministic)",
              file=sys.stderr)
    if any(sep in args.suffix for sep in ("/", "\\", os.sep)):
        raise CLIError(f"--suffix must not contain a path separator: {args.suffix!r}")
    out_dir = Path(args.output)
    if os.path.lexists(out_dir) and not out_dir.is_dir():
        what = "is a broken link or a symlink loop" if out_dir.is_symlink() and not out_dir.exists() \
            else "exists and is not a folder"
        raise CLIError(f"-o {out_dir}: {what}")
    from ..utils.outputs import OutputError, check_output, check_writable

    try:  # the images themselves: per file in the plan (inference.plan.plan_outputs)
        check_writable(out_dir, "-o", out_dir)
        if args.json:
            check_output(args.json, "--json", inputs=[*args.inputs, *model_files(args)], overwrite=args.overwrite, suffixes=(".json",))
    except OutputError as exc:
        raise CLIError(str(exc)) from None


def _checked_tile(args: argparse.Namespace, model, rep: "Reporter") -> None:
    """Applies the model family's default tiling where --tile is not given (MambaIR v1: the
    authors' test-time tiles), then validates --tile/--tile-overlap against the model's window,
    after rounding."""
    from ..inference.api import check_tile

    from ..models import family_of

    family = family_of(model)
    tiling = family.tile_defaults(model.config)
    if args.tile is None and tiling is not None:
        args.tile = tiling["tile"]
        if args.tile_overlap == DEFAULT_TILE_OVERLAP:
            args.tile_overlap = tiling["tile_overlap"]
        rep.info(f"tile: {args.tile} px, overlap {args.tile_overlap} (the authors' test-time tiling "
                 f"for {family.display} models; --tile N or --tile auto to change)")
    window = family.pad_multiple(model.config)
    try:
        if isinstance(args.tile, int):
            check_tile(args.tile, args.tile_overlap, window)
    except ValueError as exc:
        raise CLIError(f"--tile {args.tile} --tile-overlap {args.tile_overlap}: {exc}") from None


def _describe_model(model, ref, device, args: argparse.Namespace) -> str:
    from ..models import describe

    info = describe(model)
    return (f"model: {info.label}, {info.arch}, {info.in_chans}-channel input, from {ref.label}, "
            f"on {device}, {args.dtype}")


def _describe_memory(device) -> str:
    from ..utils.memory import memory_sources

    sources = memory_sources(device)
    if not sources:
        return "tile auto: usable memory unknown (4 GiB assumed)"
    parts = ", ".join(f"{k} {v / 2**30:.1f} GiB" for k, v in sources.items())
    return f"tile auto: usable memory {min(sources.values()) / 2**30:.1f} GiB (least of {parts})"


def _plan(args: argparse.Namespace, model, say) -> Dict[str, Any]:
    """Rank 0's plan: jobs (in order), inputs that matched nothing, or the error to raise."""
    from ..inference.plan import collect_jobs, mark_existing, plan_outputs, prepare_output_folders

    out_dir = Path(args.output)
    jobs, missing = collect_jobs(args.inputs, args.recursive, out_dir)
    if not jobs and not missing:
        return {"error": "no input images"}
    upscale = int(model.config.upscale)
    plan_outputs(jobs, out_dir, args.ext, args.suffix, args.overwrite, upscale, model_files(args))
    mark_existing(jobs, args.overwrite)
    if any(j.problem is None and j.skip is None for j in jobs):
        try:
            removed = prepare_output_folders(jobs, out_dir)
        except OSError as exc:
            return {"error": f"-o {out_dir}: cannot write there ({exc.strerror or exc})"}
        if removed:
            say(f"removed {len(removed)} temporary file(s) left by an interrupted run")
    return {"jobs": jobs, "missing": missing}


def _plan_on_rank0(args: argparse.Namespace, model, rep: Reporter, ranks) -> Optional[Dict[str, Any]]:
    """Rank 0 plans; the others get its plan by broadcast (so they never wait for a plan that
    failed: the error travels instead)."""
    if ranks.rank != 0:
        return None
    if not ranks.distributed:
        return _plan(args, model, rep.info)
    try:
        return _plan(args, model, rep.info)
    except Exception as exc:  # noqa: BLE001 - the other ranks must hear of it, not hang
        return {"error": f"planning the outputs failed: {type(exc).__name__}: {exc}"}


def _restore_jobs(model, jobs, args: argparse.Namespace, rep: Reporter, rank: int) -> List[Any]:
    """Restores ``jobs`` in order, reporting each; returns their results."""
    from tqdm import tqdm

    from ..inference.files import RestoreOptions, restore_file

    todo = sum(1 for j in jobs if j.problem is None and j.skip is None)
    bar = tqdm(total=todo, unit="img", desc="restore", disable=not (rep.bar_wanted and todo),
               dynamic_ncols=True, file=sys.stderr)
    options = RestoreOptions(tile=args.tile, tile_overlap=args.tile_overlap, self_ensemble=args.self_ensemble,
                             routing=args.routing, seed=args.seed, quality=args.quality,
                             overwrite=args.overwrite, max_pixels=args.max_pixels, progress=rep.bar_wanted,
                             dtype=getattr(args, "autocast_dtype", None))
    results = []
    try:
        for job in jobs:
            def on_tile(tile, overlap, why, name=job.src.name):
                size = f"{tile} px, overlap {overlap}" if tile else "whole image"
                rep.info(f"tile: {name}: {size} ({why})")

            bar.set_postfix_str(job.src.name[-40:], refresh=False)
            result = restore_file(model, job, options, on_tile if args.tile == "auto" else None)
            result.rank = rank
            rep.result(result)
            results.append(result)
            if job.problem is None and job.skip is None:
                bar.update(1)
    finally:
        bar.close()
    return results


def _finish(results, missing, args: argparse.Namespace, ref, device, world: int,
            start: float) -> int:
    """Rank 0: the summary line and the --json report; the exit code."""
    from ..utils.atomic import atomic_write_bytes
    from ..inference.files import summarize

    counts = summarize(results)
    counts["failed"] += len(missing)
    seconds = time.monotonic() - start
    line = (f"restored {counts['restored']}, skipped {counts['skipped']}, failed {counts['failed']} "
            f"in {seconds:.1f} s" + (f"; outputs in {args.output}" if counts["restored"] else ""))
    print(line + (f" ({world} ranks)" if world > 1 else ""), file=sys.stderr)
    if args.json:
        report = {"command": "restore", "model": str(ref.path or ref.label), "device": str(device),
                  "ranks": world, "output_dir": str(args.output), "summary": dict(counts, seconds=round(seconds, 3)),
                  "files": [{"input": text, "status": "failed", "reason": reason} for text, reason in missing]
                  + [r.as_dict() for r in results]}
        try:
            atomic_write_bytes(args.json, (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode(),
                               overwrite=args.overwrite)
        except OSError as exc:
            print(f"error: --json {args.json}: cannot write ({exc.strerror or exc})", file=sys.stderr)
            return 1
    return 1 if counts["failed"] else 0


def run(args: argparse.Namespace) -> int:
    from ..utils.devices import resolve_device, resolve_dtype
    from ..utils.distributed import Ranks
    from ..inference.plan import shard

    start = time.monotonic()
    _check_options(args)
    ranks = Ranks.from_env()
    rep = Reporter(args.quiet, prefix=f"[rank {ranks.rank}] " if ranks.distributed else "")
    from ..ops import precision_plan

    try:
        device = resolve_device(ranks.device(args.device))
        plan = precision_plan(device, resolve_dtype(args.dtype))
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    args.autocast_dtype = None if plan.autocast is None else args.dtype
    from ..models import set_routing

    ref = resolve_model(args)  # checked even when every output exists already
    ranks.share_cpu_threads()
    ranks.start()
    try:
        _, model = load_model_arg(args, device, plan.weights)
        set_routing(model, args.routing, args.seed)
        _checked_tile(args, model, rep)
        if ranks.rank == 0:
            rep.info(_describe_model(model, ref, device, args))
            if args.tile == "auto":
                rep.info(_describe_memory(device))
        plan = ranks.broadcast(_plan_on_rank0(args, model, rep, ranks))
        if "error" in plan:
            raise CLIError(plan["error"])
        jobs = plan["jobs"]
        if ranks.rank == 0:
            for text, reason in plan["missing"]:
                rep.err(f"failed: {text}: {reason}")
        todo = [j for j in jobs if j.problem is None and j.skip is None]
        mine = shard(todo, ranks.rank, ranks.world)
        if ranks.rank == 0:  # reporting the others costs nothing
            mine = [j for j in jobs if j.problem or j.skip] + mine
        try:
            results = _restore_jobs(model, mine, args, rep, ranks.rank)
        except KeyboardInterrupt:
            print(f"{rep.prefix}interrupted: a rerun resumes (finished outputs are kept)", file=sys.stderr)
            raise
        merged = [r for part in ranks.gather(results) for r in part]
        order = {str(j.src): i for i, j in enumerate(jobs)}
        merged.sort(key=lambda r: order.get(r.input, len(order)))
        if ranks.rank != 0:
            return 1 if any(r.status == "failed" for r in merged) or plan["missing"] else 0
        return _finish(merged, plan["missing"], args, ref, device, ranks.world, start)
    finally:
        ranks.stop()
