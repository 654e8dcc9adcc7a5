"""The training loop: model, data, Adam, learning-rate schedule, EMA, mixed precision, DDP,
periodic validation, logs and atomic checkpoints with exact resume.

Determinism: a batch is a pure function of the step (see :mod:`.data`), and the Gumbel noise of
the ASSM routing is drawn from a generator re-seeded per step and per micro-batch shard
(``rank·accum_steps + k``). So a resumed run repeats the uninterrupted one, and ``W`` ranks with
``accum_steps = a`` compute the same update as one process with ``accum_steps = W·a``.
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import torch
import torch.nn as nn

from ..model import MambaIRv2
from ..model.assm import ASSM
from . import distributed as D
from .checkpointing import (find_resume_state, list_steps, load_state, rng_state, save_training_checkpoint,
                            set_rng_state)
from .config import ConfigError, as_list, dump_config, model_config, task_of
from .data import (DataError, InfiniteBatchSampler, drop_small, TaskSpec, TrainDataset, ValImage, list_images,
                   load_validation, lr_path_for, to_tensor, worker_init)
from .ema import EMA
from .logs import CSVLog, TensorBoard
from .losses import build_loss
from ..protocol.metrics import psnr
from .schedule import LRSchedule


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across runs and platforms)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0]
               & 0x7FFFFFFFFFFFFFFF)


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def task_spec(cfg: Mapping[str, Any]) -> TaskSpec:
    d = cfg["data"]
    return TaskSpec(task=task_of(cfg), scale=model_config(cfg).upscale, patch=d["patch_size"],
                    noise_sigma=d["noise_sigma"], jpeg_quality=d["jpeg_quality"], flip=d["flip"],
                    rot90=d["rot90"])


def build_train_dataset(cfg: Mapping[str, Any], spec: TaskSpec) -> TrainDataset:
    d = cfg["data"]
    roots = as_list(d["train_root"])
    if not roots:
        raise ConfigError("data.train_root is not set (e.g. --set data.train_root=/data/DIV2K/HR)")
    hr = list_images(roots, d["extensions"])
    need = d["patch_size"] * (spec.scale if spec.task == "sr" else 1)
    hr, small = drop_small(hr, need)
    if small:
        print(f"note: {len(small)} training image(s) smaller than the {need}px patch skipped "
              f"(e.g. {small[0].name})", file=sys.stderr)
    if not hr:
        raise DataError(f"no training image is large enough for {need}px patches in {', '.join(roots)}")
    lr = None
    if d["train_lr_root"] and spec.task == "sr":
        if not Path(d["train_lr_root"]).is_dir():
            raise DataError(f"{d['train_lr_root']}: no such LR folder (data.train_lr_root)")
        lr = [lr_path_for(p, d["train_lr_root"], d["lr_template"], spec.scale) for p in hr]
    return TrainDataset(hr, spec, seed=cfg["seed"], lr_files=lr, cache=d["cache"])


class _StopFlag:
    """Set by SIGTERM / SIGINT: the loop saves a checkpoint and stops at the end of the step."""

    def __init__(self) -> None:
        self.signal: Optional[int] = None
        self._old: Dict[int, Any] = {}

    def install(self) -> None:
        if not hasattr(signal, "SIGTERM"):
            return
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread
            pass

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Trainer:
    """One training run (one process; torchrun starts one per GPU / CPU rank)."""

    def __init__(self, cfg: Mapping[str, Any], resume: Optional[str] = None) -> None:
        self.cfg = cfg
        self.t = cfg["train"]
        self.out = Path(cfg["output_dir"])
        self.resume_from = self._resume_target(resume)
        self.dist = D.init_distributed(cfg["device"])
        self.device = self.dist.device
        self.main = self.dist.is_main
        self.spec = task_spec(cfg)
        accum, world = self.t["accum_steps"], self.dist.world_size
        if cfg["data"]["batch_size"] % (accum * world):
            raise ConfigError(f"data.batch_size {cfg['data']['batch_size']} is not divisible by "
                              f"{world} rank(s) × {accum} accumulation step(s)")
        cuda = self.device.type == "cuda"
        # denormal floats (tiny gradients, Adam moments) slow CPU training down up to 100×
        torch.set_flush_denormal(True)
        self.amp = self.t["amp"] if cuda else "none"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp)
        if cuda:
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

        # model (same initialisation on every rank), then per-rank RNG streams
        seed_everything(cfg["seed"])
        self.model = MambaIRv2(model_config(cfg)).to(self.device)
        if cfg["model"]["init_from"] and self.resume_from is None:
            from .warmstart import warm_start

            warm_start(self.model, cfg["model"]["init_from"], cfg["model"]["init_head"], verbose=self.main)
        seed_everything(mix_seed(cfg["seed"], 1, self.dist.rank))
        self.ema = EMA(self.model, self.t["ema_decay"], self.t["ema_warmup"]) if self.t["ema_decay"] > 0 else None
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.t["lr"],
                                          betas=tuple(self.t["betas"]), weight_decay=self.t["weight_decay"])
        self.schedule = LRSchedule.from_config(self.t)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == "fp16")
        self.criterion = build_loss(self.t["loss"], self.t["charbonnier_eps"])
        self.step = 0
        self.elapsed_before = 0.0
        self._start = time.time()
        if self.resume_from is not None:
            self._load(self.resume_from)

        self.gumbel = torch.Generator(device=self.device)
        for m in self.model.modules():
            if isinstance(m, ASSM):
                m.generator = self.gumbel
        self.net: nn.Module = self.model
        if self.t["compile"]:
            self.net = torch.compile(self.net)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.net = DDP(self.net, device_ids=[self.device.index] if cuda else None,
                           find_unused_parameters=self.t["find_unused_parameters"])

        self.dataset = build_train_dataset(cfg, self.spec)
        self.val_images: List[ValImage] = self._load_validation() if self.main else []
        self.stop = _StopFlag()

    # -- set-up helpers ----------------------------------------------------------------
    def _resume_target(self, resume: Optional[str]) -> Optional[Path]:
        if resume is None:
            if list_steps(self.out):
                raise ConfigError(f"{self.out} already holds a training run: resume it with --resume auto, "
                                  "or choose another name / output_dir")
            return None
        if resume == "auto":
            found = find_resume_state(self.out)
            if found is None:
                print(f"note: nothing to resume in {self.out}; starting a new run", file=sys.stderr)
            return found
        target = Path(resume)
        if not target.exists():
            raise ConfigError(f"--resume {resume}: no such run folder or state file")
        found = find_resume_state(target)
        if found is None:
            raise ConfigError(f"--resume {resume}: no training state in this folder")
        return found

    def _load(self, path: Path) -> None:
        try:
            st = load_state(path)
        except Exception as exc:  # noqa: BLE001 - reported as one line
            raise ConfigError(f"{path}: cannot read the training state ({type(exc).__name__}: {exc})") from None
        try:
            self.model.load_state_dict(st["params"], strict=True)
        except RuntimeError:
            raise ConfigError(f"{path}: the saved weights do not fit the configured model") from None
        if self.ema is not None and st.get("ema") is not None:
            self.ema.load_state_dict(st["ema"], st["ema_updates"])
        self.optimizer.load_state_dict(st["optimizer"])
        if st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
        self.step = int(st["step"])
        self.elapsed_before = float(st.get("elapsed_s", 0.0))
        rngs = st.get("rng") or []
        if len(rngs) == self.dist.world_size:
            set_rng_state(rngs[self.dist.rank])
        else:
            seed_everything(mix_seed(self.cfg["seed"], 2, self.dist.rank, self.step))
        if self.main:
            print(f"resumed from {path} at step {self.step}", file=sys.stderr)

    def _load_validation(self) -> List[ValImage]:
        v = self.cfg["val"]
        if not v["root"] or not v["every"]:
            return []
        if not Path(v["root"]).is_dir():
            print(f"note: validation folder {v['root']} not found; validation skipped", file=sys.stderr)
            return []
        return load_validation(v["root"], self.spec, self.cfg["data"]["extensions"], v["max_images"],
                               v["lr_root"], self.cfg["data"]["lr_template"])

    def _loader(self) -> torch.utils.data.DataLoader:
        sampler = InfiniteBatchSampler(len(self.dataset), self.cfg["data"]["batch_size"], self.cfg["seed"],
                                       self.dist.rank, self.dist.world_size, start_step=self.step)
        workers = self.cfg["data"]["num_workers"]
        return torch.utils.data.DataLoader(
            self.dataset, batch_sampler=sampler, num_workers=workers, pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0, worker_init_fn=worker_init if workers > 0 else None,
            prefetch_factor=4 if workers > 0 else None)

    # -- one step ------------------------------------------------------------------------
    def train_step(self, batch: Dict[str, torch.Tensor]) -> float:
        """One optimizer update on this rank's part of the global batch; returns the mean loss."""
        accum = self.t["accum_steps"]
        lr = self.schedule(self.step)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        lq = batch["lq"].to(self.device, non_blocking=True)
        gt = batch["gt"].to(self.device, non_blocking=True)
        lqs, gts = lq.chunk(accum), gt.chunk(accum)
        total = torch.zeros((), device=self.device)
        for k in range(accum):
            self.gumbel.manual_seed(mix_seed(self.cfg["seed"], 3, self.step, self.dist.rank * accum + k))
            sync = contextlib.nullcontext()
            if self.dist.enabled and k < accum - 1:
                sync = self.net.no_sync()
            with sync:
                with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                    enabled=self.amp_dtype is not None):
                    out = self.net(lqs[k])
                loss = self.criterion(out.float(), gts[k]) / accum
                self.scaler.scale(loss).backward()
            total += loss.detach()
        if self.t["grad_clip"] > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.t["grad_clip"])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        return float(total.item())

    # -- validation ----------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> Optional[float]:
        """Mean PSNR over the validation images (Y channel for SR, RGB for denoising, gray for
        JPEG) with the EMA weights; None when there is no validation set."""
        if not self.val_images:
            return None
        model = self.ema.module if (self.ema is not None and self.cfg["val"]["use_ema"]) else self.model
        was_training = model.training
        model.eval()
        tile = self.cfg["val"]["tile"]
        values = []
        for im in self.val_images:
            x = to_tensor(im.lq).unsqueeze(0)
            if tile:
                from ..restore import restore_tensor

                y = restore_tensor(model, x, tile=tile)
            else:
                y = model(x.to(self.device)).float().clamp_(0, 1).cpu()
            out = (y[0].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
            if self.spec.task == "sr":
                values.append(psnr(out, im.gt, self.spec.scale, channels="y"))
            else:
                values.append(psnr(out, im.gt, channels="rgb"))
        model.train(was_training)
        return float(np.mean(values))

    def elapsed(self) -> float:
        """Training seconds over all sessions of this run (resumes included)."""
        return self.elapsed_before + time.time() - self._start

    # -- checkpoints ---------------------------------------------------------------------
    def save(self) -> None:
        """Writes the weights (BasicSR format) and the full training state (rank 0 writes)."""
        rngs = D.gather_objects(self.dist, rng_state())
        sums = D.gather_objects(self.dist, D.weights_checksum(self.model))
        if self.main and any(c != sums[0] for c in sums):
            print(f"warning: the ranks' weights differ at step {self.step}: {sums}", file=sys.stderr)
        if self.main:
            state = {
                "step": self.step,
                "params": self.model.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "ema_updates": self.ema.updates if self.ema is not None else 0,
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
                "rng": rngs,
                "world_size": self.dist.world_size,
                "replica_checksums": sums,
                "elapsed_s": self.elapsed(),
                "config": dump_config(self.cfg),
            }
            save_training_checkpoint(self.out, self.step, self.model.state_dict(),
                                     self.ema.state_dict() if self.ema is not None else None,
                                     state, keep=self.t["keep_checkpoints"])
        D.barrier(self.dist)
        kill = self.t["debug_kill_at_step"]
        if kill and self.step == kill:
            os.kill(os.getpid(), signal.SIGKILL)

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> Dict[str, Any]:
        """Trains up to ``train.iters`` steps (or the time limit / a stop signal); returns a
        summary: final step, last validation PSNR, output folder, why it stopped."""
        t, cfg = self.t, self.cfg
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")
            self.csv = CSVLog(self.out / "log.csv", resume_step=self.step if self.resume_from else None)
            self.tb = TensorBoard(self.out / "tb", t["tensorboard"], purge_step=self.step or None)
        self.stop.install()
        loader = self._loader()
        batches = iter(loader)
        bar = self._progress()
        start = self._start = time.time()
        window_loss, window_n, window_t = 0.0, 0, time.time()
        last_val: Optional[float] = None
        reason = "done"
        self.model.train()
        try:
            while self.step < t["iters"]:
                batch = next(batches)
                loss = self.train_step(batch)
                if not math.isfinite(loss):
                    raise FloatingPointError(f"the loss became {loss} at step {self.step}")
                window_loss += loss
                window_n += 1
                step = self.step
                if bar is not None:
                    bar.update(1)
                    if step % 10 == 0 or step == t["iters"]:
                        bar.set_postfix(loss=f"{window_loss / window_n:.4g}", lr=f"{self.schedule(step - 1):.2e}")
                over_time = t["max_minutes"] > 0 and (time.time() - start) / 60 >= t["max_minutes"]
                stop = D.any_across(self.dist, over_time or self.stop.signal is not None)
                val = None
                do_val = cfg["val"]["every"] and (step % cfg["val"]["every"] == 0 or step == t["iters"]
                                                  or (stop and over_time))
                if do_val:
                    val = self.validate() if self.main else None
                    D.barrier(self.dist)
                    if val is not None:
                        last_val = val
                if step % t["log_every"] == 0 or val is not None or step == t["iters"] or stop:
                    mean = D.mean_across(self.dist, window_loss / max(window_n, 1))
                    now = time.time()
                    its = window_n / max(now - window_t, 1e-9)
                    if self.main:
                        self._log(step, mean, its, val, self.elapsed(), bar)
                    window_loss, window_n, window_t = 0.0, 0, now
                if step % t["save_every"] == 0 or step == t["iters"] or stop:
                    self.save()
                if stop:
                    reason = "time limit" if over_time else "signal"
                    break
        finally:
            if bar is not None:
                bar.close()
            self.stop.restore()
            if self.main and hasattr(self, "tb"):
                self.tb.close()
            del batches, loader
        if self.main:
            self._plot()
            print(f"stopped at step {self.step} ({reason}); checkpoints in {self.out / 'models'}",
                  file=sys.stderr)
        return {"step": self.step, "val_psnr": last_val, "output_dir": str(self.out), "reason": reason}

    def _progress(self):
        mode = self.t["progress"]
        if not self.main or mode == "off" or (mode == "auto" and not sys.stderr.isatty()):
            return None
        from tqdm import tqdm

        return tqdm(total=self.t["iters"], initial=self.step, unit="it", dynamic_ncols=True, smoothing=0.05)

    def _log(self, step: int, loss: float, its: float, val: Optional[float], elapsed: float, bar) -> None:
        lr = self.schedule(step - 1)
        self.csv.write(step=step, loss=loss, lr=lr, it_s=its, val_psnr=val, elapsed_s=elapsed)
        scalars = {"train/loss": loss, "train/lr": lr, "train/it_s": its}
        if val is not None:
            scalars["val/psnr"] = val
        self.tb.scalars(step, scalars)
        msg = None
        if val is not None:
            msg = f"step {step}: validation PSNR {val:.3f} dB"
        if bar is None:
            left = (self.t["iters"] - step) / its if its > 0 else float("inf")
            eta = time.strftime("%H:%M:%S", time.gmtime(left)) if math.isfinite(left) and left < 8.64e6 else "?"
            line = f"step {step}/{self.t['iters']} loss {loss:.5g} lr {lr:.3g} {its:.3g} it/s eta {eta}"
            print(line + (f" val {val:.3f} dB" if val is not None else ""), flush=True)
        elif msg:
            bar.write(msg)
        if val is not None:
            self._plot()

    def _plot(self) -> None:
        if not self.t["plot"]:
            return
        from .plot import plot_log

        try:
            plot_log(self.out / "log.csv", self.out / "plot.png")
        except OSError as exc:
            print(f"note: could not draw the plot ({exc})", file=sys.stderr)


def train(cfg: Mapping[str, Any], resume: Optional[str] = None) -> Dict[str, Any]:
    """Runs a training config (see :mod:`mambairv2.train.config`); ``resume``: None (new run),
    ``"auto"`` (newest state in the output folder, if any) or a run folder / state file."""
    trainer = None
    try:
        trainer = Trainer(cfg, resume)
        return trainer.run()
    finally:
        D.cleanup()
