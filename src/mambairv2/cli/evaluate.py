"""``mambairv2 evaluate``: PSNR/SSIM of a model or a baseline on benchmark folders, with the
protocol of the paper's tables (see :mod:`mambairv2.protocol.evaluate`)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from ..utils.folders import folder_problem
from ..utils.text import printable
from .errors import CLIError
from .inputs import hr_images
from .model_option import add_model_option, load_model_arg, model_files, resolve_model
from .restore import _nonnegative, _tile_arg

#: Baselines usable with ``--baseline``, and the tasks they apply to.
BASELINES: Dict[str, tuple] = {"bicubic": ("sr",), "identity": ("denoise", "jpeg")}

EPILOG = """protocol (as in the paper's tables):
  sr       HR mod-cropped to S, LR = MATLAB bicubic (8-bit); PSNR/SSIM on Y (BT.601), crop S
  denoise  clean + N(0, N/255) drawn with np.random.seed(0) per image in OpenCV's BGR layout,
           not clipped; PSNR/SSIM on RGB, no crop
  jpeg     OpenCV JPEG at quality Q of the gray image; PSNR/SSIM on gray, no crop
  Outputs (and the identity baseline's input) are clamped to [0, 1] and rounded to 8 bits
  before the metrics, as BasicSR's tensor2img. SSIM: 11x11 Gaussian window, sigma 1.5.

examples:
  mambairv2 evaluate --baseline bicubic --task sr --scale 4 --hr-dir Set5/HR --hr-dir Set14/HR
  mambairv2 evaluate --model MambaIRv2_lightSR_x2.pth --task sr --hr-dir B100/HR --json b100.json
  mambairv2 evaluate --baseline identity --task denoise --sigma 25 --hr-dir CBSD68
  mambairv2 evaluate --model jpeg_q10.pth --task jpeg --quality 10 --hr-dir classic5 --protocol official"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate", help="PSNR/SSIM of a model or baseline on benchmark folders (the paper's protocol)",
        description="Degrade clean images as the paper's benchmarks do, restore them with a model "
                    "or a baseline, and report PSNR/SSIM per image and per dataset.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    add_model_option(src, default=None)
    src.add_argument("--baseline", choices=tuple(BASELINES),
                     help="no model: 'bicubic' (sr) or 'identity' (denoise, jpeg: the degraded input itself)")
    p.add_argument("--task", choices=("sr", "denoise", "jpeg"),
                   help="what is evaluated (default with --model: the model's task; bicubic: sr)")
    p.add_argument("--scale", type=int, metavar="S", help="SR scale (default with --model: the model's)")
    p.add_argument("--sigma", type=float, metavar="N", help="denoise: noise level on the 0..255 scale")
    p.add_argument("--quality", type=int, metavar="Q", help="jpeg: quality 1-100")
    p.add_argument("--color", action="store_true", help="jpeg: colour images stay colour (default: gray)")
    p.add_argument("--hr-dir", action="append", metavar="DIR",
                   help="folder of clean images (e.g. Set5/HR), which the protocol degrades into the "
                        "inputs; repeat for several datasets (required)")
    p.add_argument("--lr-dir", action="append", metavar="DIR",
                   help="pre-made inputs for the --hr-dir at the same position (e.g. from "
                        "'mambairv2 degrade': <name>x<S>.png, <name>.npy, <name>.png)")
    p.add_argument("--name", action="append", metavar="NAME",
                   help="dataset name for the --hr-dir at the same position (default: the folder's "
                        "name, or its parent's when the folder is called HR)")
    p.add_argument("--json", metavar="OUT", help="write the results (per image and mean) as JSON")
    p.add_argument("--save-dir", metavar="DIR", help="write the restored images (8-bit PNG) to DIR/NAME/")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file or saved images")
    p.add_argument("--protocol", choices=("whole", "official"), default="whole",
                   help="'whole': the whole image at once (default); 'official': the released "
                        "test's overlapping ~200-px crops (to reproduce the tables to 0.01 dB)")
    p.add_argument("--tile", type=_tile_arg, default=None, metavar="N|auto",
                   help="whole protocol: restore in blended overlapping tiles of N input pixels to "
                        "bound memory ('auto': from free memory; default: no tiles)")
    p.add_argument("--tile-overlap", type=_nonnegative, default=None, metavar="N",
                   help="overlap of neighbouring tiles in input pixels (default: as 'restore')")
    p.add_argument("--self-ensemble", action="store_true", help="x8 self-ensemble (flips/transposes)")
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda|mps", help="where to run (default: %(default)s)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="model precision; bfloat16 on a CPU: mixed precision with float32 weights, "
                        "refused where the CPU has no native bfloat16 (default: %(default)s)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, only the table")
    p.set_defaults(func=run)
    return p


def _spec(args: argparse.Namespace, model_scale: Optional[int]):
    from ..protocol.task import EvaluationError, TaskSpec

    levels = {"sr": "--scale", "denoise": "--sigma", "jpeg": "--quality"}
    for task, flag in levels.items():
        if task != args.task and getattr(args, flag[2:]) is not None:
            raise CLIError(f"{flag} applies to --task {task}, not {args.task}")
    if args.color and args.task != "jpeg":
        raise CLIError("--color applies to --task jpeg")
    scale = args.scale
    if args.task == "sr" and scale is None:
        if model_scale is None:
            raise CLIError("--task sr needs --scale")
        scale = model_scale
    if args.task == "denoise" and args.sigma is None:
        raise CLIError("--task denoise needs --sigma")
    if args.task == "jpeg" and args.quality is None:
        raise CLIError("--task jpeg needs --quality")
    try:
        return TaskSpec(args.task, scale=scale or 1, sigma=args.sigma, quality=args.quality, color=args.color)
    except EvaluationError as exc:
        raise CLIError(str(exc)) from None


def _load(args: argparse.Namespace):
    from ..models import set_routing
    from ..ops import precision_plan
    from ..utils.devices import resolve_device, resolve_dtype

    try:
        device = resolve_device(args.device)
        plan = precision_plan(device, resolve_dtype(args.dtype))
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    args.autocast_dtype = None if plan.autocast is None else args.dtype
    _, model = load_model_arg(args, device, plan.weights)
    return set_routing(model, "argmax", None)


def _datasets(args: argparse.Namespace) -> List[tuple]:
    """``(hr_dir, lr_dir, name, images)`` per dataset, checked; warns about non-image files."""
    from ..protocol.evaluate import dataset_name

    n = len(args.hr_dir)
    for flag, values in (("--lr-dir", args.lr_dir), ("--name", args.name)):
        if values is not None and len(values) != n:
            raise CLIError(f"give {flag} once per --hr-dir ({n}), got {len(values)}")
    out = []
    for i, hr in enumerate(args.hr_dir):
        images = hr_images(hr)
        lr = args.lr_dir[i] if args.lr_dir else None
        if lr is not None and folder_problem(lr):
            raise CLIError(f"--lr-dir {lr}: {folder_problem(lr)}")
        name = args.name[i] if args.name else dataset_name(hr)
        out.append((Path(hr), lr, name, images))
    names = [d[2] for d in out]
    dup = sorted({x for x in names if names.count(x) > 1})
    if dup:
        raise CLIError(f"several datasets are named {dup[0]!r}; give each --hr-dir a --name")
    return out


def _method(args: argparse.Namespace, label: str, model, spec):
    """The restorer: a baseline, or the model with the protocol / tiles / self-ensemble asked for."""
    from ..protocol import evaluate as ev

    if model is None:
        if args.task not in BASELINES[label]:
            raise CLIError(f"--baseline {label} is a baseline for --task {' / '.join(BASELINES[label])}, "
                           f"not {args.task}")
        if args.self_ensemble or args.protocol != "whole" or args.tile is not None:
            raise CLIError(f"--self-ensemble, --protocol and --tile apply to models, not the {label} baseline")
        return ev.bicubic_restorer(spec.scale) if label == "bicubic" else ev.identity_restorer()
    model_scale = int(model.config.upscale)
    expected = spec.scale if spec.task == "sr" else 1
    if model_scale != expected:
        raise CLIError(f"the model upscales x{model_scale}, but {spec.describe()} needs x{expected}")
    if args.tile is not None and args.protocol != "whole":
        raise CLIError("--tile applies to --protocol whole")
    if isinstance(args.tile, int) and args.tile_overlap is not None and args.tile_overlap >= args.tile:
        raise CLIError(f"--tile-overlap ({args.tile_overlap}) must be smaller than --tile ({args.tile})")
    return ev.model_restorer(model, args.protocol, args.self_ensemble, scale=expected,
                             tile=args.tile, tile_overlap=args.tile_overlap,
                             dtype=getattr(args, "autocast_dtype", None))


def _check_outputs(args: argparse.Namespace, datasets: List[tuple]) -> None:
    """--json and --save-dir follow the output policy (:mod:`mambairv2.utils.outputs`), checked
    before any model is loaded: never onto the ground truth or a pre-made input."""
    from ..utils.outputs import OutputError, check_output, check_output_dir

    inputs = [Path(d) for hr, lr, _, _ in datasets for d in (hr, lr) if d is not None] + model_files(args)
    try:
        if args.json:
            check_output(args.json, "--json", inputs=inputs, overwrite=args.overwrite, suffixes=(".json",))
        if args.save_dir:
            check_output_dir(args.save_dir, "--save-dir", inputs=inputs)
            for _, _, name, images in datasets:
                folder = check_output_dir(Path(args.save_dir) / name, "--save-dir", inputs=inputs)
                for image in images:
                    check_output(folder / f"{Path(image).stem}.png", "--save-dir", inputs=inputs,
                                 overwrite=args.overwrite)
    except OutputError as exc:
        raise CLIError(str(exc)) from None


def _evaluate_all(args: argparse.Namespace, method, spec, datasets: List[tuple]) -> list:
    """Evaluates every dataset, with a progress bar on a terminal; one-line errors."""
    from tqdm import tqdm

    from ..protocol import evaluate as ev

    total = sum(len(d[3]) for d in datasets)
    interactive = not args.quiet and sys.stderr.isatty()
    bar = tqdm(total=total, unit="img", desc=f"evaluate {spec.describe()}", disable=not interactive,
               dynamic_ncols=True, file=sys.stderr)
    results = []
    try:
        for hr, lr, name, images in datasets:
            bar.set_description_str(f"{name} {spec.describe()}")

            def step(r, bar=bar) -> None:
                bar.set_postfix_str(f"{r.name[-24:]} {r.psnr:.2f} dB", refresh=False)
                bar.update(1)

            save = Path(args.save_dir) / name if args.save_dir else None
            try:
                results.append(ev.evaluate_folder(method, spec, hr, lr, name=name, save_dir=save,
                                                  images=images, on_image=step))
            except ev.EvaluationError as exc:
                raise CLIError(str(exc)) from None
            except OSError as exc:
                raise CLIError(f"cannot write {exc.filename or args.save_dir}: {exc.strerror or exc}") from None
    finally:
        bar.close()
    return results


def _report(args: argparse.Namespace, spec, label: str, results: list, seconds: float) -> None:
    """Writes the JSON (atomically) and prints the header line and the table."""
    from ..protocol import evaluate as ev

    data = ev.report(spec, label, results, args.protocol, args.self_ensemble)
    if args.json:
        from ..utils.imageio import atomic_write_bytes

        text = json.dumps(data, indent=2, allow_nan=False) + "\n"
        atomic_write_bytes(args.json, text.encode(), overwrite=args.overwrite)
    metric = data["metric"]
    print(printable(f"{spec.describe()}, model {label}, protocol {args.protocol}"
                    f"{', self-ensemble' if args.self_ensemble else ''}; metrics on "
                    f"{ {'y': 'Y', 'rgb': 'RGB'}.get(metric['channels'], metric['channels'])}, "
                    f"crop {metric['crop_border']}, 8-bit"))
    print(ev.table(results))
    if not args.quiet:
        images = sum(len(r.images) for r in results)
        print(printable(f"evaluated {images} images in {seconds:.1f} s"
                        + (f"; results in {args.json}" if args.json else "")), file=sys.stderr)


def _needs_hr_dir(args: argparse.Namespace) -> None:
    """One line saying which folder evaluation needs, when none was given."""
    if args.hr_dir:
        return
    what = {"sr": "clean high-resolution images (e.g. Set5/HR; the low-resolution inputs are made from them)",
            "denoise": "clean images (e.g. CBSD68; the noisy inputs are made from them)",
            "jpeg": "clean images (e.g. classic5; the JPEG inputs are made from them)"}
    task = args.task or ("sr" if args.baseline == "bicubic" else None)
    raise CLIError(f"evaluate needs --hr-dir DIR: a folder of {what.get(task, 'clean images (the inputs are made from them)')}")


def _task(args: argparse.Namespace, model) -> None:
    """``--task`` from the model (or the bicubic baseline) when not given."""
    if args.task is not None:
        return
    if model is not None:
        args.task = str(model.config.task)
    elif args.baseline == "bicubic":
        args.task = "sr"
    else:
        raise CLIError(f"--baseline {args.baseline} needs --task ({' or '.join(BASELINES[args.baseline])})")


def run(args: argparse.Namespace) -> int:
    model = None
    if args.baseline:
        label = args.baseline
    else:
        if args.model in BASELINES and not Path(args.model).exists():
            raise CLIError(f"{args.model} is a baseline, not a model: --baseline {args.model}")
        ref = resolve_model(args)
        label = ref.label
        if args.task is None:
            try:  # the task from the stored configuration, so that the folder can be named first
                args.task = str(ref.config().task)
            except Exception:  # noqa: BLE001 - loading the model below says what is wrong with it
                pass
    if args.baseline:
        _task(args, None)
    _needs_hr_dir(args)
    datasets = _datasets(args)  # folder errors before loading a model
    _check_outputs(args, datasets)
    if not args.baseline:
        model = _load(args)
        _task(args, model)
    spec = _spec(args, int(model.config.upscale) if model is not None else None)
    method = _method(args, label, model, spec)
    start = time.monotonic()
    results = _evaluate_all(args, method, spec, datasets)
    _report(args, spec, label, results, time.monotonic() - start)
    return 0
