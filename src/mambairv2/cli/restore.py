"""``mambairv2 restore INPUT... -o OUT_DIR``: restore image files, folders and glob patterns."""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..bundled import bundled_models
from .errors import CLIError

AUTHORS_WEIGHTS = ("the authors publish their checkpoints (e.g. MambaIRv2_lightSR_x2.pth, "
                   "MambaIRv2_SR_x4.pth) through the GitHub releases and Google Drive links of "
                   "https://github.com/csguoh/MambaIR; download one and pass --weights FILE "
                   "(.pth as released, or a .safetensors from 'mambairv2 convert')")
HIDDEN_PREFIX = "."
EPILOG = """examples:
  mambairv2 restore photo.jpg -o out --weights MambaIRv2_lightSR_x2.pth
  mambairv2 restore scans/ -r -o restored --weights model.safetensors --tile 256 --format png
  mambairv2 restore "shots/*.png" -o out --weights model.pth --suffix _x2 --device cuda --dtype bfloat16

Outputs keep their input's name and format (16-bit stays 16-bit, alpha is kept) unless
--format/--suffix say otherwise. Existing outputs are skipped unless --overwrite. Files that
cannot be restored are reported one per line; the exit code is 1 if any failed."""


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
    from ..imageio import DEFAULT_MAX_PIXELS
    from ..restore import DEFAULT_TILE_OVERLAP

    p = subparsers.add_parser(
        "restore", help="restore images: super-resolution, denoising, JPEG artifact removal",
        description="Restore images with a MambaIRv2 model. Inputs are never modified; every "
                    "output is written to a temporary file and renamed into place.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders (their image files; see --recursive) or glob patterns")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="folder for the restored images")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--weights", metavar="FILE",
                     help="checkpoint: any released MambaIRv2 .pth or a .safetensors from "
                          "'mambairv2 convert' (the configuration is detected)")
    names = ", ".join(bundled_models()) or "none"
    src.add_argument("--model", metavar="NAME", help=f"a model bundled with the package (bundled: {names}); "
                     "without --weights and --model, 'default' (this project's MambaIRv2-Light x4)")
    p.add_argument("-r", "--recursive", action="store_true", help="also restore images in subfolders "
                   "(the folder structure is kept under OUT_DIR)")
    p.add_argument("--tile", type=_tile_arg, default=None, metavar="N|auto",
                   help="restore in overlapping tiles of N input pixels (rounded to the model's "
                        "window, 16) to bound memory; 'auto' picks N from free memory "
                        "(default: whole image)")
    p.add_argument("--tile-overlap", type=_nonnegative, default=DEFAULT_TILE_OVERLAP, metavar="N",
                   help="overlap of neighbouring tiles in input pixels, blended with smooth weights "
                        "(default: %(default)s)")
    p.add_argument("--self-ensemble", action="store_true",
                   help="average the results of the 8 flips/transposes (8x slower, slightly better)")
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda|mps",
                   help="where to run (default: %(default)s: CUDA, else MPS, else CPU)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="computation precision (default: %(default)s)")
    p.add_argument("--routing", default="argmax", choices=("argmax", "gumbel"),
                   help="token routing of the attentive state-space module: 'argmax' is "
                        "deterministic, 'gumbel' samples as the released code does (default: %(default)s)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the gumbel routing, reset for every image (default: random)")
    p.add_argument("--format", default=None, choices=("png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp"),
                   help="output format (default: the input's)")
    p.add_argument("--suffix", default="", help="appended to output file names, e.g. _x2 (default: none)")
    p.add_argument("--quality", type=int, default=95, metavar="Q",
                   help="JPEG/WebP quality 1-100; 100 makes WebP lossless (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip them)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help="refuse images with more pixels than this (default: %(default)s)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only failures and the summary")
    p.set_defaults(func=run)
    return p


# -- inputs and outputs ----------------------------------------------------------------------------
@dataclass
class Job:
    """One input file and where its output goes."""

    src: Path
    rel: Path  # output path relative to OUT_DIR, before suffix/format changes
    out: Optional[Path] = None
    problem: Optional[str] = None  # a reason to fail before reading
    skip: Optional[str] = None  # a reason not to restore it


@dataclass
class Tally:
    restored: int = 0
    skipped: int = 0
    failed: int = 0
    start: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        return (f"restored {self.restored}, skipped {self.skipped}, failed {self.failed} "
                f"in {time.monotonic() - self.start:.1f} s")


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder)
        return True
    except ValueError:
        return False


