"""``mambairv2 degrade --task sr|denoise|jpeg ... --hr-dir DIR --out DIR``: write the degraded
inputs of the benchmark protocol (see :mod:`mambairv2.protocol.degrade`)."""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Tuple

if TYPE_CHECKING:  # numpy is imported where used: building the parser must stay light
    import numpy as np

from .errors import CLIError

EPILOG = """outputs (written atomically: a temporary file renamed into place):
  sr       <name>x<S>.png  8-bit: MATLAB bicubic of the HR image mod-cropped to S
                           (the naming of the benchmarks' LR_bicubic folders)
  denoise  <name>.npy      float32 H×W×3, RGB, [0, 1] scale plus noise, NOT clipped: exactly the
                           released test's input (seed 0 per image); np.load() reads it
           <name>.png      with --denoise-format png16: 16-bit RGB PNG of the input clipped to
                           [0, 1] (viewable, but the values beyond [0, 1] are lost)
  jpeg     <name>.png      the decoded JPEG (OpenCV encoder at quality Q), lossless; gray unless
                           --color

'mambairv2 evaluate --lr-dir OUT' reads these files back. Existing outputs are skipped unless
--overwrite. Files that are not images are skipped with a warning.

examples:
  mambairv2 degrade --task sr --scale 4 --hr-dir Set5/HR --out Set5/LR_x4
  mambairv2 degrade --task denoise --sigma 25 --hr-dir CBSD68 --out CBSD68_s25
  mambairv2 degrade --task jpeg --quality 10 --hr-dir classic5 --out classic5_q10"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "degrade", help="make the degraded inputs of the benchmark protocol (SR, noise, JPEG)",
        description="Write the inputs of the paper's benchmark tables for a folder of clean "
                    "images: bicubic LR (MATLAB imresize), colour Gaussian noise as the released "
                    "test adds it, or OpenCV JPEG.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=("sr", "denoise", "jpeg"), help="the degradation")
    p.add_argument("--scale", type=int, metavar="S", help="SR scale factor (2, 3, 4, …)")
    p.add_argument("--sigma", type=float, metavar="N", help="noise level on the 0..255 scale (15, 25, 50)")
    p.add_argument("--quality", type=int, metavar="Q", help="JPEG quality 1-100 (10, 30, 40)")
    p.add_argument("--hr-dir", required=True, metavar="DIR", help="folder of clean images")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the degraded inputs")
    p.add_argument("--color", action="store_true",
                   help="jpeg: keep colour images in colour (default: gray, as in the tables)")
    p.add_argument("--denoise-format", choices=("npy", "png16"), default="npy",
                   help="denoise: exact unclipped float32 .npy, or clipped 16-bit PNG (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("-q", "--quiet", action="store_true", help="print only warnings and the summary")
    p.set_defaults(func=run)
    return p


def _check_level(args: argparse.Namespace):
    """The TaskSpec of the arguments; one-line errors for missing or misplaced levels."""
    from ..protocol.task import EvaluationError, TaskSpec

    levels = {"sr": "--scale", "denoise": "--sigma", "jpeg": "--quality"}
    for task, flag in levels.items():
        value = getattr(args, flag[2:])
        if task == args.task and value is None:
            raise CLIError(f"--task {task} needs {flag}")
        if task != args.task and value is not None:
            raise CLIError(f"{flag} applies to --task {task}, not {args.task}")
    if args.color and args.task != "jpeg":
        raise CLIError("--color applies to --task jpeg")
    try:
        return TaskSpec(args.task, scale=args.scale or 1, sigma=args.sigma, quality=args.quality,
                        color=args.color)
    except EvaluationError as exc:
        raise CLIError(str(exc)) from None


def degraded_file(path: Path, spec, denoise_format: str = "npy") -> Tuple[str, str]:
    """Output name and kind (``png`` / ``npy`` / ``png16``) for a clean image ``path``."""
    if spec.task == "sr":
        return f"{path.stem}x{spec.scale}.png", "png"
    if spec.task == "denoise":
        return (f"{path.stem}.npy", "npy") if denoise_format == "npy" else (f"{path.stem}.png", "png16")
    return f"{path.stem}.png", "png"


def encode(x: np.ndarray, kind: str) -> bytes:
    """Bytes of an input from ``make_input`` (float32 H×W×C) in the output ``kind``."""
    import numpy as np

    from ..utils.imageio import ImageData, encode_image

    if kind == "npy":
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(x, dtype=np.float32), allow_pickle=False)
        return buf.getvalue()
    if kind == "png16":
        px = np.round(np.clip(x, 0, 1) * 65535.0).astype(np.uint16)
    else:
        px = np.round(x * np.float32(255)).astype(np.uint8)  # exact: x holds 8-bit values
    return encode_image(ImageData(px, "PNG"), "PNG")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..utils.imageio import atomic_write_bytes
    from ..protocol.evaluate import list_images
    from ..protocol.task import EvaluationError, make_input, read_clean

    spec = _check_level(args)
    from ..utils.outputs import OutputError, check_output_dir

    try:
        out_dir = check_output_dir(args.out, "--out", inputs=[args.hr_dir])
    except OutputError as exc:
        raise CLIError(str(exc)) from None
    try:
        images, others = list_images(args.hr_dir)
    except EvaluationError as exc:
        raise CLIError(f"--hr-dir {exc}") from None
    warn = lambda msg: tqdm.write(msg, file=sys.stderr)  # noqa: E731
    for other in others:
        warn(f"warning: skipped {other}: not an image file")
    if not images:
        raise CLIError(f"--hr-dir {args.hr_dir}: holds no images")
    if out_dir.resolve() == Path(args.hr_dir).resolve():
        raise CLIError("--out must differ from --hr-dir")
    start = time.monotonic()
    written = skipped = failed = 0
    interactive = not args.quiet and sys.stderr.isatty()
    bar = tqdm(images, unit="img", desc=f"degrade {spec.describe()}", disable=not interactive,
               dynamic_ncols=True, file=sys.stderr)
    for path in bar:
        name, kind = degraded_file(path, spec, args.denoise_format)
        target = out_dir / name
        if target.exists() and not args.overwrite:
            skipped += 1
            if not args.quiet:
                warn(f"skipped: {path}: {target} exists (--overwrite replaces it)")
            continue
        try:
            x, _ = make_input(read_clean(path, spec), spec)
            atomic_write_bytes(target, encode(x, kind), overwrite=args.overwrite)
            written += 1
        except EvaluationError as exc:
            failed += 1
            warn(f"warning: skipped {exc}")
        except ValueError as exc:  # e.g. an image smaller than the scale
            failed += 1
            warn(f"warning: skipped {path}: {exc}")
        except FileExistsError:
            skipped += 1
        except OSError as exc:
            failed += 1
            warn(f"failed: {path}: cannot write {target}: {exc.strerror or exc}")
    bar.close()
    print(f"wrote {written}, skipped {skipped}, failed {failed} ({spec.describe()}) "
          f"in {time.monotonic() - start:.1f} s; outputs in {out_dir}", file=sys.stderr)
    return 1 if failed else 0
