"""The training loop: model, data, Adam, learning-rate schedule, EMA, mixed precision, DDP,
periodic validation, logs and atomic checkpoints with exact resume.

Determinism: a batch is a pure function of the step (see :mod:`.data`), and the Gumbel noise of
the ASSM routing is drawn from a generator re-seeded per step and per micro-batch shard
(``rank·accum_steps + k``). So a resumed run repeats the uninterrupted one, and ``W`` ranks with
``accum_steps = a`` compute the same update as one process with ``accum_steps = W·a``.

Interruptions: each step writes its log row, then its checkpoint (when due), then validates
(when due). SIGTERM / SIGINT at any point stop the run after the current step with its state
saved (a validation in progress is abandoned); any other error saves the last completed step
before it propagates. Either way ``--resume`` continues exactly.
"""
from __future__ import annotations

import contextlib
import errno
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..models import family_of, use_routing_generator
from ..utils.atomic import atomic_write_bytes
from . import distributed as D
from .checkpointing import (
    RESUME_HINT,
    STATE_RE,
    SaveError,
    clear_run,
    find_resume_state,
    list_steps,
    load_state,
    rng_state,
    save_training_checkpoint,
    set_rng_state,
    state_path,
)
from ..protocol.task import TaskSpec
from .config import ConfigError, accumulation, as_list, check_model_memory, dump_config, model_config, task_of
from .data import (
    DataError,
    InfiniteBatchSampler,
    SampleSpec,
    TrainDataset,
    list_images,
    lr_path_for,
    scan_images,
    worker_exception,
    single_threaded_opencv,
    worker_init,
)
from .ema import EMA
from .logs import CSVLog, TensorBoard
from .losses import build_loss, gan_loss
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
    """The task (degradation and metric) a training config trains for: the same
    :class:`~mambairv2.protocol.task.TaskSpec` the evaluation uses."""
    d, task = cfg["data"], task_of(cfg)
    if task == "realsr":  # validated as SR (bicubic LR, or val.lr_root made by `degrade --task realsr`)
        task = "sr"
    return TaskSpec(task, scale=model_config(cfg).upscale if task == "sr" else 1,
                    sigma=float(d["noise_sigma"]) if task == "denoise" else None,
                    quality=int(d["jpeg_quality"]) if task == "jpeg" else None)


def sample_spec(cfg: Mapping[str, Any]) -> SampleSpec:
    d = cfg["data"]
    return SampleSpec(task_spec(cfg), patch=d["patch_size"], flip=d["flip"], rot90=d["rot90"],
                      hr_only=task_of(cfg) == "realsr")


def _listing(items: Sequence[str], shown: int = 10) -> str:
    more = f", … ({len(items) - shown} more)" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def build_train_dataset(cfg: Mapping[str, Any], spec: SampleSpec, verbose: bool = True) -> TrainDataset:
    """The training set: the files of ``data.train_root`` whose header is readable (the others
    are listed in one notice) and that hold a whole patch."""
    d = cfg["data"]
    roots = as_list(d["train_root"])
    if not roots:
        raise ConfigError("data.train_root is not set (e.g. --set data.train_root=/data/DIV2K/HR)")
    scan = scan_images(list_images(roots, d["extensions"]), spec.hr_patch)
    if verbose and scan.bad:
        print(f"notice: {len(scan.bad)} training file(s) are not usable images and are left out: "
              + _listing([f"{p} ({why})" for p, why in scan.bad]), file=sys.stderr)
    if verbose and scan.small:
        print(f"note: {len(scan.small)} training image(s) smaller than the {spec.hr_patch}px patch skipped "
              f"(e.g. {scan.small[0].name})", file=sys.stderr)
    hr = scan.usable
    if not hr:
        raise DataError(f"no usable training image of at least {spec.hr_patch}px in {', '.join(roots)}")
    lr = None
    if d["train_lr_root"] and spec.task.task == "sr" and not spec.hr_only:
        if not Path(d["train_lr_root"]).is_dir():
            raise DataError(f"{d['train_lr_root']}: no such LR folder (data.train_lr_root)")
        lr = [lr_path_for(p, d["train_lr_root"], d["lr_template"], spec.task.scale) for p in hr]
    return TrainDataset(hr, spec, seed=cfg["seed"], lr_files=lr, cache=d["cache"])