def _scan_folder(folder: Path, recursive: bool, out_dir: Path) -> List[Path]:
    """Image files of ``folder``, sorted; hidden files are left out, and so is OUT_DIR when it
    is a subfolder (earlier outputs are not inputs)."""
    from ..imageio import EXTENSIONS

    exclude = None if _is_inside(folder, out_dir) else out_dir
    found: List[Path] = []
    for root, dirs, files in os.walk(folder):
        rootp = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(HIDDEN_PREFIX)
                         and not (exclude and _is_inside(rootp / d, exclude))) if recursive else []
        for name in sorted(files):
            path = rootp / name
            if not name.startswith(HIDDEN_PREFIX) and path.suffix.lower() in EXTENSIONS:
                found.append(path)
    return found


def collect_jobs(inputs: List[str], recursive: bool, out_dir: Path) -> Tuple[List[Job], List[Tuple[str, str]]]:
    """Jobs for the given inputs, and ``(input, reason)`` for inputs that match nothing."""
    jobs: List[Job] = []
    missing: List[Tuple[str, str]] = []
    out_resolved = out_dir.resolve()
    seen: set = set()

    def add(path: Path, rel: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            jobs.append(Job(path, rel))

    for text in inputs:
        path = Path(text)
        if path.is_dir():
            files = _scan_folder(path, recursive, out_resolved)
            if not files:
                missing.append((text, "folder holds no images" + ("" if recursive else " (try --recursive)")))
            for f in files:
                add(f, f.relative_to(path))
        elif path.exists() or path.is_symlink():
            add(path, Path(path.name))
        elif glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=recursive))
            files = [Path(m) for m in matches if Path(m).is_file()]
            if not files:
                missing.append((text, "pattern matches no files"))
            for f in files:
                add(f, Path(f.name))
        else:
            missing.append((text, "no such file or folder"))
    return jobs, missing


def plan_outputs(jobs: List[Job], out_dir: Path, fmt: Optional[str], suffix: str,
                 overwrite: bool = False) -> None:
    """Sets ``job.out``, and the reasons not to write some of them:

    - an input that is the planned output of another input (an earlier run's output lying in
      the input folder) is skipped, not restored again (and may be overwritten as an output);
    - an output that is an input is never replaced: skipped (it exists), or failed with
      ``--overwrite``;
    - two inputs with the same output: the second fails.
    """
    from ..imageio import EXTENSIONS

    for job in jobs:
        ext = job.rel.suffix
        if fmt:
            ext = "." + fmt.lower()
        elif ext.lower() not in EXTENSIONS:
            ext = ".png"  # other readable formats (GIF, PPM…) come out as PNG
        job.out = out_dir / job.rel.parent / f"{job.rel.stem}{suffix}{ext}"
    output_of = {}
    for job in jobs:
        output_of.setdefault(job.out.resolve(), job.src)
    for job in jobs:
        owner = output_of.get(job.src.resolve())
        if owner is not None and owner.resolve() != job.src.resolve():
            job.skip = f"is the output of {owner}"
    taken: Dict[Path, Path] = {}
    inputs = {j.src.resolve() for j in jobs if j.skip is None}
    for job in jobs:
        key = job.out.resolve()
        if job.skip:
            continue
        if key in inputs:
            if overwrite:
                job.problem = f"the output {job.out} would replace an input; choose another -o or a --suffix"
            else:
                job.skip = f"{job.out} exists and is an input"
        elif key in taken:
            job.problem = f"the output {job.out} is already the output of {taken[key]}"
        else:
            taken[key] = job.src


# -- model ---------------------------------------------------------------------------------------
def _model_file(args: argparse.Namespace) -> Path:
    if args.weights:
        return Path(args.weights)
    bundled = bundled_models()
    name = args.model or ("default" if "default" in bundled else None)
    if name is None:
        raise CLIError(f"no model given and no bundled default model installed: {AUTHORS_WEIGHTS}")
    if name in bundled:
        return bundled[name]
    names = ", ".join(bundled) or "none"
    raise CLIError(f"no bundled model named {name!r} (bundled: {names}); or {AUTHORS_WEIGHTS}")


def _load(path: Path, device, dtype):
    from ..checkpoint import CheckpointError, load_model

    try:
        return load_model(path, device=device, dtype=dtype)
    except CheckpointError as exc:
        raise CLIError(str(exc)) from None
    except (OSError, RuntimeError) as exc:
        raise CLIError(f"{path}: cannot load the model ({' '.join(str(exc).split())[:200]})") from None


