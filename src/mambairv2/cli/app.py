"""``mambairv2 app``: a local web page to restore images and compare before/after (Gradio)."""
from __future__ import annotations

import argparse
import atexit
import importlib.util
import ipaddress
import math
import os
import signal
import sys
from pathlib import Path

from ..utils.folders import folder_problem
from .errors import CLIError

EPILOG = """examples:
  mambairv2 app                                  # http://127.0.0.1:7860, bundled model
  mambairv2 app --weights-dir ~/models --port 8000

Needs the optional extra: pip install "mambairv2[app]". The page binds to 127.0.0.1 (this
computer only) unless --host says otherwise; it never shows or serves server paths. The URL is
printed and answers at once (a "starting" page); the app replaces it by itself once Gradio and
PyTorch have loaded, which takes several seconds, and a "ready" line is printed then."""


NEEDS_GRADIO = 'the app needs Gradio: pip install "mambairv2[app]" (or pip install gradio)'


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):  # nan passes "<= 0" and failed later
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ..defaults import APP_MAX_PIXELS as DEFAULT_MAX_PIXELS
    from ..defaults import APP_MAX_UPLOAD_MB as DEFAULT_MAX_UPLOAD_MB

    p = subparsers.add_parser(
        "app", help="a local web page: restore images, compare before/after, download",
        description="Start a web page (Gradio) to restore images with MambaIRv2 on this machine: pick "
                    "a model, upload images, compare before/after and download the PNGs (the same "
                    "bytes as 'mambairv2 restore').",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: %(default)s, this computer only; 0.0.0.0 "
                        "opens the page to the network)")
    p.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    p.add_argument("--weights-dir", metavar="DIR", type=Path,
                   help="folder whose .pth/.safetensors checkpoints the page offers (besides the bundled ones)")
    p.add_argument("--max-upload-mb", type=_positive(float), default=DEFAULT_MAX_UPLOAD_MB, metavar="MB",
                   help="largest image file accepted (default: %(default)s)")
    p.add_argument("--max-pixels", type=_positive(int), default=DEFAULT_MAX_PIXELS, metavar="N",
                   help="largest input image in pixels (default: %(default)s)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port must be in 0..65535, got {args.port}")
    if args.weights_dir is not None and folder_problem(args.weights_dir):
        raise CLIError(f"--weights-dir {args.weights_dir}: {folder_problem(args.weights_dir)}")
    try:
        public = not ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        public = args.host not in ("localhost",)
    if importlib.util.find_spec("gradio") is None:
        raise CLIError(NEEDS_GRADIO)
    if public:
        print(f"warning: --host {args.host} makes the page reachable from other machines; it has no "
              "login", file=sys.stderr)
    from ..app.server import launch
    from ..app.settings import Settings

    settings = Settings(host=args.host, port=args.port, weights_dir=args.weights_dir,
                        max_upload_mb=args.max_upload_mb, max_pixels=args.max_pixels)
    try:
        launch(settings, block=True)
    except OSError as exc:
        raise CLIError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    except ImportError as exc:  # a Gradio install that is broken or too old
        raise CLIError(f"{NEEDS_GRADIO} ({exc})") from None
    _exit_now()


def _exit_now() -> None:
    """Ends the process with status 0 once the app has stopped, after the exit handlers (which
    remove the work folder) have run with SIGTERM ignored. Not Python's normal exit: a SIGTERM
    that landed while PyTorch's start-up was running Python code from C++ leaves the interpreter
    marked as interrupted, and its normal exit would then kill the process with SIGINT (-2)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)
