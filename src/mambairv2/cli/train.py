"""``mambairv2 train CONFIG.yaml [--set KEY=VALUE ...] [--resume [DIR|auto]]``: train a model.

Multi-GPU / multi-node: start it with torchrun, e.g.
``torchrun --nproc_per_node 8 -m mambairv2 train light_x2``.
"""
from __future__ import annotations

import argparse
import os
import sys

from .errors import CLIError


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ..train.config import describe_fields  # PyYAML only: --help stays light

    p = subparsers.add_parser(
        "train", help="train a model from a YAML config",
        description="Train MambaIRv2 from a YAML config file or a packaged config name (`mambairv2 configs`). Checkpoints (BasicSR "
                    "format, with EMA weights when EMA is on), the training state, log.csv and plot.png go to the "
                    "output folder (default runs/<name>). Under torchrun, every rank runs this "
                    "command; rank 0 writes the files. SIGTERM / Ctrl-C save the state and exit "
                    "with 128 + the signal number; --resume continues exactly.",
        epilog=describe_fields(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", metavar="CONFIG", help="YAML config file, or the name of a packaged config (`mambairv2 configs` lists them)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (dotted key, YAML value), e.g. --set train.lr=1e-3 "
                        "--set data.train_root=/data/DIV2K/HR; repeatable")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="DIR|auto",
                   help="continue a run: 'auto' (the default when the flag has no value) takes the "
                        "newest state in the output folder, or give a run folder or a .state file")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in an output folder that holds another run (its training "
                        "states, weights, log and plot are removed, once every check has passed)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (each key with its doc as a comment) and exit")
    p.add_argument("--dry-run", action="store_true",
                   help="print the resolved recipe (model, global batch and its split into processes × "
                        "accumulation, learning-rate schedule, warm start, validation) and exit")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..models.checkpoint import CheckpointError
    from ..train.config import ConfigError, dump_config, load_config
    from ..train.data import DataError

    try:
        cfg = load_config(args.config, args.overrides)
        if args.print_config:
            sys.stdout.write(dump_config(cfg, docs=True))
            return 0
        if args.dry_run:
            from ..train.plan import describe_plan

            sys.stdout.write(describe_plan(cfg, int(os.environ.get("WORLD_SIZE", "1"))))
            return 0
        from ..train.trainer import train

        summary = train(cfg, resume=args.resume, overwrite=args.overwrite)
    except (ConfigError, DataError, CheckpointError) as exc:
        raise CLIError(str(exc)) from None
    except FloatingPointError as exc:
        raise CLIError(f"training diverged: {exc}", code=1) from None
    except ValueError as exc:  # e.g. an unavailable device
        raise CLIError(str(exc)) from None
    if summary["val_psnr"] is not None:
        print(f"last validation PSNR: {summary['val_psnr']:.3f} dB", file=sys.stderr)
    if summary["reason"] == "signal":
        # stopped by SIGTERM / SIGINT: the state is saved; the shell convention 128 + signal
        print("stopped by a signal; continue with --resume", file=sys.stderr)
        return 128 + int(summary["signal"] or 15)
    return 0