class _Interrupted(Exception):
    """Raised inside validation when a stop signal arrives (validation is abandoned)."""


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

    def __init__(self, cfg: Mapping[str, Any], resume: Optional[str] = None, overwrite: bool = False) -> None:
        self.cfg = cfg
        self.overwrite = overwrite
        self._lock: Optional[Any] = None
        self.t = cfg["train"]
        self.out = Path(cfg["output_dir"])
        # signals are caught from the start: a stop before the first step trains nothing
        self.stop = _StopFlag()
        self.stop.install()
        self._made: Optional[Path] = None  # the topmost folder this start created
        try:
            self._set_up(cfg, resume)
        except BaseException:
            self.stop.restore()
            self._remove_made_folders()
            self.release()
            raise

    def _remove_made_folders(self) -> None:
        """After a failed start: the output folders this start created, if they hold nothing but
        the lock (a refused run leaves no empty run folder behind)."""
        if self._made is None or self._lock is None:
            return
        try:
            if [p.name for p in self.out.iterdir()] != [".lock"]:
                return
            (self.out / ".lock").unlink()
            folder = self.out
            while True:
                folder.rmdir()
                if folder == self._made:
                    break
                folder = folder.parent
        except OSError:  # not empty after all (another process wrote there): leave it
            pass

    def release(self) -> None:
        """Gives the output folder's lock back (also released when the process ends)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _set_up(self, cfg: Mapping[str, Any], resume: Optional[str]) -> None:
        self.gan = bool(cfg["gan"]["enabled"])
        self.realsr = task_of(cfg) == "realsr"
        if self.gan:
            _check_vgg_file(self.t["vgg19_weights"])
        self.resume_from = self._resume_target(resume)
        self.dist = D.init_distributed(cfg["device"])
        self.device = self.dist.device
        self.main = self.dist.is_main
        if self.main:
            self._check_output_folder()
        self.task = task_spec(cfg)
        self.samples = sample_spec(cfg)
        self.accum, self.micro_batch = accumulation(cfg, self.dist.world_size)
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
        config = model_config(cfg)
        check_model_memory(config, self.device)
        self.model = family_of(config).build(config).to(self.device)
        m = cfg["model"]
        if m["init_from"] and self.resume_from is None:
            from .warmstart import warm_start

            warm_start(self.model, m["init_from"], strict=m["init_strict"], partial=m["init_partial"],
                       verbose=self.main)
        seed_everything(mix_seed(cfg["seed"], 1, self.dist.rank))
        self.ema = EMA(self.model, self.t["ema_decay"], self.t["ema_warmup"]) if self.t["ema_decay"] > 0 else None
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.t["lr"],
                                          betas=tuple(self.t["betas"]), weight_decay=self.t["weight_decay"])
        self.schedule = LRSchedule.from_config(self.t)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == "fp16")
        self.criterion = build_loss(self.t["loss"], self.t["charbonnier_eps"])
        self.disc: Optional[nn.Module] = None
        if self.gan:
            self._set_up_gan(cfg)
        self.step = 0
        self.saved_step = -1
        self.elapsed_before = 0.0
        self._start = time.time()
        self._updating = False
        if self.resume_from is not None:
            self._load(self.resume_from)
            self.saved_step = self.step

        self.gumbel = torch.Generator(device=self.device)
        use_routing_generator(self.model, self.gumbel)
        self.net: nn.Module = self.model
        if self.t["compile"]:
            self.net = torch.compile(self.net)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            _standard_gradient_strides(self.model)
            self.net = DDP(self.net, device_ids=[self.device.index] if cuda else None,
                           find_unused_parameters=self.t["find_unused_parameters"])

        self.dataset = build_train_dataset(cfg, self.samples, verbose=self.main)
        self.val_images: List[Path] = self._validation_images() if self.main else []
        self.nr_images: List[Path] = self._no_reference_images() if self.main else []
        if self.main:
            self._check_validation_set()
        self.lpips = self._lpips_metric() if self.main else None
        self.val_metrics: Dict[str, float] = {}
        if self.main and self.overwrite and self.resume_from is None:
            # every check passed: only now is the previous run replaced (under the folder's lock)
            try:
                removed = clear_run(self.out)
            except OSError as exc:
                raise ConfigError(f"--overwrite: cannot remove the previous run from {self.out} "
                                  f"({exc.strerror or exc})") from None
            if removed:
                print(f"note: --overwrite: removed the previous run's {' and '.join(removed)} from {self.out}",
                      file=sys.stderr)

    # -- set-up helpers ----------------------------------------------------------------
    def _set_up_gan(self, cfg: Mapping[str, Any]) -> None:
        """Discriminator (same initialisation on every rank), its Adam, the VGG19 loss."""
        from .discriminator import UNetDiscriminatorSN
        from .perceptual import PerceptualLoss, VGGWeightsError

        g = cfg["gan"]
        if self.samples.hr_patch % 8:
            raise ConfigError(f"gan.enabled: the discriminator needs HR patches that are multiples of 8, got "
                              f"{self.samples.hr_patch}px (data.patch_size × scale)")
        state = torch.get_rng_state()
        torch.manual_seed(mix_seed(cfg["seed"], 6))
        self.disc = UNetDiscriminatorSN(3, g["d_num_feat"], g["d_skip_connection"]).to(self.device)
        torch.set_rng_state(state)
        self.optimizer_d = torch.optim.Adam(self.disc.parameters(), lr=g["d_lr"], betas=tuple(g["d_betas"]),
                                            weight_decay=g["d_weight_decay"])
        self.perceptual = PerceptualLoss(g["perceptual_layers"], g["perceptual_weight"], g["vgg_input_norm"])
        try:
            self.perceptual.vgg.load_file(self.t["vgg19_weights"])
        except VGGWeightsError as exc:
            raise ConfigError(str(exc)) from None
        self.perceptual.to(self.device)

    def _check_output_folder(self) -> None:
        """A one-line error now rather than a crash at the first checkpoint; then the folder's
        lock, held for the whole run, so that two runs never write into one folder."""
        probe = self.out / f".write-test-{os.getpid()}"
        missing = [f for f in (self.out, *self.out.parents) if not f.exists()]
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self._made = missing[-1] if missing else None
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"output folder {self.out}: cannot write there ({exc.strerror or exc}); "
                              "choose another with --set output_dir=DIR") from None
        self._lock = lock_folder(self.out)

    def _resume_target(self, resume: Optional[str]) -> Optional[Path]:
        if resume is None:
            if list_steps(self.out) and not self.overwrite:
                raise ConfigError(f"{self.out} already holds a training run: resume it with --resume auto, "
                                  "replace it with --overwrite, or choose another name / output_dir")
            self._refuse_other_run()
            return None
        if resume == "auto":
            found = find_resume_state(self.out)
            if found is None:
                self._refuse_other_run()
                print(f"note: nothing to resume in {self.out}; starting a new run", file=sys.stderr)
            return found
        target = Path(resume)
        if not target.exists():
            raise ConfigError(f"--resume {resume}: no such run folder or state file")
        if not (target.is_dir() or target.is_file()):
            raise ConfigError(f"--resume {resume}: not a regular file (a pipe, socket or device); {RESUME_HINT}")
        found = find_resume_state(target)
        if found is None:
            raise ConfigError(f"--resume {resume}: no training state in this folder")
        return found

    def _refuse_other_run(self) -> None:
        """A folder with another run's models or log but no state to resume is not replaced
        unless ``overwrite``."""
        models = self.out / "models"
        found = [p for p in (sorted(models.glob("*.pth")) + sorted(models.glob("*.safetensors")))
                 if models.is_dir()] + [p for p in (self.out / "log.csv",) if p.is_file()]
        if found and not self.overwrite:
            raise ConfigError(f"{self.out} holds another run ({found[0].name}, no training state to resume): "
                              "--overwrite replaces it, or choose another name / output_dir")

    def _load(self, path: Path) -> None:
        try:
            st = load_state(path)
        except ConfigError as exc:  # naming the file: damaged, a weights file, incomplete
            raise ConfigError(f"{exc}{_older_state(path)}") from None
        changed = resume_differences(st.get("config"), self.cfg)
        if changed and self.main:
            print(f"warning: resuming {path} with another data root / model than it was trained with: "
                  + "; ".join(changed), file=sys.stderr)
        try:
            self.model.load_state_dict(st["params"], strict=True)
        except RuntimeError:
            raise ConfigError(f"{path}: the saved weights do not fit the configured model"
                              + (f" ({'; '.join(changed)})" if changed else "")) from None
        if self.disc is not None and st.get("params_d") is None:
            raise ConfigError(f"{path}: no discriminator in this state (a run without gan.enabled); start the "
                              "GAN stage as a new run warm-started from it (model.init_from)")
        try:
            self._restore(st)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as exc:
            raise ConfigError(f"{path}: a damaged training state, or one of another kind of run "
                              f"({type(exc).__name__}: {_short(exc)}){_older_state(path)}") from None
        if self.main:
            print(f"resumed from {path} at step {self.step}", file=sys.stderr)

    def _restore(self, st: Mapping[str, Any]) -> None:
        """Everything of a loaded state but the weights: EMA, optimizers, scaler, step, RNGs."""
        if self.ema is not None and st.get("ema") is not None:
            self.ema.load_state_dict(st["ema"], st["ema_updates"])
        self.optimizer.load_state_dict(st["optimizer"])
        if self.disc is not None:
            self.disc.load_state_dict(st["params_d"], strict=True)
            self.optimizer_d.load_state_dict(st["optimizer_d"])
        if st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
        self.step = int(st["step"])
        self.elapsed_before = float(st.get("elapsed_s", 0.0))
        rngs = st.get("rng") or []
        if len(rngs) == self.dist.world_size:
            set_rng_state(rngs[self.dist.rank])
        else:
            seed_everything(mix_seed(self.cfg["seed"], 2, self.dist.rank, self.step))

    def _validation_images(self) -> List[Path]:
        """The validation files; a folder named in the config that is missing is an error."""
        from ..protocol.evaluate import EvaluationError, list_images as list_clean

        v = self.cfg["val"]
        if not v["root"] or not v["every"]:
            return []
        try:
            images, _ = list_clean(v["root"])
        except EvaluationError as exc:
            raise ConfigError(f"val.root {exc} (set val.root=DIR, or val.every=0 to train without "
                              "validation)") from None
        if v["lr_root"] and not Path(v["lr_root"]).is_dir():
            raise ConfigError(f"val.lr_root {v['lr_root']}: no such folder")
        if not images:
            raise ConfigError(f"val.root {v['root']}: holds no images")
        return images[: v["max_images"]] if v["max_images"] else images

    def _check_validation_set(self) -> None:
        """Decodes every validation image (and its pre-made input from ``val.lr_root``) as the
        validation will, so that a corrupt or unusable file is a one-line error before step 1
        rather than a crash at the first validation."""
        from ..protocol.degrade import mod_crop
        from ..protocol.evaluate import EvaluationError, find_premade, read_premade
        from ..protocol.task import TaskSpec, read_clean

        v = self.cfg["val"]
        spec, scale = self.task, self.task.scale
        for path in self.val_images:
            try:
                clean = read_clean(path, spec)
                if spec.task == "sr" and min(clean.shape[:2]) < scale:
                    raise EvaluationError(f"{path}: {clean.shape[1]}×{clean.shape[0]} is smaller than the "
                                          f"scale {scale}")
                target = mod_crop(clean, scale) if spec.task == "sr" else clean
                if v["lr_root"]:
                    read_premade(find_premade(Path(v["lr_root"]), path, spec), spec, target)
            except EvaluationError as exc:
                raise ConfigError(f"validation set: {exc}; fix or remove the file (val.root"
                                  f"{', val.lr_root' if v['lr_root'] else ''}), or set val.every=0") from None
        nr_spec = TaskSpec("sr", scale=1) if spec.task == "sr" else spec
        for path in self.nr_images:
            try:
                read_clean(path, nr_spec)
            except EvaluationError as exc:
                raise ConfigError(f"val.nr_root: {exc}; fix or remove the file") from None

    def _no_reference_images(self) -> List[Path]:
        """The real photos of ``val.nr_root`` (restored into a sheet at each validation)."""
        from ..protocol.evaluate import EvaluationError, list_images as list_clean

        v = self.cfg["val"]
        if not v["nr_root"] or not v["every"]:
            return []
        try:
            images, _ = list_clean(v["nr_root"])
        except EvaluationError as exc:
            raise ConfigError(f"val.nr_root {exc}") from None
        if not images:
            raise ConfigError(f"val.nr_root {v['nr_root']}: holds no images")
        return images[: v["nr_max_images"]] if v["nr_max_images"] else images

    def _lpips_metric(self):
        """LPIPS-VGG from the user's two files (``val.lpips_vgg16``, ``val.lpips_weights``), or None."""
        v = self.cfg["val"]
        if not v["lpips_vgg16"] or not self.val_images:
            return None
        from ..protocol.lpips import LPIPS
        from ..protocol.task import EvaluationError

        try:
            return LPIPS.from_files(v["lpips_vgg16"], v["lpips_weights"]).to(self.device)
        except EvaluationError as exc:
            raise ConfigError(f"val.lpips: {exc}") from None

    def _loader(self) -> torch.utils.data.DataLoader:
        sampler = InfiniteBatchSampler(len(self.dataset), self.cfg["data"]["batch_size"], self.cfg["seed"],
                                       self.dist.rank, self.dist.world_size, start_step=self.step)
        workers = self.cfg["data"]["num_workers"]
        if workers > 0:
            # OpenCV's thread pool does not survive fork: a worker that touches it (worker_init
            # sets its thread count) waits forever on the pool the parent had running. Shrunk
            # here, before the workers start, there is none to inherit.
            single_threaded_opencv()
        return torch.utils.data.DataLoader(
            self.dataset, batch_sampler=sampler, num_workers=workers, pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0, worker_init_fn=worker_init if workers > 0 else None,
            prefetch_factor=4 if workers > 0 else None)

    # -- one step ------------------------------------------------------------------------
    def _inputs(self, batch: Dict[str, torch.Tensor]):
        """``(lq, target, real)`` on the device: the network input, the pixel / perceptual target
        and what the discriminator sees as real. Real-world SR degrades the HR patches here, each
        from its own seed (config seed, sample number)."""
        if not self.realsr:
            lq = batch["lq"].to(self.device, non_blocking=True)
            gt = batch["gt"].to(self.device, non_blocking=True)
            return lq, gt, gt
        from ..protocol.realworld import degrade_batch

        hr = batch["gt"].to(self.device, non_blocking=True)
        seeds = [mix_seed(self.cfg["seed"], 5, int(n)) for n in batch["number"]]
        lq, target = degrade_batch(hr, seeds, self.task.scale, self.cfg["realsr"])
        every = self.cfg["realsr"]["dump_every"]
        if every and self.main and (self.step + 1) % every == 0:
            self._dump(lq, target)
        return lq, target, (target if self.cfg["gan"]["gan_gt_usm"] else hr)

    def _dump(self, lq: torch.Tensor, gt: torch.Tensor) -> None:
        """Writes this rank's LR inputs and targets of the step (``realsr.dump_every``)."""
        from PIL import Image

        folder = self.out / "degraded"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(lq.shape[0]):
            for name, t in (("lq", lq[i]), ("gt", gt[i])):
                px = (t.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
                Image.fromarray(px).save(folder / f"{self.step + 1:08d}_{i:02d}_{name}.png")

    def train_step(self, batch: Dict[str, torch.Tensor]) -> float:
        """One optimizer update on this rank's part of the global batch; returns the mean loss
        (of the generator, in the GAN stage)."""
        accum = self.accum
        lr = self.schedule(self.step)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        lq, gt, real = self._inputs(batch)
        lqs, gts, reals = lq.chunk(accum), gt.chunk(accum), real.chunk(accum)
        if self.disc is not None:
            self.disc.power_iteration()  # once per step, whatever the split into micro-batches
            self.disc.requires_grad_(False)
        fakes: List[torch.Tensor] = []
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
                out = out.float()
                if self.disc is None:
                    loss = self.criterion(out, gts[k]) / accum
                else:
                    g = self.cfg["gan"]
                    loss = (g["pixel_weight"] * self.criterion(out, gts[k]) + self.perceptual(out, gts[k])
                            + g["gan_weight"] * gan_loss(self.disc(out), real=True)) / accum
                    fakes.append(out.detach())
                self.scaler.scale(loss).backward()
            total += loss.detach()
        # from here to the step count the weights are between two steps: no crash save then
        self._updating = True
        if self.t["grad_clip"] > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.t["grad_clip"])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.disc is not None:
            self._discriminator_step(reals, fakes, lr / self.t["lr"])
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        self._updating = False
        return float(total.item())

    def _discriminator_step(self, reals, fakes, factor: float) -> None:
        """The discriminator's update on the step's ground truth and (detached) outputs; its
        learning rate follows the generator's schedule."""
        self.disc.requires_grad_(True)
        for g in self.optimizer_d.param_groups:
            g["lr"] = self.cfg["gan"]["d_lr"] * factor
        self.optimizer_d.zero_grad(set_to_none=True)
        accum = len(fakes)
        for k in range(accum):
            (gan_loss(self.disc(reals[k]), real=True) / accum).backward()
            (gan_loss(self.disc(fakes[k]), real=False) / accum).backward()
        D.average_gradients(self.dist, self.disc.parameters())
        self.optimizer_d.step()

    # -- validation ----------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> Optional[float]:
        """Mean PSNR over the validation images, measured as ``mambairv2 evaluate`` does (the
        task's degradation and metric; ``val.protocol`` whole or the authors' crops), with the
        EMA weights when ``val.use_ema``; None without a validation set.

        Raises:
            _Interrupted: a stop signal arrived (checked after each image).
        """
        from ..protocol.evaluate import evaluate_folder, model_restorer

        if not self.val_images and not self.nr_images:
            return None
        v = self.cfg["val"]
        model = self.ema.module if (self.ema is not None and v["use_ema"]) else self.model
        was_training = model.training
        model.eval()
        method = model_restorer(model, v["protocol"], scale=self.task.scale, tile=v["tile"] or None)
        debug = _debug_signal(self.t["debug_signal_in_validation"], self.step)

        def after_image(_result: Any) -> None:
            if debug is not None:
                os.kill(os.getpid(), debug)
            if self.stop.signal is not None:
                raise _Interrupted

        lpips: List[float] = []

        def more_metrics(_path: Path, out: np.ndarray, target: np.ndarray) -> None:
            if self.lpips is not None and out.shape[2] == 3:
                from ..protocol.lpips import lpips_distance

                lpips.append(lpips_distance(self.lpips, out, target))

        try:
            if self.nr_images:
                self._no_reference_sheet(method, after_image)
            if not self.val_images:
                return None
            result = evaluate_folder(method, self.task, v["root"], v["lr_root"], images=self.val_images,
                                     on_image=after_image, on_output=more_metrics)
        finally:
            model.train(was_training)
        self.val_metrics = {"ssim": result.ssim}
        if lpips:
            self.val_metrics["lpips"] = float(np.mean(lpips))
        return result.psnr

    def _no_reference_sheet(self, method, after_image) -> Path:
        """Restores the real photos of ``val.nr_root`` and writes one sheet: a row per photo, its
        input (nearest-neighbour enlarged) beside the output (``<output>/nr_sheets/<step>.png``)."""
        from ..utils.imageio import ImageData, atomic_write_bytes, encode_image
        from ..protocol.metrics import to_uint8
        from ..protocol.task import TaskSpec, read_clean

        spec = TaskSpec("sr", scale=1) if self.task.task == "sr" else self.task
        rows = []
        for path in self.nr_images:
            x = read_clean(path, spec).astype(np.float32) / 255.0
            y = to_uint8(np.asarray(method(x)))
            big = np.repeat(np.repeat(to_uint8(x), self.task.scale, 0), self.task.scale, 1)
            if big.shape[2] != y.shape[2]:
                big = np.repeat(big, y.shape[2], 2) if big.shape[2] == 1 else big
            h = max(big.shape[0], y.shape[0])
            pad = lambda a: np.pad(a, ((0, h - a.shape[0]), (0, 0), (0, 0)))  # noqa: E731
            rows.append(np.concatenate([pad(big), np.zeros((h, 8, y.shape[2]), np.uint8), pad(y)], axis=1))
            after_image(None)
        width = max(r.shape[1] for r in rows)
        sheet = np.concatenate([np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0))) for r in rows], axis=0)
        if sheet.shape[2] == 1:
            sheet = sheet[:, :, 0]
        target = self.out / "nr_sheets" / f"{self.step:08d}.png"
        atomic_write_bytes(target, encode_image(ImageData(sheet, "PNG"), "PNG"), overwrite=True)
        return target

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
            try:
                self._write_state(rngs, sums)
            except SaveError as exc:
                raise SaveError(f"{exc}; {self._after_write_failure(exc.errno)}", exc.errno) from None
        D.barrier(self.dist)
        self.saved_step = self.step
        kill = self.t["debug_kill_at_step"]
        if kill and self.step == kill:
            os.kill(os.getpid(), signal.SIGKILL)

    def _write_state(self, rngs: List[Any], sums: List[Any]) -> None:
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
        params_d = None
        if self.disc is not None:
            params_d = self.disc.state_dict()
            state["params_d"] = params_d
            state["optimizer_d"] = self.optimizer_d.state_dict()
        save_training_checkpoint(self.out, self.step, self.model.state_dict(),
                                 self.ema.state_dict() if self.ema is not None else None,
                                 state, keep=self.t["keep_checkpoints"], params_d=params_d,
                                 config=self.model.config)

    def _after_write_failure(self, code: Optional[int]) -> str:
        """What to do after a file of the run could not be written (``code``: its errno), and
        where training resumes."""
        steps = list_steps(self.out)
        resume = (f"--resume continues from step {steps[-1]}" if steps
                  else "no step of this run was saved yet")
        todo = ("free some space on that disk" if code in FULL_DISK else "check that folder")
        return f"{todo} (or choose another output_dir); {resume}"

    def _write_error(self, exc: OSError) -> SaveError:
        """A one-line :class:`SaveError` for a failed write of the log or another run file."""
        where = exc.filename if exc.filename else self.out
        return SaveError(f"cannot write {where} ({exc.strerror or exc}); {self._after_write_failure(exc.errno)}",
                         exc.errno)

    def _save_after_crash(self, exc: BaseException) -> None:
        """Saves the last completed step before an unexpected error propagates (single
        process: the other ranks of a distributed run may be gone)."""
        if (isinstance(exc, (FloatingPointError, SaveError)) or self._updating or self.dist.enabled
                or (isinstance(exc, OSError) and exc.errno in FULL_DISK)  # a save would fail the same way
                or self.step <= max(self.saved_step, 0)):
            return
        print(f"error at step {self.step + 1}: {type(exc).__name__}; saving step {self.step} first "
              "(--resume continues from it)", file=sys.stderr)
        try:
            self.save()
        except Exception as again:  # noqa: BLE001 - the original error matters more
            print(f"warning: could not save step {self.step} ({again})", file=sys.stderr)

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> Dict[str, Any]:
        """Trains up to ``train.iters`` steps (or the time limit / a stop signal); returns a
        summary: final step, last validation PSNR, output folder, why it stopped and the
        signal number when a signal stopped it."""
        t = self.t
        if self.main:
            try:
                atomic_write_bytes(self.out / "config.yaml", dump_config(self.cfg).encode("utf-8"), overwrite=True)
                self.csv = CSVLog(self.out / "log.csv", resume_step=self.step if self.resume_from else None)
            except OSError as exc:
                raise self._write_error(exc) from None
            self.tb = TensorBoard(self.out / "tb", t["tensorboard"], purge_step=self.step or None)
        bar = self._progress()
        self._start = time.time()
        self.last_val: Optional[float] = None
        reason = "done"
        self.model.train()
        loader = batches = None
        try:
            if D.any_across(self.dist, self.stop.signal is not None):
                reason = "signal"  # before the first step: nothing trained, nothing to save
            else:
                loader = self._loader()
                batches = iter(loader)
                reason = self._loop(batches, bar)
        except BaseException as exc:
            self._save_after_crash(exc)
            if isinstance(exc, OSError):  # e.g. the disk filled up while writing the log
                raise self._write_error(exc) from None
            raise
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
        return {"step": self.step, "val_psnr": self.last_val, "output_dir": str(self.out), "reason": reason,
                "signal": self.stop.signal if reason == "signal" else None}

    def _loop(self, batches, bar) -> str:
        """The steps; returns why they stopped (``done``, ``time limit`` or ``signal``)."""
        t, cfg = self.t, self.cfg
        start = time.time()
        window = _Window()
        while self.step < t["iters"]:
            if self.stop.signal is not None and not self.dist.enabled:
                # a signal that came after the step's own check (during its checkpoint): no
                # further step (ranks of a distributed run agree on stopping after the next step)
                if self.saved_step != self.step:
                    self.save()
                return "signal"
            t0 = time.time()
            loss = self.train_step(_next_batch(batches, self.dataset))
            window.add(loss, time.time() - t0)
            if not math.isfinite(loss):
                raise FloatingPointError(f"the loss became {loss} at step {self.step}")
            step = self.step
            if bar is not None:
                bar.update(1)
                if step % 10 == 0 or step == t["iters"]:
                    bar.set_postfix(loss=f"{window.mean():.4g}", lr=f"{self.schedule(step - 1):.2e}")
            over_time = t["max_minutes"] > 0 and (time.time() - start) / 60 >= t["max_minutes"]
            stop = D.any_across(self.dist, over_time or self.stop.signal is not None)
            # the log row, then the checkpoint, then validation: a run killed during validation
            # resumes from this step with its log complete
            if step % t["log_every"] == 0 or step == t["iters"] or stop:
                mean = D.mean_across(self.dist, window.mean())
                if self.main:
                    self._log(step, mean, window.speed(), self.elapsed(), bar)
                window = _Window()
            if step % t["save_every"] == 0 or step == t["iters"] or stop:
                self.save()
            signalled = stop and not over_time
            if cfg["val"]["every"] and not signalled and (step % cfg["val"]["every"] == 0 or step == t["iters"]
                                                          or stop):
                val = self._timed_validation(bar)
                if val is not None and self.main:
                    self._log_validation(step, val, bar)
                if D.any_across(self.dist, self.stop.signal is not None):
                    if self.saved_step != step:
                        self.save()
                    stop, over_time = True, False
            if stop:
                return "time limit" if over_time else "signal"
        return "done"

    def _timed_validation(self, bar) -> Optional[float]:
        """Validation on rank 0 (the others wait); its time is kept out of the progress bar's rate."""
        t0 = time.time()
        val = None
        if self.main:
            try:
                val = self.validate()
            except _Interrupted:
                print(f"validation of step {self.step} interrupted by a signal", file=sys.stderr)
        D.barrier(self.dist)
        if val is not None:
            self.last_val = val
        if bar is not None:  # tqdm's rate (and so its ETA) without the validation time
            spent = time.time() - t0
            for attr in ("start_t", "last_print_t"):
                if hasattr(bar, attr):
                    setattr(bar, attr, getattr(bar, attr) + spent)
        return val

    def _progress(self):
        mode = self.t["progress"]
        if not self.main or mode == "off" or (mode == "auto" and not sys.stderr.isatty()):
            return None
        from tqdm import tqdm

        return tqdm(total=self.t["iters"], initial=self.step, unit="it", dynamic_ncols=True, smoothing=0.05)

    def _log(self, step: int, loss: float, its: float, elapsed: float, bar) -> None:
        lr = self.schedule(step - 1)
        self.csv.write(step=step, loss=loss, lr=lr, it_s=its, elapsed_s=elapsed)
        self.tb.scalars(step, {"train/loss": loss, "train/lr": lr, "train/it_s": its})
        if bar is None:
            left = (self.t["iters"] - step) / its if its > 0 else float("inf")
            eta = time.strftime("%H:%M:%S", time.gmtime(left)) if math.isfinite(left) and left < 8.64e6 else "?"
            print(f"step {step}/{self.t['iters']} loss {loss:.5g} lr {lr:.3g} {its:.3g} it/s eta {eta}", flush=True)

    def _log_validation(self, step: int, val: float, bar) -> None:
        """A log row of its own (step, PSNR), the line on the terminal, the plot."""
        m = self.val_metrics
        self.csv.write(step=step, val_psnr=val, elapsed_s=self.elapsed(), val_ssim=m.get("ssim"),
                       val_lpips=m.get("lpips"))
        self.tb.scalars(step, {"val/psnr": val, **{f"val/{k}": x for k, x in m.items()}})
        text = f"step {step}: validation PSNR {val:.3f} dB" + (f", SSIM {m['ssim']:.4f}" if "ssim" in m else "") \
            + (f", LPIPS {m['lpips']:.4f}" if "lpips" in m else "")
        if bar is None:
            print(text, flush=True)
        else:
            bar.write(text)
        self._plot()

    def _plot(self) -> None:
        if not self.t["plot"]:
            return
        from .plot import plot_log

        try:
            plot_log(self.out / "log.csv", self.out / "plot.png")
        except OSError as exc:
            print(f"note: could not draw the plot ({exc})", file=sys.stderr)


