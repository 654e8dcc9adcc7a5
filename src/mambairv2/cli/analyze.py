"""``mambairv2 analyze``: the paper's analyses — complexity (parameters and MACs as the paper
counts them), effective receptive field, attentive state-space map, SGN routes, LAM."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List

from ..defaults import DEFAULT_VARIANT_SCALE
from .errors import CLIError, parse_size
from .model_option import add_model_option, load_model_arg, model_files, resolve_model


def add_parser(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "analyze", help="the paper's analyses: complexity, ERF, attention map, SGN, LAM",
        description="The analyses of the MambaIRv2 paper as commands. Each figure command "
        "writes one PNG with a title, colour bar and legend.")
    asub = p.add_subparsers(dest="analysis", metavar="ANALYSIS")
    _complexity_parser(asub)
    _erf_parser(asub)
    _attention_parser(asub)
    _sgn_parser(asub)
    _lam_parser(asub)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


# -- complexity ---------------------------------------------------------------------------------
CONVENTION = (
    "'paper' is fvcore's count as the authors ran it: matrix products and convolutions as "
    "multiply-accumulates (no bias), LayerNorm 5 per element, the selective scan as 9·L·D·N + L·D "
    "(the formula the authors register for the scan kernel, about twice its real arithmetic) plus "
    "Δ's low-rank projection, each token's prompt as a one-hot matrix product; element-wise work "
    "(activations, softmax, sums, gates, attention bias and mask) is not counted. 'all' counts every "
    "arithmetic operation once: the same products plus biases, every element-wise operation, softmax "
    "(4 per element) and the scan's real recurrence (5N + 4 per channel and token). Sizes are the "
    "input padded to a multiple of the window, as the model computes.")


def _complexity_parser(asub) -> None:
    p = asub.add_parser(
        "complexity", help="parameters and MACs per kind of module, as the paper counts and all",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Parameters and multiply-accumulates of one forward pass, per kind of module, "
        "in two conventions. " + CONVENTION + " The model is run on PyTorch's meta device "
        "(shapes only), so any size is counted in seconds without memory.")
    add_model_option(p, default="light", variants=True)
    p.add_argument("--scale", type=int, default=DEFAULT_VARIANT_SCALE,
                   help="SR scale of a variant (2, 3 or 4; as 'bench' and the bundled model)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--output-size", default="1280x720", metavar="WxH",
                      help="output width x height, as the paper writes it; the input is this "
                           "divided by the scale")
    size.add_argument("--input-size", default=None, metavar="WxH", help="input width x height")
    p.add_argument("--batch", type=int, default=1, help="batch size")
    p.add_argument("--json", dest="json_out", default=None, metavar="OUT", help="also write the result as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.set_defaults(func=run_complexity)


def _check_out(path: str, option: str, args: argparse.Namespace, inputs=(), suffixes=None) -> None:
    from ..utils.outputs import OutputError, check_output

    try:
        check_output(path, option, inputs=[*inputs, *model_files(args)], overwrite=args.overwrite,
                     suffixes=suffixes)
    except OutputError as exc:
        raise CLIError(str(exc)) from None


def run_complexity(args: argparse.Namespace) -> int:
    from ..analysis.complexity import config_complexity, format_table

    if args.json_out:
        _check_out(args.json_out, "--json", args, suffixes=(".json",))
    ref = resolve_model(args, variants=True)
    try:
        config = ref.config(scale=args.scale)
    except ValueError as exc:
        raise CLIError(f"--model {args.model}: {exc}") from None
    scale = config.upscale
    if args.input_size:
        size = parse_size(args.input_size, "--input-size")
    else:
        oh, ow = parse_size(args.output_size, "--output-size")
        if oh % scale or ow % scale:
            raise CLIError(f"--output-size {ow}x{oh} is not a multiple of the scale {scale}")
        size = (oh // scale, ow // scale)
    if args.batch < 1:
        raise CLIError("--batch must be positive")
    c = config_complexity(config, size, batch=args.batch)
    (h, w), (ph, pw), (oh, ow) = c.input_size, c.padded_size, c.output_size
    print(f"{ref.label} x{scale}: input {w}x{h} (padded {pw}x{ph}) -> output {ow}x{oh}, batch {args.batch}")
    print(format_table(c))
    print(f"\nparams {c.params:,}   MACs as the paper counts {c.macs_paper / 1e9:.2f} G   "
          f"all {c.macs_all / 1e9:.2f} G")
    if args.json_out:
        from ..utils.atomic import atomic_path

        data = dict(variant=args.model, scale=scale, batch=args.batch, convention=CONVENTION, **c.to_dict())
        with atomic_path(args.json_out, overwrite=args.overwrite) as tmp:
            Path(tmp).write_text(json.dumps(data, indent=2))
    return 0


# -- figure commands ------------------------------------------------------------------------------
def _figure_parser(asub, name: str, func, help: str, description: str) -> argparse.ArgumentParser:
    """A figure sub-command with the options every figure takes (weights, images, crop, output
    ``NAME.png``, threads)."""
    p = asub.add_parser(name, help=help, description=description,
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_option(p)
    p.add_argument("--image", action="append", required=True, metavar="PATH",
                   help="input image (low-quality: the model's input)")
    p.add_argument("--crop", type=int, default=128,
                   help="centre crop of the input to this many pixels per side (0: whole image)")
    p.add_argument("-o", "--output", default=f"{name}.png", help="PNG to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.set_defaults(func=func)
    return p


def _erf_parser(asub) -> None:
    _figure_parser(
        asub, "erf", run_erf, help="effective receptive field (Fig. A.3)",
        description="Gradient of the centre output pixel (summed over colours) with respect to "
        "every input pixel, magnitudes summed over colours and over all given images (same crop), "
        "shown on a log scale relative to the largest value.")


def _attention_parser(asub) -> None:
    p = _figure_parser(
        asub, "attention", run_attention, help="attentive state-space map of a query pixel (Fig. 5)",
        description="Cosine similarity between the prompt that ASE gives the query pixel and the "
        "scan's C of every pixel, for every ASSM layer and averaged, overlaid on the image.")
    p.add_argument("--pixel", required=True, metavar="Y,X", help="query pixel in the (cropped) input")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="similarities below this are not overlaid (the paper filters low values)")


def _sgn_parser(asub) -> None:
    p = _figure_parser(
        asub, "sgn", run_sgn,
        help="semantic-guided neighbouring: routes per layer, features before/after (Fig. A.1)",
        description="The prompt (route) index of every token in every ASSM layer as a colour map, "
        "and for one layer the features (3 principal components as RGB) in raster order and in "
        "the SGN-unfolded scan order, laid out row by row.")
    p.add_argument("--layer", type=int, default=None, help="layer (0-based, in forward order) for the before/after panel (default: the one using most routes)")


def _lam_parser(asub) -> None:
    p = _figure_parser(
        asub, "lam", run_lam, help="local attribution map and diffusion index (Fig. A.2)",
        description="LAM (Gu & Dong, CVPR 2021): path-integrated gradients of the gradient "
        "magnitude inside a box of the output along a progressive Gaussian-blur path from a "
        "blurred input to the input; the diffusion index is 1 - Gini of the attribution "
        "(x100 on the LAM paper's scale).")
    p.add_argument("--box", required=True, metavar="Y,X,H,W", help="box in output pixels (top, left, height, width)")
    p.add_argument("--steps", type=int, default=10,
                   help="points on the blur path (LAM uses 50; each costs a forward and backward pass)")
    p.add_argument("--sigma", type=float, default=1.2, help="blur of the path's start (LAM: 1.2)")
    p.add_argument("--kernel", type=int, default=9, help="blur kernel size (LAM: 9)")


def _ints(text: str, n: int, flag: str) -> List[int]:
    try:
        vals = [int(v) for v in text.split(",")]
    except ValueError:
        vals = []
    if len(vals) != n:
        raise CLIError(f"{flag} needs {n} comma-separated integers, got {text!r}")
    return vals


def _load(args):
    """(model, [image tensors 1×C×H×W]) for a figure command."""
    import torch

    from ..analysis.inputs import load_images
    from ..models import set_routing

    if args.threads:
        torch.set_num_threads(args.threads)
    _, model = load_model_arg(args)  # unknown names and unloadable files: one line naming the option
    set_routing(model, "argmax")
    images = load_images(args.image, model.config.in_chans, args.crop)  # unreadable: one-line error
    return model, images


def _save(img, path: str) -> None:
    from ..analysis.plotting import save_png

    save_png(img, path)
    print(f"wrote {path}", file=sys.stderr)


def run_erf(args: argparse.Namespace) -> int:
    _check_out(args.output, "-o", args, inputs=args.image, suffixes=(".png",))
    from ..analysis.erf import effective_receptive_field, erf_figure

    from ..analysis.inputs import centre_crop

    model, images = _load(args)
    side = min(min(x.shape[-2:]) for x in images)
    if len({tuple(x.shape[-2:]) for x in images}) > 1:  # aggregate over a common centre crop
        images = [centre_crop(x, side) for x in images]
    erf = effective_receptive_field(model, images, progress=True)
    _save(erf_figure(erf, images, args.model), args.output)
    return 0


def run_attention(args: argparse.Namespace) -> int:
    _check_out(args.output, "-o", args, inputs=args.image, suffixes=(".png",))
    from ..analysis.attentive_map import attentive_maps, attention_figure

    model, images = _load(args)
    y, x = _ints(args.pixel, 2, "--pixel")
    h, w = images[0].shape[-2:]
    if not (0 <= y < h and 0 <= x < w):
        raise CLIError(f"--pixel {y},{x} is outside the {h}x{w} input")
    maps = attentive_maps(model, images[0], (y, x))
    _save(attention_figure(maps, images[0], (y, x), args.threshold), args.output)
    return 0


def run_sgn(args: argparse.Namespace) -> int:
    _check_out(args.output, "-o", args, inputs=args.image, suffixes=(".png",))
    from ..analysis.sgn_map import busiest_layer, sgn_figure, sgn_routes

    model, images = _load(args)
    routes = sgn_routes(model, images[0])
    layer = busiest_layer(routes) if args.layer is None else args.layer
    if not 0 <= layer < len(routes):
        raise CLIError(f"--layer must be in 0..{len(routes) - 1}")
    _save(sgn_figure(routes, images[0], layer), args.output)
    return 0


def run_lam(args: argparse.Namespace) -> int:
    _check_out(args.output, "-o", args, inputs=args.image, suffixes=(".png",))
    from ..analysis.lam import lam, lam_figure

    model, images = _load(args)
    box = _ints(args.box, 4, "--box")
    s = model.config.upscale
    h, w = images[0].shape[-2] * s, images[0].shape[-1] * s
    if box[2] < 2 or box[3] < 2 or box[0] < 0 or box[1] < 0 or box[0] + box[2] > h or box[1] + box[3] > w:
        raise CLIError(f"--box {args.box} does not fit the {h}x{w} output (needs height, width >= 2)")
    if args.steps < 2 or args.sigma <= 0 or args.kernel < 1 or args.kernel % 2 == 0:
        raise CLIError("--steps >= 2, --sigma > 0 and an odd --kernel are needed")
    result = lam(model, images[0], tuple(box), steps=args.steps, sigma=args.sigma,
                 kernel_size=args.kernel, progress=True)
    _save(lam_figure(result, images[0], tuple(box), s), args.output)
    print(f"diffusion index {result.diffusion_index:.4f} ({100 * result.diffusion_index:.2f} on the LAM scale)",
          file=sys.stderr)
    return 0