# -- running -------------------------------------------------------------------------------------
def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, MemoryError) or "out of memory" in text.lower() or "can't allocate memory" in text:
        return "out of memory; try --tile 256 (or --tile auto)"
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _restore_one(model, job: Job, args: argparse.Namespace, progress: bool) -> List[str]:
    """Reads, restores and writes one image; returns notes on what the output format could not
    hold. Raises ImageReadError/ImageWriteError/OSError/…"""
    import numpy as np

    from ..imageio import atomic_write_bytes, encode_image, format_for_name, read_image, with_pixels
    from ..restore import restore_tensor
    import torch

    image = read_image(job.src, max_pixels=args.max_pixels)
    px = image.pixels
    peak = 65535.0 if px.dtype == np.uint16 else 255.0
    x = torch.from_numpy(px.astype(np.float32) / peak).permute(2, 0, 1)[None]
    if args.routing == "gumbel" and hasattr(model, "set_routing"):
        model.set_routing("gumbel", args.seed)
    y = restore_tensor(model, x, tile=args.tile, tile_overlap=args.tile_overlap,
                       self_ensemble=args.self_ensemble, progress=progress)
    out_px = np.rint(y[0].permute(1, 2, 0).numpy() * peak).astype(px.dtype)
    fmt = format_for_name(args.format) if args.format else image.format
    notes = []
    if fmt == "JPEG" and image.channels in (2, 4):
        notes.append("JPEG has no alpha channel: transparency dropped")
    if fmt in ("JPEG", "WEBP", "BMP") and image.bit_depth == 16:
        notes.append(f"{fmt} holds 8 bits per sample: stored as 8-bit")
    data = encode_image(with_pixels(image, out_px), fmt, quality=args.quality)
    atomic_write_bytes(job.out, data, overwrite=args.overwrite)
    return notes


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..imageio import ImageReadError, ImageWriteError
    from ..restore import resolve_device, resolve_dtype

    if not 1 <= args.quality <= 100:
        raise CLIError(f"--quality must be between 1 and 100, got {args.quality}")
    if isinstance(args.tile, int) and args.tile_overlap >= args.tile:
        raise CLIError(f"--tile-overlap ({args.tile_overlap}) must be smaller than --tile ({args.tile})")
    if args.max_pixels < 1:
        raise CLIError("--max-pixels must be positive")
    if any(sep in args.suffix for sep in ("/", "\\", os.sep)):
        raise CLIError(f"--suffix must not contain a path separator: {args.suffix!r}")
    try:
        device = resolve_device(args.device)
        dtype = resolve_dtype(args.dtype)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    model_path = _model_file(args)
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise CLIError(f"-o {out_dir}: exists and is not a folder")

    jobs, missing = collect_jobs(args.inputs, args.recursive, out_dir)
    if not jobs and not missing:
        raise CLIError("no input images")
    plan_outputs(jobs, out_dir, args.format, args.suffix, args.overwrite)
    tally = Tally()
    say = (lambda msg: None) if args.quiet else (lambda msg: tqdm.write(msg, file=sys.stderr))

    def fail(name, reason: str) -> None:
        tally.failed += 1
        tqdm.write(f"failed: {name}: {reason}", file=sys.stderr)

    for text, reason in missing:
        fail(text, reason)
    todo: List[Job] = []
    for job in jobs:
        if job.problem:
            fail(job.src, job.problem)
        elif job.skip:
            tally.skipped += 1
            say(f"skipped: {job.src}: {job.skip}")
        elif job.out.exists() and not args.overwrite:
            tally.skipped += 1
            say(f"skipped: {job.src}: {job.out} exists (--overwrite replaces it)")
        else:
            todo.append(job)

    if todo:
        model = _load(model_path, device, dtype)
        if hasattr(model, "set_routing"):
            model.set_routing(args.routing, args.seed)
        cfg = getattr(model, "config", None)
        if cfg is not None:
            say(f"model: {getattr(cfg, 'arch', type(model).__name__)} x{cfg.upscale} "
                f"({cfg.in_chans}-channel input) from {model_path}, on {device}, {args.dtype}")
        interactive = not args.quiet and sys.stderr.isatty()
        bar = tqdm(total=len(todo), unit="img", desc="restore", disable=not interactive,
                   dynamic_ncols=True, file=sys.stderr)
        try:
            for job in todo:
                bar.set_postfix_str(job.src.name[-40:], refresh=False)
                try:
                    for note in _restore_one(model, job, args, progress=interactive):
                        say(f"note: {job.out}: {note}")
                    tally.restored += 1
                except FileExistsError:
                    tally.skipped += 1
                    say(f"skipped: {job.src}: {job.out} appeared meanwhile (--overwrite replaces it)")
                except (ImageReadError, ImageWriteError) as exc:
                    fail(job.src, str(exc))
                except OSError as exc:
                    fail(job.src, f"cannot write {job.out}: {exc.strerror or exc}")
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as exc:  # noqa: BLE001 - one bad file must not stop the run
                    if os.environ.get("MAMBAIRV2_DEBUG"):
                        raise
                    fail(job.src, _reason(exc))
                bar.update(1)
        except KeyboardInterrupt:
            bar.close()
            print(f"interrupted: {tally.line()}", file=sys.stderr)
            raise
        bar.close()
    print(tally.line() + (f"; outputs in {out_dir}" if tally.restored else ""), file=sys.stderr)
    return 1 if tally.failed else 0