class _Window:
    """Loss and training time (validation and checkpoints excluded) since the last log line:
    the it/s and ETA count training steps only."""

    def __init__(self) -> None:
        self.loss, self.n, self.seconds = 0.0, 0, 0.0

    def add(self, loss: float, seconds: float) -> None:
        self.loss += loss
        self.n += 1
        self.seconds += seconds

    def mean(self) -> float:
        return self.loss / max(self.n, 1)

    def speed(self) -> float:
        return self.n / max(self.seconds, 1e-9)


def _next_batch(batches: Any, dataset: TrainDataset) -> Any:
    """The loader's next batch, with what its worker processes met reported as the main process
    reports it: the images they could not decode (once each), and an error as the worker raised
    it (one line), not with the loader's many-line wrapper."""
    try:
        return next(batches)
    except Exception as exc:
        original = worker_exception(exc)
        if original is None:
            raise
        raise original from None
    finally:  # before any error propagates: the warnings come first, as without workers
        dataset.report_failures()


def _short(exc: BaseException, limit: int = 120) -> str:
    """An exception's message on one line, at most ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _older_state(path: Path) -> str:
    """``; the previous state is …`` when ``path`` is a state of a run folder that holds an
    older one to resume instead; else empty."""
    m = STATE_RE.match(path.name)
    if not m or path.parent.name != "training_states":
        return ""
    older = [s for s in list_steps(path.parent.parent) if s < int(m.group(1))]
    return f"; the previous state is {state_path(path.parent.parent, older[-1])} (--resume it)" if older else ""


def _debug_signal(spec: str, step: int) -> Optional[int]:
    """``"TERM@10"`` → SIGTERM at step 10 (tests of signals during validation), else None."""
    if not spec:
        return None
    name, _, at = spec.partition("@")
    if not at.isdigit() or int(at) != step:
        return None
    return int(getattr(signal, "SIG" + name.upper()))


def _check_vgg_file(path: Optional[str]) -> None:
    """The GAN stage's VGG19 file must exist: a one-line error before anything is built."""
    hint = ("torchvision's vgg19 state dict, e.g. vgg19-dcbb9e9d.pth from download.pytorch.org/models "
            "(see docs/realworld_sr.md); it is never downloaded")
    if not path:
        raise ConfigError(f"gan.enabled needs train.vgg19_weights=FILE ({hint})")
    if not Path(path).is_file():
        raise ConfigError(f"train.vgg19_weights {path}: no such file ({hint})")


