"""``mambairv2 ablate TABLE``: the paper's ablation tables (1, 2, A.2, 8) and the code-vs-paper
deviations, as parameters/MACs beside the paper's (``--dry-run``) or as trained and evaluated
rows (mean ± std over seeds, differences from the reference row with their uncertainty).

Many GPUs: ``torchrun --nproc_per_node 8 -m mambairv2 ablate table1 --config light_x2 ...``
(every rank trains each row together; rank 0 evaluates and writes the report).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List

from ..defaults import MAX_SEEDS
from .errors import CLIError


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ..train.ablation import TABLE_NAMES

    p = subparsers.add_parser(
        "ablate", help="run (or count) one of the paper's ablation tables",
        description="Train every row of an ablation table with the same budget, data, seeds and schedule "
                    "(light x2; the training config's data), evaluate each on benchmark folders with the "
                    "paper's protocol, and report mean ± std over seeds beside the paper's numbers and the "
                    "differences between rows with their standard error. Tables: table1 (MHSA, + ASE, "
                    "+ SGN), table2 (prompt into B, Δ, y or C), tableA2 (prompt pool T × inner rank r), "
                    "table8 (MambaIR with 1/2/4 scan directions vs MambaIRv2-light), deviations (shared "
                    "prompt basis, prompts in SGN order, Gumbel routing at test time). Finished rows are "
                    "kept in the output folder: running again resumes, and tables sharing a row reuse it.")
    p.add_argument("table", choices=TABLE_NAMES, metavar="TABLE", help=f"one of {', '.join(TABLE_NAMES)}")
    p.add_argument("--dry-run", action="store_true",
                   help="print each row's parameters and MACs (the paper's count, 1280×720 output) beside "
                        "the paper's, and exit")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON")
    p.add_argument("--markdown", metavar="FILE", help="write the report as a markdown table")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json or --markdown file")
    p.add_argument("--config", default="quickstart_light_x2_cpu", metavar="CONFIG",
                   help="training config every row shares (YAML file or packaged name; default "
                        "quickstart_light_x2_cpu: T91 + BSD200, validated on Set5). The paper's budget: "
                        "light_x2 with --set data.train_root=… --set val.root=…")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training config value (as `mambairv2 train --set`); repeatable")
    p.add_argument("--steps", type=int, metavar="N",
                   help="training steps per row (default: the config's train.iters); milestones and warm-up scale with it")
    p.add_argument("--seeds", default="3", metavar="N|A,B,…",
                   help="seeds: a count (0..N-1) or a comma-separated list (default 3)")
    p.add_argument("--sets", nargs="+", default=[], metavar="SET",
                   help="benchmark folders of HR images, or names beside the config's val.root (e.g. Set5 "
                        "Set14 B100); default: the config's val.root")
    p.add_argument("--protocol", choices=("whole", "official"), default="whole",
                   help="whole images (default) or the authors' ~200-px crops")
    p.add_argument("--rows", nargs="+", metavar="ROW", help="only these rows (the reference row is always run)")
    p.add_argument("--output-dir", default="runs/ablation", metavar="DIR",
                   help="where trained rows are kept (default runs/ablation; shared by all tables)")
    p.set_defaults(func=run)
    return p


def _seeds(text: str) -> List[int]:
    from ..train.ablation import seeds_problem

    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            n = int(text)
            if n < 1:
                raise CLIError("--seeds: at least one seed")
            if n > MAX_SEEDS:  # before the list is made: a count of 1e9 would fill the memory
                raise CLIError(f"--seeds: at most {MAX_SEEDS} seeds per row, got {n}")
            seeds = list(range(n))
    except ValueError:
        raise CLIError(f"--seeds: expected a count or a comma-separated list, got {text!r}") from None
    if len(seeds) > MAX_SEEDS:
        raise CLIError(f"--seeds: at most {MAX_SEEDS} seeds per row, got {len(seeds)}")
    problem = seeds_problem(seeds)
    if problem:
        raise CLIError(f"--seeds: {problem}")
    return seeds


def _write(path: str, text: str, overwrite: bool) -> None:
    from ..utils.atomic import atomic_path

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, overwrite=overwrite) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    from ..train import ablation as A
    from ..train.config import ConfigError
    from ..train.data import DataError

    from ..utils.outputs import OutputError, check_output, check_output_dir

    try:  # before any row is trained
        if args.json:
            check_output(args.json, "--json", overwrite=args.overwrite, suffixes=(".json",))
        if args.markdown:
            check_output(args.markdown, "--markdown", overwrite=args.overwrite, suffixes=(".md",))
        if not args.dry_run:  # the folder of trained rows: resumed, so an existing one is expected
            check_output_dir(args.output_dir, "--output-dir", inputs=[s for s in args.sets if Path(s).exists()])
    except OutputError as exc:
        raise CLIError(str(exc)) from None
    if args.dry_run:
        report: Dict[str, Any] = A.dry_run(args.table)
        text = A.dry_run_markdown(report)
    else:
        if args.steps is not None and args.steps < 1:
            raise CLIError("--steps: at least 1")
        budget = A.Budget(config=args.config, overrides=tuple(args.overrides), steps=args.steps,
                          seeds=tuple(_seeds(args.seeds)), sets=tuple(args.sets), protocol=args.protocol)
        try:
            result = A.run_table(args.table, budget, Path(args.output_dir), rows=args.rows)
        except (A.AblationError, ConfigError, DataError) as exc:
            raise CLIError(str(exc)) from None
        if result is None:  # not rank 0
            return 0
        report = result
        text = A.run_markdown(report)
    sys.stdout.write(text)
    if args.json:
        _write(args.json, json.dumps(report, indent=1) + "\n", args.overwrite)
    if args.markdown:
        _write(args.markdown, text, args.overwrite)
    return 0
