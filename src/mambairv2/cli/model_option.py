"""The one model option every command that takes a model shares: ``--model NAME`` (aliases
``--weights`` and ``--variant``), resolved by :func:`mambairv2.models.resolve` (whose rule
tells a catalogue name from a file in the current folder)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, List, Optional, Tuple

from ..utils.text import printable
from .errors import CLIError

KINDS_HELP = ("a checkpoint file (.pth/.safetensors; ./NAME for a file whose name is also a model "
              "name), a bundled model (default), a downloaded authors' checkpoint name")


class _Given(argparse.Action):
    """Stores ``--model NAME`` and records that the user gave it (the default is no one's choice)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        namespace.model_given = True


def add_model_option(p: argparse.ArgumentParser, default: Optional[str] = "default",
                     variants: bool = False, extra: str = "") -> None:
    """Adds ``--model`` (with ``--weights``/``--variant`` as aliases) to ``p``."""
    kinds = KINDS_HELP + (", or a variant name for random weights (light, base, mambair-light, …)"
                          if variants else "")
    default_text = f" (default: {default})" if default else ""
    p.add_argument("--model", "--weights", "--variant", dest="model", default=default, metavar="NAME",
                   action=_Given, help=f"{kinds}{default_text}{extra}; 'mambairv2 info --models' lists them")
    p.set_defaults(model_given=False)


def model_files(args: argparse.Namespace) -> List[Path]:
    """The file ``--model`` names, when it names one: an input of the command, so never one of
    its outputs (the output policy's ``inputs``)."""
    model = getattr(args, "model", None)
    return [Path(model)] if model and os.path.lexists(model) else []


def resolve_model(args: argparse.Namespace, variants: bool = False):
    """The :class:`~mambairv2.models.catalog.ModelRef` of ``args.model``, resolved once per
    command: the first call prints the catalogue's note (stderr, one line) when a name the user
    typed is also a file or folder in the current folder."""
    from ..models import resolve
    from ..models.checkpoint import CheckpointError

    if not args.model:
        raise CLIError("no model given: pass --model NAME ('mambairv2 info --models' lists them)")
    done = getattr(args, "model_ref", None)
    if done is not None and done[:2] == (args.model, variants):
        return done[2]
    try:
        ref = resolve(args.model, variants=variants)
    except CheckpointError as exc:
        raise CLIError(f"{_named(args)} {exc}") from None
    if ref.note and getattr(args, "model_given", True):
        print(printable(f"note: {ref.note}"), file=sys.stderr)
    args.model_ref = (args.model, variants, ref)
    return ref


def load_model_arg(args: argparse.Namespace, device: Any = "cpu", dtype: Any = None,
                   variants: bool = False, scale: int = 4) -> Tuple[Any, Any]:
    """``(ref, model)`` for ``args.model``: loaded strictly (or built, for a variant), eval mode."""
    from ..models.checkpoint import CheckpointError

    ref = resolve_model(args, variants)
    try:
        return ref, ref.load(device=device, dtype=dtype, scale=scale)
    except CheckpointError:
        raise
    except ValueError as exc:  # a variant at a scale it does not have
        raise CLIError(f"{_named(args)} {args.model}: {exc}") from None
    except (OSError, RuntimeError) as exc:
        raise CLIError(f"{ref.label}: cannot load the model ({' '.join(str(exc).split())[:200]})") from None


def add_model_argument(p: argparse.ArgumentParser, variants: bool = False) -> None:
    """A positional ``MODEL`` that ``--model NAME`` (``--weights``, ``--variant``) may give instead."""
    kinds = KINDS_HELP + (", or a variant name (random weights)" if variants else "")
    p.add_argument("model_positional", nargs="?", metavar="MODEL", help=kinds)
    p.add_argument("--model", "--weights", "--variant", dest="model", default=None, metavar="NAME",
                   help="the same as MODEL; 'mambairv2 info --models' lists the names")


def model_from_args(args: argparse.Namespace) -> None:
    """Folds the positional ``MODEL`` into ``args.model`` (one of the two, not both)."""
    pos = getattr(args, "model_positional", None)
    if pos and args.model and pos != args.model:
        raise CLIError(f"two models given ({pos} and --model {args.model}); give one")
    if pos and not args.model:
        args.model_named = "MODEL"
    args.model = args.model or pos


def _named(args: argparse.Namespace) -> str:
    """How the user gave the model: ``MODEL`` (positional) or ``--model``."""
    return getattr(args, "model_named", "--model")
