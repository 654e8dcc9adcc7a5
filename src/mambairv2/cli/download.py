"""``mambairv2 download NAME`` / ``--list``: the authors' released MambaIRv2 checkpoints from
their Hugging Face repository (``cguoh/MambaIR``, folder ``MambaIRv2_ckpt/``), verified and
recorded (see :mod:`mambairv2.models.hub`)."""
from __future__ import annotations

import argparse
import sys

from ..utils.text import brief
from .errors import CLIError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "download", help="download the authors' MambaIRv2 checkpoints by name (Hugging Face)",
        description="Download an authors' MambaIRv2 checkpoint by name from the Hugging Face "
                    "repository cguoh/MambaIR (folder MambaIRv2_ckpt/) into the huggingface_hub "
                    "cache, then verify it (SHA-256 against the hub, loaded by load_model) and "
                    "record it. Afterwards '--weights NAME' works wherever a checkpoint file "
                    "does, without network access. Honours HF_ENDPOINT, HF_HUB_OFFLINE, HF_HOME "
                    "and HF_TOKEN. Needs: pip install 'mambairv2[hub]'.")
    p.add_argument("names", metavar="NAME", nargs="*",
                   help="checkpoint name(s), e.g. mambairv2_lightSR_x4 (see --list)")
    p.add_argument("--list", action="store_true",
                   help="list the checkpoints in the repository now (offline: the verified downloads)")
    p.add_argument("--revision", default=None, help="branch, tag or commit of the repository (default: main)")
    p.add_argument("--repo", default=None, help="another repository with the same layout (default: cguoh/MambaIR)")
    p.add_argument("--force", action="store_true", help="download again even if cached")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..models import hub

    repo = args.repo or hub.REPO_ID
    if not args.list and not args.names:
        raise CLIError("give a checkpoint NAME or --list")
    if args.list:
        _list(hub, repo, args.revision)
    for name in args.names:
        try:
            item = hub.download(name, repo_id=repo, revision=args.revision, force=args.force)
        except hub.HubError as exc:
            raise CLIError(str(exc), code=1) from None
        print(item.summary())
        print(f"  {item.path}")
    return 0


def _list(hub, repo: str, revision) -> None:
    records = hub.read_records()
    try:
        names = hub.list_remote(repo, revision)
    except hub.HubError as exc:
        if not records:
            raise CLIError(f"{exc}; no verified downloads either", code=1) from None
        print(f"({exc}; showing the verified downloads)", file=sys.stderr)
        for name, rec in sorted(records.items()):
            print(f"{brief(name)}\t{brief(rec.get('variant'), 20)} x{brief(rec.get('scale'), 4)} "
                  f"{brief(rec.get('task'), 10)}\t(downloaded)")  # from downloads.json: escaped, cut
        return
    for name, repo_file in names.items():
        mark = "\t(downloaded)" if name in records else ""
        print(f"{name}\t{repo_file}{mark}")
    if not names:
        print(f"(no checkpoints under {hub.FOLDER}/ in {repo})", file=sys.stderr)
