"""Learning rate as a pure function of the step: optional linear warm-up, then multi-step
(BasicSR's MultiStepLR), cosine annealing or constant. Being stateless, it resumes exactly."""
from __future__ import annotations

import bisect
import math
from typing import Mapping, Sequence


class LRSchedule:
    """``lr(step)`` for step 0, 1, … (the rate used by the optimizer update of that step)."""

    def __init__(self, base_lr: float, total: int, kind: str = "multistep",
                 milestones: Sequence[int] = (), gamma: float = 0.5, eta_min: float = 0.0,
                 warmup: int = 0) -> None:
        self.base = float(base_lr)
        self.total = int(total)
        self.kind = kind
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = float(gamma)
        self.eta_min = float(eta_min)
        self.warmup = int(warmup)

    @classmethod
    def from_config(cls, t: Mapping) -> "LRSchedule":
        return cls(t["lr"], t["iters"], t["scheduler"], t["milestones"], t["gamma"], t["eta_min"],
                   t["warmup_iters"])

    def __call__(self, step: int) -> float:
        if self.kind == "multistep":
            lr = self.base * self.gamma ** bisect.bisect_right(self.milestones, step)
        elif self.kind == "cosine":
            start = min(self.warmup, self.total)
            span = max(1, self.total - start)
            t = min(max(step - start, 0), span) / span
            lr = self.eta_min + (self.base - self.eta_min) * 0.5 * (1 + math.cos(math.pi * t))
        else:
            lr = self.base
        if step < self.warmup:
            lr *= (step + 1) / (self.warmup + 1)
        return lr
