"""The paper's ablations as runnable tables (``mambairv2 ablate``).

Each table is plain data: row name → the variant, the model-config overrides (the ablation
switches of the families' config classes, ``MambaIRv2Config`` and ``MambaIRConfig``), the
eval-time routing, and the paper's numbers.
A run trains every row with the same budget, data, seeds and schedule (one training config
with ``train.iters`` set by ``--steps``), evaluates each on benchmark folders with the protocol
(:mod:`mambairv2.protocol.evaluate`), and reports mean ± std over seeds and each row's paired
difference from the table's reference row (the released configuration) with its standard error.

Work is cached per (variant, overrides, seed, training config) in the output folder, so a
stopped run resumes (a row's finished seeds are skipped, an unfinished one continues from its
last training state) and tables that share a row (the released light x2 is in all of them)
train it once.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import MambaIRv2Error

#: The paper counts MACs for a 1280×720 output (``analyze complexity``'s default).
PAPER_OUTPUT = (720, 1280)
#: The released light x2 (every table's reference).
RELEASED: Dict[str, Any] = {"variant": "light", "overrides": {}}
#: Table 8's "MambaIR-n": MambaIR light x2 in the layout of csguoh/MambaIR 06dc6cd (CAB with a
#: 3×3 conv to embed_dim/6, d_state 16, mlp_ratio 1.5) with n scan directions.
_MAMBAIR_06DC6CD = {"d_state": 16, "mlp_ratio": 1.5, "cab": "light-06dc6cd"}


def _row(variant: str, overrides: Mapping[str, Any], paper: Mapping[str, Any], routing: str = "argmax",
         note: str = "") -> Dict[str, Any]:
    return {"variant": variant, "overrides": dict(overrides), "routing": routing, "paper": dict(paper),
            "note": note}


def _p(*pairs: float) -> Dict[str, Tuple[float, float]]:
    """Paper metrics in the order of the table's ``paper_sets``."""
    return {"_pairs": [(pairs[i], pairs[i + 1]) for i in range(0, len(pairs), 2)]}


