"""Entry point of the ``mambairv2`` command.

Each command lives in its own module exposing ``add_parser(subparsers)`` (which sets
``func`` on its parser) and is listed in ``COMMANDS``.
"""
from __future__ import annotations

import argparse
import os
import sys
import textwrap
from typing import Optional, Sequence

from . import ablate, analyze, app, bench, configs, convert, degrade, download, evaluate, export, info, train
from . import restore as restore_cmd
from ..errors import MambaIRv2Error
from ..utils.text import printable

COMMANDS: tuple = (info, restore_cmd, convert, evaluate, degrade, train, bench, configs, app, analyze,
                   download, export, ablate)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser (its sub-commands' parsers too) whose refusals are one line, like every
    other user mistake: ``error: MESSAGE (see PROG --help)``, exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, printable(f"error: {message} (see {self.prog} --help)") + "\n")


def _leaf_parsers(parser: argparse.ArgumentParser):
    """Every parser that runs a command (sub-commands of sub-commands included)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases share a parser
                yield from _leaf_parsers(sub)
            return
    yield parser


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = OneLineParser(
        prog="mambairv2",
        description="MambaIRv2 image restoration (super-resolution, denoising, JPEG artifact "
        "removal) in pure PyTorch.",
    )
    parser.add_argument("--version", action="version", version=f"mambairv2 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    for leaf in _leaf_parsers(parser):  # so that unknown arguments are named with their command
        leaf.set_defaults(_parser=leaf)
        leaf.description = _wrapped(leaf.description)
    return parser


def _wrapped(text: Optional[str], width: int = 96) -> Optional[str]:
    """``text`` with each line longer than ``width`` wrapped (the commands whose epilog keeps its
    layout print their description as written)."""
    if not text:
        return text
    return "\n".join(textwrap.fill(line, width) if len(line) > width else line for line in text.split("\n"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from ..utils.allocator import tune_allocator

    tune_allocator()
    try:
        return int(args.func(args) or 0)
    except MambaIRv2Error as exc:  # every user mistake or bad input: one line, no traceback
        print(printable(f"error: {exc}"), file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # noqa: BLE001 - last line of defence: never show a traceback
        if os.environ.get("MAMBAIRV2_DEBUG"):
            raise
        print(printable(f"internal error: {type(exc).__name__}: {exc} (set MAMBAIRV2_DEBUG=1 for a traceback)"),
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
