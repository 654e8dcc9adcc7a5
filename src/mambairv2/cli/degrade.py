"""``mambairv2 degrade --task sr|denoise|jpeg|realsr ... --hr-dir DIR --out DIR``: write the
degraded inputs of the benchmark protocol (see :mod:`mambairv2.protocol.degrade`), or the
real-world training degradations (:mod:`mambairv2.protocol.realworld`) for a look at what a
real-world SR model is trained on."""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Sequence, Tuple

if TYPE_CHECKING:  # numpy is imported where used: building the parser must stay light
    import numpy as np

from ..utils.text import printable
from .errors import CLIError
from .inputs import clean_inputs, input_folders

EPILOG = """outputs (written atomically: a temporary file renamed into place):
  sr       <name>x<S>.png  8-bit: MATLAB bicubic of the HR image mod-cropped to S
                           (the naming of the benchmarks' LR_bicubic folders)
  denoise  <name>.npy      float32 H×W×3, RGB, [0, 1] scale plus noise, NOT clipped: exactly the
                           released test's input (seed 0 per image); np.load() reads it
           <name>.png      with --denoise-format png16: 16-bit RGB PNG of the input clipped to
                           [0, 1] (viewable, but the values beyond [0, 1] are lost)
  jpeg     <name>.png      the decoded JPEG (OpenCV encoder at quality Q), lossless; gray unless
                           --color
  realsr   <name>x<S>.png  8-bit: Real-ESRGAN's second-order degradation of the (USM-sharpened)
                           HR image, drawn from --seed and the file name (the same seed gives
                           the same bytes on CPU); --set realsr.KEY=VALUE changes a training
                           config's degradation option (`mambairv2 train --help` lists them)

'mambairv2 evaluate --lr-dir OUT' reads these files back. Existing outputs are skipped unless
--overwrite. Files that are not images are skipped with a warning.

examples:
  mambairv2 degrade --task sr --scale 4 --hr-dir Set5/HR --out Set5/LR_x4
  mambairv2 degrade --task denoise --sigma 25 --hr-dir CBSD68 --out CBSD68_s25
  mambairv2 degrade --task jpeg --quality 10 --hr-dir classic5 --out classic5_q10
  mambairv2 degrade --task realsr --scale 4 --seed 0 --hr-dir photos --out photos_realsr_x4"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "degrade", help="make the degraded inputs of the benchmark protocol (SR, noise, JPEG)",
        description="Write the inputs of the paper's benchmark tables for a folder of clean "
                    "images: bicubic LR (MATLAB imresize), colour Gaussian noise as the released "
                    "test adds it, or OpenCV JPEG.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=("sr", "denoise", "jpeg", "realsr"), help="the degradation")
    p.add_argument("--scale", type=int, metavar="S", help="SR scale factor (2, 3, 4, …)")
    p.add_argument("--sigma", type=float, metavar="N", help="noise level on the 0..255 scale (15, 25, 50)")
    p.add_argument("--quality", type=int, metavar="Q", help="JPEG quality 1-100 (10, 30, 40)")
    p.add_argument("--hr-dir", required=True, action="append", metavar="PATH",
                   help="clean images: a folder, image files or a glob pattern in quotes, as 'restore' "
                        "takes them (repeat for several)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the degraded inputs")
    p.add_argument("--color", action="store_true",
                   help="jpeg: keep colour images in colour (default: gray, as in the tables)")
    p.add_argument("--denoise-format", choices=("npy", "png16"), default="npy",
                   help="denoise: exact unclipped float32 .npy, or clipped 16-bit PNG (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="realsr: seed of the random degradations "
                   "(default: %(default)s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="realsr.KEY=VALUE",
                   help="realsr: a degradation option as in a training config, e.g. realsr.jpeg_range=[60,95]; "
                        "repeatable")
    p.add_argument("--device", default="cpu", help="realsr: cpu (bit-exact per seed) or cuda (default: %(default)s)")
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
    if args.scale is not None and args.scale < 1:
        raise CLIError(f"--scale must be a positive integer (2, 3, 4, …), got {args.scale}")
    try:
        return TaskSpec(args.task, scale=args.scale if args.scale is not None else 1, sigma=args.sigma, quality=args.quality,
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


def check_one_output_each(images: Sequence[Path], name_of: Callable[[Path], str]) -> None:
    """CLIError when two images would be written as one file (``a.png`` and ``a.jpg`` both as
    ``ax4.png``): the names drop the suffix, as ``evaluate --lr-dir`` and training expect them."""
    owner: Dict[str, Path] = {}
    for path in images:
        name = name_of(path)
        if name in owner:
            raise CLIError(printable(f"--hr-dir: {owner[name].name} and {path.name} would both be "
                                     f"written as {name} (the output name drops the suffix); rename one"))
        owner[name] = path


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


def realsr_options(overrides) -> dict:
    """The ``realsr`` section of a training config with ``--set realsr.KEY=VALUE`` applied."""
    from ..train.config import ConfigError, build_config, parse_override

    for text in overrides:
        key, _ = parse_override(text)
        if not key.startswith("realsr."):
            raise CLIError(f"--set {key}: only realsr.* options apply to degrade")
    try:
        return dict(build_config({}, overrides)["realsr"])
    except ConfigError as exc:
        raise CLIError(str(exc)) from None


def image_seed(seed: int, name: str) -> int:
    """The seed of one image: ``--seed`` and the file name (not its place in the folder)."""
    import zlib

    return (int(seed) & 0xFFFFFFFF) << 32 | zlib.crc32(name.encode("utf-8"))


def degrade_realsr(rgb: "np.ndarray", scale: int, options: dict, seed: int, device: str = "cpu") -> "np.ndarray":
    """The real-world LR (float32 H/S×W/S×3 on 8-bit levels) of an 8-bit RGB image."""
    import numpy as np
    import torch

    from ..protocol.realworld import degrade_batch

    h, w = rgb.shape[:2]
    rgb = rgb[: h - h % scale, : w - w % scale]
    if min(rgb.shape[:2]) < scale:
        raise ValueError(f"smaller than the scale {scale}")
    hr = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float().div(255).to(device)
    lq, _ = degrade_batch(hr, [seed], scale, options)
    return lq[0].permute(1, 2, 0).cpu().numpy().astype(np.float32)


def _run_realsr(args: argparse.Namespace) -> int:
    from ..utils.imageio import atomic_write_bytes
    from ..protocol.task import EvaluationError, TaskSpec, read_clean

    if not args.scale or args.scale < 1:
        raise CLIError("--task realsr needs --scale (e.g. 4)")
    if args.sigma is not None or args.quality is not None or args.color:
        raise CLIError("--sigma, --quality and --color do not apply to --task realsr")
    options = realsr_options(args.overrides)
    images = clean_inputs(args.hr_dir)
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise CLIError(f"--out {out_dir}: exists and is not a folder")
    if any(out_dir.resolve() == folder.resolve() for folder in input_folders(images)):
        raise CLIError("--out must differ from the folders of --hr-dir")
    spec = TaskSpec("sr", scale=args.scale)
    check_one_output_each(images, lambda p: f"{p.stem}x{args.scale}.png")
    start = time.monotonic()
    written = skipped = failed = 0
    for path in images:
        target = out_dir / f"{path.stem}x{args.scale}.png"
        if target.exists() and not args.overwrite:
            skipped += 1
            continue
        try:
            x = degrade_realsr(read_clean(path, spec), args.scale, options, image_seed(args.seed, path.name),
                               args.device)
            atomic_write_bytes(target, encode(x, "png"), overwrite=args.overwrite)
            written += 1
        except (EvaluationError, ValueError) as exc:
            failed += 1
            print(printable(f"warning: skipped {path}: {exc}"), file=sys.stderr)
        except OSError as exc:
            failed += 1
            print(printable(f"failed: {path}: cannot write {target}: {exc.strerror or exc}"), file=sys.stderr)
    print(printable(f"wrote {written}, skipped {skipped}, failed {failed} (real-world x{args.scale}, seed "
                    f"{args.seed}) in {time.monotonic() - start:.1f} s; outputs in {out_dir}"), file=sys.stderr)
    return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.task == "realsr":
        return _run_realsr(args)
    if args.overrides or args.seed:
        raise CLIError("--seed and --set apply to --task realsr")

    from ..utils.imageio import atomic_write_bytes
    from ..protocol.task import EvaluationError, make_input, read_clean

    spec = _check_level(args)
    from ..utils.outputs import OutputError, check_output_dir

    warn = lambda msg: tqdm.write(printable(msg), file=sys.stderr)  # noqa: E731
    images = clean_inputs(args.hr_dir, warn=warn)
    try:
        out_dir = check_output_dir(args.out, "--out", inputs=input_folders(images))
    except OutputError as exc:
        raise CLIError(str(exc)) from None
    if any(out_dir.resolve() == folder.resolve() for folder in input_folders(images)):
        raise CLIError("--out must differ from the folders of --hr-dir")
    check_one_output_each(images, lambda p: degraded_file(p, spec, args.denoise_format)[0])
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
    print(printable(f"wrote {written}, skipped {skipped}, failed {failed} ({spec.describe()}) "
                    f"in {time.monotonic() - start:.1f} s; outputs in {out_dir}"), file=sys.stderr)
    return 1 if failed else 0
