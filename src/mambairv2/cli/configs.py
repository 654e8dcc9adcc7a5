"""``mambairv2 configs``: the training configs shipped in the package, by name."""
from __future__ import annotations

import argparse


def add_parser(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "configs", help="list the packaged training configs",
        description="Lists the training configs shipped in the package. Each name works where a "
        "config path does, e.g. `mambairv2 train light_x2 --set data.train_root=/data/DIV2K`. "
        "--show NAME prints one config's YAML (copy it to edit your own).")
    p.add_argument("--show", metavar="NAME", help="print the YAML of one packaged config")
    p.set_defaults(func=run)


def _summary(path) -> str:
    """The first sentence of the config's opening comment (what it is)."""
    words: list = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.lstrip("#").strip()
        if not line.startswith("#") or not text or line.startswith("#  "):  # end, blank, or an example
            if words:
                break
            continue
        words.append(text)
        joined = " ".join(words)
        if ". " in joined or joined.endswith("."):
            break
    joined = " ".join(words)
    return joined.split(". ")[0].rstrip(".") + "." if joined else ""


def run(args: argparse.Namespace) -> int:
    from ..train.config import packaged_configs, read_config_text, resolve_config

    if args.show:
        print(read_config_text(resolve_config(args.show)), end="")
        return 0
    configs = packaged_configs()
    width = max(len(n) for n in configs)
    for name, path in configs.items():
        print(f"{name:<{width}}  {_summary(path)}")
    return 0