#: table name → title, the sets the paper reports, the reference row and the rows (x2 light SR).
TABLES: Dict[str, Dict[str, Any]] = {
    "table1": {
        "title": "Table 1: effectiveness of the components (window MHSA, + ASE, + SGN)",
        "paper_sets": ["Urban100", "Manga109"],
        "reference": "MHSA + ASE + SGN",
        "rows": {
            "MHSA": _row("light", {"ase": False, "sgn": False}, _p(32.89, 0.9343, 39.11, 0.9772),
                         note="plain one-direction scan in raster order, no prompts, no routing"),
            "MHSA + ASE": _row("light", {"sgn": False}, _p(32.94, 0.9351, 39.20, 0.9780),
                               note="prompts, scan in raster order"),
            "MHSA + ASE + SGN": _row("light", {}, _p(32.97, 0.9355, 39.24, 0.9784), note="released"),
        },
    },
    "table2": {
        "title": "Table 2: where ASE's prompt joins the scan",
        "paper_sets": ["Set14", "Urban100", "Manga109"],
        "reference": "C",
        "rows": {
            "B": _row("light", {"prompt_position": "B"}, _p(33.97, 0.9215, 32.96, 0.9356, 39.23, 0.9781)),
            "delta": _row("light", {"prompt_position": "delta"}, _p(33.92, 0.9211, 32.93, 0.9350, 39.19, 0.9779),
                          note="prompt of the scan's width added to Δ before its softplus"),
            "y": _row("light", {"prompt_position": "y"}, _p(33.97, 0.9210, 32.94, 0.9351, 39.21, 0.9782),
                      note="prompt of the scan's width added to the scan's output"),
            "C": _row("light", {}, _p(33.99, 0.9216, 32.97, 0.9355, 39.24, 0.9784), note="released"),
        },
    },
    "tableA2": {
        "title": "Table A.2: prompt pool size T and inner rank r (r × T)",
        "paper_sets": ["Set14", "Urban100", "Manga109"],
        "reference": "r32 x T64",
        "rows": {
            "r16 x T64": _row("light", {"inner_rank": 16, "num_tokens": 64}, _p(33.90, 0.9205, 32.96, 0.9359, 39.19, 0.9781)),
            "r16 x T128": _row("light", {"inner_rank": 16, "num_tokens": 128}, _p(33.91, 0.9205, 32.96, 0.9354, 39.22, 0.9783)),
            "r32 x T128": _row("light", {"inner_rank": 32, "num_tokens": 128}, _p(33.97, 0.9210, 32.97, 0.9360, 39.20, 0.9783)),
            "r32 x T64": _row("light", {}, _p(33.95, 0.9213, 32.97, 0.9355, 39.24, 0.9784), note="released"),
        },
    },
    "table8": {
        "title": "Table 8: MambaIR with 1, 2 or 4 scan directions against MambaIRv2-light",
        "paper_sets": ["Urban100", "Manga109"],
        "reference": "MambaIRv2-light",
        "rows": {
            "MambaIR-1": _row("mambair-light", dict(_MAMBAIR_06DC6CD, scan_directions=1),
                              dict(_p(32.82, 0.9348, 39.19, 0.9776), params="987K", macs="291G"),
                              note="06dc6cd light layout, row-major scan"),
            "MambaIR-2": _row("mambair-light", dict(_MAMBAIR_06DC6CD, scan_directions=2),
                              dict(_p(32.86, 0.9450, 39.26, 0.9778), params="1.11M", macs="383G"),
                              note="06dc6cd light layout, row- and column-major scans (paper's SSIM 0.9450 as printed)"),
            "MambaIR-4": _row("mambair-light", dict(_MAMBAIR_06DC6CD, scan_directions=4),
                              dict(_p(32.92, 0.9356, 39.31, 0.9779), params="1.36M", macs="568G"),
                              note="06dc6cd light layout, the four released directions"),
            "MambaIRv2-light": _row("light", {}, dict(_p(33.26, 0.9378, 39.39, 0.9786), params="774K",
                                                      macs="286G"), note="released"),
        },
    },
    "deviations": {
        "title": "Where the released code departs from the paper, and test-time routing",
        "paper_sets": [],
        "reference": "released",
        "rows": {
            "released": _row("light", {}, {}, note="per-layer basis, raster-order prompts, argmax at test time"),
            "shared basis (Eq. 6)": _row("light", {"prompt_basis": "shared"}, {},
                                         note="one prompt basis N for every layer (csguoh/MambaIR#108)"),
            "prompts in SGN order": _row("light", {"prompt_order": "sgn"}, {},
                                         note="each prompt sorted with its token (csguoh/MambaIR#115)"),
            "Gumbel routing at test": _row("light", {}, {}, routing="gumbel",
                                           note="the released model evaluated with Gumbel-noise routing, as "
                                                "the released test code does (seeded by the run's seed)"),
        },
    },
}

TABLE_NAMES = tuple(TABLES)


class AblationError(MambaIRv2Error, ValueError):
    """A bad ablation request (unknown table or row, no benchmark folder)."""


# -- the paper's numbers --------------------------------------------------------------------
def paper_metrics(table: Mapping[str, Any], row: Mapping[str, Any]) -> Dict[str, Dict[str, float]]:
    """The paper's {set: {psnr, ssim}} of a row."""
    pairs = row["paper"].get("_pairs", [])
    return {name: {"psnr": p, "ssim": s} for name, (p, s) in zip(table["paper_sets"], pairs)}


def parse_count(text: str) -> Tuple[float, int]:
    """``"987K"`` → (987000, 0 decimals), ``"1.11M"`` → (1.11e6, 2 decimals); same for G."""
    m = re.fullmatch(r"([0-9.]+)([KMG])", text)
    if not m:
        raise ValueError(f"not a paper count: {text!r}")
    number, unit = m.groups()
    decimals = len(number.split(".")[1]) if "." in number else 0
    return float(number) * {"K": 1e3, "M": 1e6, "G": 1e9}[unit], decimals


def rounds_to(value: float, text: str) -> bool:
    """Whether ``value`` printed in the paper's unit and precision is ``text``."""
    _, decimals = parse_count(text)
    unit = {"K": 1e3, "M": 1e6, "G": 1e9}[text[-1]]
    return f"{value / unit:.{decimals}f}" == text[:-1]


