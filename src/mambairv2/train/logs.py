"""Training logs: a CSV file (step, loss, lr, it/s, validation PSNR, elapsed time) and, when
``torch.utils.tensorboard`` imports, TensorBoard scalars."""
from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Dict, List, Optional

from ..utils.atomic import atomic_write_bytes

FIELDS = ("step", "loss", "lr", "it_s", "val_psnr", "elapsed_s", "val_ssim", "val_lpips")


class CSVLog:
    """Appends rows to ``log.csv``; on resume, rows after the resumed step are dropped (they
    belong to steps that will be trained again)."""

    def __init__(self, path: Path, resume_step: Optional[int] = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = read_log(self.path) if resume_step is not None else []
        rows = [r for r in rows if int(float(r["step"])) <= (resume_step or 0)]
        text = io.StringIO(newline="")
        w = csv.DictWriter(text, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in FIELDS})
        # atomic: a failure (a full disk) leaves the old log whole
        atomic_write_bytes(self.path, text.getvalue().encode("utf-8"), overwrite=True)

    def write(self, **row: object) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=FIELDS).writerow(
                {k: _fmt(row.get(k)) for k in FIELDS})


def _fmt(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def read_log(path: Path) -> List[Dict[str, str]]:
    """Rows of a ``log.csv`` (empty list when absent)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("step")]


class TensorBoard:
    """Scalars to TensorBoard when it is installed; a one-line notice otherwise."""

    def __init__(self, log_dir: Path, enabled: bool = True, purge_step: Optional[int] = None) -> None:
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # noqa: BLE001 - tensorboard missing or broken
            print("note: TensorBoard is not installed; logging to log.csv only", file=sys.stderr)
            return
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def scalars(self, step: int, values: Dict[str, float]) -> None:
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(k, v, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