def _standard_gradient_strides(model: nn.Module) -> None:
    """Gradients of weights with size-1 dimensions (1×1 and depth-wise convolutions) can come
    with unusual strides on those dimensions; DDP then warns "grad strides do not match bucket
    view strides" (and copies). A hook gives them the parameter's standard layout."""
    for p in model.parameters():
        if p.requires_grad and 1 in p.shape and p.dim() > 1:
            p.register_hook(lambda g: g.clone(memory_format=torch.contiguous_format))


#: errno values that mean the disk (or the user's quota, or the file size limit) is full.
FULL_DISK = tuple(getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EFBIG") if hasattr(errno, n))
RESUME_KEYS = ("data.train_root", "data.train_lr_root", "model.variant", "model.scale", "model.overrides")


def lock_folder(folder: Path) -> Any:
    """An open lock file holding an exclusive ``flock`` on ``folder/.lock`` (closing it
    releases the lock).

    Raises:
        ConfigError: another process trains in ``folder``.
    """
    handle = open(folder / ".lock", "a+")
    try:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # no flock (Windows): no lock
        return handle
    except OSError:
        handle.seek(0)
        owner = handle.read().strip()
        handle.close()
        raise ConfigError(f"output folder {folder} is in use by another training run"
                          f"{f' (process {owner})' if owner else ''}; wait for it or choose another "
                          "output_dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def resume_differences(saved_config: Optional[str], cfg: Mapping[str, Any]) -> List[str]:
    """``["data.train_root: '/a' → '/b'", ...]``: the data and model settings that differ between
    the config a state was saved with (its YAML text) and ``cfg``."""
    import yaml

    from .config import load_yaml

    if not isinstance(saved_config, str) or not saved_config:
        return []
    try:
        old = load_yaml(saved_config, "the state's config")
    except (yaml.YAMLError, ConfigError):
        return []
    out = []
    for key in RESUME_KEYS:
        section, name = key.split(".")
        a = (old.get(section) or {}).get(name) if isinstance(old, dict) else None
        b = cfg[section][name]
        if key == "model.overrides":
            a, b = dict(a or {}), dict(b or {})
        if a != b:
            out.append(f"{key}: {a!r} → {b!r}")
    return out


def train(cfg: Mapping[str, Any], resume: Optional[str] = None, overwrite: bool = False) -> Dict[str, Any]:
    """Runs a training config (see :mod:`mambairv2.train.config`); ``resume``: None (new run),
    ``"auto"`` (newest state in the output folder, if any) or a run folder / state file;
    ``overwrite``: start a new run in a folder that holds another one. Leaves the process's
    flush-denormal mode on (``torch.set_flush_denormal(True)``; PyTorch cannot read it back)."""
    trainer = None
    try:
        trainer = Trainer(cfg, resume, overwrite)
        return trainer.run()
    finally:
        if trainer is not None:
            trainer.stop.restore()
            trainer.release()
        D.cleanup()