# -- complexity ------------------------------------------------------------------------------
def row_complexity(row: Mapping[str, Any], scale: int = 2,
                   output_size: Tuple[int, int] = PAPER_OUTPUT) -> Dict[str, Any]:
    """Parameters and MACs (the paper's count) of a row at the paper's resolution, beside the
    paper's where it gives them."""
    import torch

    from ..analysis.complexity import count_complexity
    from ..models import create_model

    with torch.device("meta"):
        model = create_model(row["variant"], scale=scale, **row["overrides"])
    h, w = output_size
    c = count_complexity(model, (h // scale, w // scale))
    out: Dict[str, Any] = {"params": c.params, "macs": c.macs_paper, "output_size": [h, w],
                           "switches": model.config.switches()}
    paper = row["paper"]
    if "params" in paper:
        out["paper_params"] = paper["params"]
        out["params_match"] = rounds_to(c.params, paper["params"])
    if "macs" in paper:
        macs, _ = parse_count(paper["macs"])
        out["paper_macs"] = paper["macs"]
        out["macs_rel_diff"] = c.macs_paper / macs - 1
    return out


def dry_run(table_name: str, scale: int = 2) -> Dict[str, Any]:
    """Every row of a table with its parameters and MACs beside the paper's (no training)."""
    table = get_table(table_name)
    rows = []
    for name, row in table["rows"].items():
        rows.append({"name": name, "variant": row["variant"], "overrides": row["overrides"],
                     "routing": row["routing"], "note": row["note"], **row_complexity(row, scale),
                     "paper_metrics": paper_metrics(table, row)})
    return {"table": table_name, "title": table["title"], "scale": scale, "rows": rows}


def get_table(name: str) -> Dict[str, Any]:
    if name not in TABLES:
        raise AblationError(f"unknown table {name!r}; choose one of {', '.join(TABLES)}")
    return TABLES[name]


# -- running -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    """What every row of a run shares: the training config (its data, batch, patch and
    schedule), the steps, the seeds and the benchmark folders."""

    config: str
    overrides: Tuple[str, ...]
    steps: Optional[int]
    seeds: Tuple[int, ...]
    sets: Tuple[str, ...]
    protocol: str = "whole"


def seeds_problem(seeds: Sequence[int]) -> Optional[str]:
    """What is wrong with a list of seeds (none, negative, one given twice: n would count one
    training several times), or None."""
    if not seeds:
        return "at least one seed"
    negative = [s for s in seeds if s < 0]
    if negative:
        return f"seeds are integers ≥ 0, got {negative[0]}"
    twice = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if twice:
        return f"seed {twice[0]} is given more than once (each seed is one training); give distinct seeds"
    return None


def training_config(budget: Budget, row: Mapping[str, Any], seed: int, output_dir: Path):
    """The training config of one row and seed: the budget's config with the row's model (its
    overrides over the config's ``model.overrides``), the seed, ``train.iters`` = steps (milestones and warm-up scaled with it), no validation during
    training (the run evaluates afterwards) and one save at the end."""
    from ..train.config import build_config, load_config

    base = load_config(budget.config, budget.overrides)
    data = json.loads(json.dumps(dict(base), default=str))
    t = data["train"]
    if budget.steps is not None:
        ratio = budget.steps / t["iters"]
        t["milestones"] = [max(1, round(m * ratio)) for m in t["milestones"]]
        t["warmup_iters"] = int(t["warmup_iters"] * ratio)
        t["iters"] = budget.steps
    t.update(save_every=t["iters"], keep_checkpoints=1, max_minutes=0.0, tensorboard=False, plot=False,
             progress="off", log_every=max(1, min(t["log_every"], t["iters"] // 4 or 1)))
    data["val"]["every"] = 0
    data["seed"] = int(seed)
    # the config's own model.overrides (e.g. a smaller network for a quick run) under the row's
    overrides = dict(data["model"].get("overrides") or {}, **row["overrides"])
    data["model"] = dict(data["model"], variant=row["variant"], overrides=overrides, init_from=None)
    data["output_dir"] = str(output_dir)
    data["name"] = output_dir.name
    return build_config(data, source=f"ablation {output_dir.name}")


def run_key(budget: Budget, row: Mapping[str, Any], seed: int) -> str:
    """The cache folder of one trained model: its model and seed, and the training config."""
    from ..train.config import load_config

    base = load_config(budget.config, budget.overrides)
    ident = {"variant": row["variant"], "overrides": row["overrides"], "seed": seed, "steps": budget.steps,
             "config": json.loads(json.dumps(dict(base), default=str))}
    ident["config"].pop("output_dir", None)
    digest = hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:10]
    slug = re.sub(r"[^a-z0-9]+", "-", f"{row['variant']}-{json.dumps(row['overrides'], sort_keys=True)}".lower())
    return f"{slug.strip('-')[:60]}-s{seed}-{digest}"


def benchmark_folders(budget: Budget) -> List[Tuple[str, Path]]:
    """``(name, HR folder)`` per ``--sets`` entry: a folder, or a name found beside the
    training config's validation set (``…/<name>/HR`` next to ``…/Set5/HR``); default: the
    validation set itself."""
    from ..protocol.evaluate import dataset_name
    from ..train.config import load_config

    val_root = load_config(budget.config, budget.overrides)["val"]["root"]
    entries = list(budget.sets) or ([val_root] if val_root else [])
    if not entries:
        raise AblationError("no benchmark set: give --sets or a training config with val.root")
    out = []
    for entry in entries:
        path = Path(entry)
        if not path.is_dir() and val_root:
            root = Path(val_root)
            base = root.parent.parent if root.name.upper() == "HR" else root.parent
            for candidate in (base / entry / "HR", base / entry):
                if candidate.is_dir():
                    path = candidate
                    break
        if not path.is_dir():
            raise AblationError(f"benchmark set {entry!r}: no such folder (give a folder of HR images "
                                "or a name beside the training config's val.root)")
        out.append((entry if not Path(entry).is_dir() else dataset_name(path), path))
    return out


def _read_record(trained: Path, log: Callable[[str], None]) -> Optional[Dict[str, Any]]:
    """A trained row's record (``{"steps", "train_seconds"}``), or None where there is none or it
    is damaged (empty, not JSON, another shape: the row is then trained again, resuming its state)."""
    if not trained.exists():
        return None
    try:
        info = json.loads(trained.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        info = None
    if (isinstance(info, dict) and isinstance(info.get("steps"), int)
            and isinstance(info.get("train_seconds"), (int, float))):
        return info
    log(f"    {trained}: damaged record, the row is trained again (from its last training state)")
    return None


def train_and_evaluate(budget: Budget, row: Mapping[str, Any], seed: int, folder: Path,
                       sets: Sequence[Tuple[str, Path]], log: Callable[[str], None]) -> Optional[Dict[str, Any]]:
    """Trains (or resumes, or reuses) one row's model for one seed and evaluates it; returns
    ``{"seed", "sets": {name: {psnr, ssim}}, "train_seconds", "steps"}`` on rank 0, None on
    other ranks. The trained weights are kept as ``model.safetensors`` (reloaded strictly)."""
    from ..models import load_model, save_safetensors, set_routing
    from ..protocol.evaluate import evaluate_folder, model_restorer
    from ..protocol.task import TaskSpec
    from ..train.checkpointing import find_resume_state
    from ..train.trainer import Trainer
    from ..utils.atomic import atomic_write_bytes
    from ..utils.distributed import Ranks

    is_main = Ranks.from_env().rank == 0
    weights = folder / "model.safetensors"
    trained = folder / "trained.json"
    info = _read_record(trained, log)
    if info is None:
        cfg = training_config(budget, row, seed, folder / "train")
        start = time.time()
        # The row's folder belongs to this runner: one stopped before its first training state
        # (nothing to resume) is the same row, begun again rather than refused as "another run".
        resumable = find_resume_state(folder / "train") is not None if (folder / "train").is_dir() else False
        trainer = Trainer(cfg, resume="auto" if resumable else None, overwrite=not resumable)
        try:
            summary = trainer.run()
        finally:
            trainer.stop.restore()
        if summary["reason"] != "done":
            raise AblationError(f"{folder.name}: training stopped ({summary['reason']}); run again to resume")
        if trainer.dist.is_main:
            model = trainer.ema.module if trainer.ema is not None else trainer.model
            save_safetensors(model.cpu(), weights)
            info = {"steps": summary["step"], "train_seconds": time.time() - start}
            atomic_write_bytes(trained, json.dumps(info).encode(), overwrite=True)
        from ..train import distributed as D

        D.cleanup()
        is_main = trainer.dist.is_main
    if not is_main:
        return None
    model = load_model(weights)  # strict, from the stored configuration
    seed_tag = f"{row['routing']}"
    results: Dict[str, Any] = {}
    for name, path in sets:
        set_routing(model, row["routing"], seed=seed if row["routing"] == "gumbel" else None)
        spec = TaskSpec("sr", scale=model.config.upscale)
        r = evaluate_folder(model_restorer(model, budget.protocol), spec, path, name=name)
        results[name] = {"psnr": r.psnr, "ssim": r.ssim}
        log(f"    {name}: {r.psnr:.3f} dB / {r.ssim:.4f} ({seed_tag} routing)")
    return {"seed": seed, "sets": results, **info}


def summarise(values: Sequence[float]) -> Dict[str, Optional[float]]:
    """Mean and sample standard deviation (None for one value)."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values)}


#: Two-sided 95 % quantiles of Student's t by degrees of freedom (1.96 beyond the table).
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def t95(dof: int) -> float:
    """The two-sided 95 % quantile of Student's t with ``dof`` degrees of freedom (the table's
    value at the nearest tabulated dof at or below ``dof``: slightly conservative)."""
    if dof > 30:
        return 1.96
    return _T95[max(k for k in _T95 if k <= dof)]


def paired_difference(row_runs: Sequence[Mapping[str, Any]], ref_runs: Sequence[Mapping[str, Any]],
                      set_name: str, metric: str) -> Optional[Dict[str, Any]]:
    """Mean over seeds of (row − reference) for the seeds both have, with its standard error
    (None for one seed); ``resolved``: the paired t-test rejects "no difference" at 95 %
    (|mean| > t₀.₉₇₅(n−1) · standard error; with 2 seeds that needs 12.7 standard errors)."""
    ref = {r["seed"]: r["sets"][set_name][metric] for r in ref_runs}
    diffs = [r["sets"][set_name][metric] - ref[r["seed"]] for r in row_runs if r["seed"] in ref]
    if not diffs:
        return None
    mean = statistics.fmean(diffs)
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else None
    resolved = se is not None and abs(mean) > t95(len(diffs) - 1) * se
    return {"mean": mean, "se": se, "n": len(diffs), "resolved": bool(resolved)}


def run_table(table_name: str, budget: Budget, out_dir: Path, rows: Optional[Sequence[str]] = None,
              log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> Optional[Dict[str, Any]]:
    """Trains and evaluates every row (or ``rows``) of a table for every seed; returns the
    report (rank 0; None on the other ranks of a torchrun; see :func:`score`)."""
    table = get_table(table_name)
    names = list(rows) if rows else list(table["rows"])
    unknown = [n for n in names if n not in table["rows"]]
    if unknown:
        raise AblationError(f"{table_name} has no row {unknown[0]!r}; rows: {', '.join(table['rows'])}")
    if table["reference"] not in names:
        names.append(table["reference"])
    problem = seeds_problem(budget.seeds)
    if problem:
        raise AblationError(f"seeds: {problem}")
    sets = benchmark_folders(budget)
    report: Dict[str, Any] = {"table": table_name, "title": table["title"], "reference": table["reference"],
                              "budget": {"config": budget.config, "overrides": list(budget.overrides),
                                         "steps": budget.steps, "seeds": list(budget.seeds),
                                         "sets": [n for n, _ in sets], "protocol": budget.protocol},
                              "rows": []}
    runs: Dict[str, List[Dict[str, Any]]] = {}
    main = True
    for name in names:
        row = table["rows"][name]
        runs[name] = []
        for seed in budget.seeds:
            folder = out_dir / "runs" / run_key(budget, row, seed)
            folder.mkdir(parents=True, exist_ok=True)
            log(f"[{table_name}] {name} seed {seed} ({folder.name})")
            result = train_and_evaluate(budget, row, seed, folder, sets, log)
            if result is None:
                main = False
                continue
            runs[name].append(result)
    if not main:
        return None
    for name in names:
        row = table["rows"][name]
        report["rows"].append({"name": name, "variant": row["variant"], "overrides": row["overrides"],
                               "routing": row["routing"], "note": row["note"], **row_complexity(row),
                               "paper_metrics": paper_metrics(table, row), "runs": runs[name]})
    return score(report)


def score(report: Dict[str, Any]) -> Dict[str, Any]:
    """Fills each row's ``sets``: mean ± std over seeds of PSNR and SSIM and the paired
    difference from the reference row, from the rows' ``runs`` (also re-scores a stored report)."""
    ref_runs = next(r["runs"] for r in report["rows"] if r["name"] == report["reference"])
    for entry in report["rows"]:
        entry["sets"] = {}
        for set_name in report["budget"]["sets"]:
            entry["sets"][set_name] = {}
            for metric in ("psnr", "ssim"):
                entry["sets"][set_name][metric] = summarise([r["sets"][set_name][metric] for r in entry["runs"]])
                entry["sets"][set_name][f"{metric}_vs_reference"] = (
                    None if entry["name"] == report["reference"]
                    else paired_difference(entry["runs"], ref_runs, set_name, metric))
    return report


# -- output ----------------------------------------------------------------------------------
def _count(value: float) -> str:
    return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.0f}K"


def dry_run_markdown(report: Mapping[str, Any]) -> str:
    lines = [f"### {report['title']} (x{report['scale']}, MACs at {PAPER_OUTPUT[1]}×{PAPER_OUTPUT[0]} output)", "",
             "| row | switches | params | paper | MACs | paper | Δ MACs |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        sw = ", ".join(f"{k}={v}" for k, v in r["overrides"].items()) or "released"
        if r["routing"] != "argmax":
            sw += f"; {r['routing']} routing at test"
        diff = f"{100 * r['macs_rel_diff']:+.2f}%" if "macs_rel_diff" in r else ""
        lines.append(f"| {r['name']} | {sw} | {r['params']:,} ({_count(r['params'])}) | {r.get('paper_params', '–')} | "
                     f"{r['macs'] / 1e9:.1f}G | {r.get('paper_macs', '–')} | {diff} |")
    return "\n".join(lines) + "\n"


def _pm(s: Mapping[str, Any], digits: int) -> str:
    if s["std"] is None:
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def _diff(d: Optional[Mapping[str, Any]], digits: int) -> str:
    if d is None:
        return "–"
    text = f"{d['mean']:+.{digits}f}"
    if d["se"] is not None:
        text += f" ± {d['se']:.{digits}f}" + ("" if d["resolved"] else " (n.s.)")
    return text


def run_markdown(report: Mapping[str, Any]) -> str:
    """The run as a markdown table: ours (mean ± std over seeds), the paired difference from the
    reference row (± standard error; n.s.: not significant in a paired t-test at 95 %), and the
    paper's numbers and differences (on its own sets)."""
    b = report["budget"]
    lines = [f"### {report['title']}", "",
             f"Budget: config `{b['config']}`{' ' + ' '.join('--set ' + o for o in b['overrides']) if b['overrides'] else ''}, "
             f"{b['steps']} steps, seeds {b['seeds']}, protocol {b['protocol']}; reference row: {report['reference']}.", ""]
    sets = b["sets"]
    head = ["row", "params", "MACs"]
    for s in sets:
        head += [f"{s} PSNR", f"{s} SSIM", f"Δ PSNR vs ref"]
    head += ["paper (PSNR/SSIM)", "paper Δ PSNR vs ref"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ref = next(r for r in report["rows"] if r["name"] == report["reference"])
    for r in report["rows"]:
        cells = [r["name"], _count(r["params"]), f"{r['macs'] / 1e9:.0f}G"]
        for s in sets:
            m = r["sets"][s]
            cells += [_pm(m["psnr"], 3), _pm(m["ssim"], 4), _diff(m["psnr_vs_reference"], 3)]
        paper = "; ".join(f"{k} {v['psnr']:.2f}/{v['ssim']:.4f}" for k, v in r["paper_metrics"].items()) or "–"
        pdiff = "; ".join(f"{k} {v['psnr'] - ref['paper_metrics'][k]['psnr']:+.2f}"
                          for k, v in r["paper_metrics"].items()) if r["name"] != report["reference"] else "–"
        cells += [paper, pdiff or "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
