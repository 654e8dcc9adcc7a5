"""What a training config will do, in words (``mambairv2 train CONFIG --dry-run``): model,
data, global batch and how it splits over ranks and accumulation steps, learning-rate
schedule, warm start, loss, EMA and validation."""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Mapping

from .config import ConfigError, accumulation, as_list, changed_fields, model_config, task_of

#: Process counts shown in the batch plan (the authors use 8 GPUs, 2 for the light models).
PLANNED_RANKS = (1, 2, 4, 8)


def _steps(n: int) -> str:
    return f"{n / 1000:g}k" if n >= 1000 else str(n)


def schedule_lines(t: Mapping[str, Any]) -> List[str]:
    """The learning rate over the run: ``2e-4 for steps 0–250k, 1e-4 until 400k, …``."""
    from .schedule import LRSchedule

    sched = LRSchedule.from_config(t)
    warm = f"linear warm-up over {t['warmup_iters']} steps, then " if t["warmup_iters"] else ""
    if t["scheduler"] == "multistep":
        edges = [m for m in sorted(t["milestones"]) if m < t["iters"]]
        parts, start = [], 0
        for end in edges + [t["iters"]]:
            parts.append(f"{sched(start):.3g} for steps {_steps(start)}–{_steps(end)}")
            start = end
        return [f"lr: {warm}MultiStepLR γ={t['gamma']:g}: " + ", ".join(parts)]
    if t["scheduler"] == "cosine":
        return [f"lr: {warm}cosine from {t['lr']:.3g} to {t['eta_min']:.3g} over {_steps(t['iters'])} steps"]
    return [f"lr: {warm}constant {t['lr']:.3g}"]


def batch_lines(cfg: Mapping[str, Any], world_size: int) -> List[str]:
    """The global batch and, per number of processes, micro-batch × accumulation steps."""
    d = cfg["data"]
    lines = [f"global batch: {d['batch_size']} patches per step"
             + (f" ({'recipe' if task_of(cfg) == 'realsr' else 'authors'}: "
                f"{d['batch_size'] // d['batch_per_gpu']} GPUs × {d['batch_per_gpu']})"
                if d["batch_per_gpu"] else "")]
    for n in sorted(set(PLANNED_RANKS) | {world_size}):
        try:
            accum, micro = accumulation(cfg, n)
            how = f"{micro} patches per micro-batch × {accum} accumulation step(s) per process"
        except ConfigError as exc:
            how = f"not possible ({exc})"
        here = "  <- this launch" if n == world_size else ""
        lines.append(f"  {n} process(es): {how}{here}")
    return lines


def warm_start_lines(cfg: Mapping[str, Any]) -> List[str]:
    m = cfg["model"]
    if not m["init_from"]:
        return ["warm start: none (random initialisation)"]
    exists = "" if Path(m["init_from"]).is_file() else "  [file not found yet]"
    mode = "strict (every tensor must match)" if m["init_strict"] else \
        "non-strict (every tensor whose name and shape match)"
    partial = "; another variant allowed (init_partial)" if m["init_partial"] else ""
    return [f"warm start: {m['init_from']}, {mode}{partial}{exists}"]


def realsr_lines(r: Mapping[str, Any]) -> List[str]:
    """The real-world degradations in two lines (every value: --print-config)."""
    def stage(n: str) -> str:
        return (f"blur p={1 if not n else r['second_blur_prob']:g} (sinc {r['sinc_prob' + n]:g}, σ {r['blur_sigma' + n]}), "
                f"resize up/down/keep {r['resize_prob' + n]} in {r['resize_range' + n]}, "
                f"Gaussian noise p={r['gaussian_noise_prob' + n]:g} σ {r['noise_range' + n]} else Poisson "
                f"{r['poisson_scale_range' + n]} (gray {r['gray_noise_prob' + n]:g}), JPEG {r['jpeg_range' + n]}")
    usm = "USM-sharpened" if r["gt_usm"] else "plain"
    return [f"degradations (Real-ESRGAN, per sample, on the training device; {usm} ground truth):",
            f"  1st: {stage('')}", f"  2nd: {stage('2')}",
            f"  last: resize to HR/scale + sinc p={r['final_sinc_prob']:g} and JPEG, in random order"
            + (f"; LR dumped every {r['dump_every']} steps" if r["dump_every"] else "")]


def gan_lines(cfg: Mapping[str, Any]) -> List[str]:
    """The GAN stage: discriminator, its optimizer, the losses and the VGG19 file."""
    g, t = cfg["gan"], cfg["train"]
    vgg = t["vgg19_weights"] or "(train.vgg19_weights not set)"
    missing = "  [file not found yet]" if t["vgg19_weights"] and not Path(t["vgg19_weights"]).is_file() else ""
    layers = ", ".join(f"{k} {v:g}" for k, v in g["perceptual_layers"].items())
    return [f"GAN stage: U-Net discriminator with spectral norm ({g['d_num_feat']} features"
            f"{', skip connections' if g['d_skip_connection'] else ''}); Adam lr {g['d_lr']:.3g} betas "
            f"{tuple(g['d_betas'])}, on the generator's schedule; checkpoints net_d_*.pth beside net_g_*.pth",
            f"losses: {g['pixel_weight']:g} × pixel + {g['perceptual_weight']:g} × VGG19 perceptual ({layers}) + "
            f"{g['gan_weight']:g} × vanilla GAN (discriminator sees the {'sharpened' if g['gan_gt_usm'] else 'plain'} "
            "ground truth)",
            f"VGG19 weights: {vgg}{missing}"]


def describe_plan(cfg: Mapping[str, Any], world_size: int = 1) -> str:
    """The resolved recipe as text (one item per line)."""
    from ..protocol.task import TaskSpec
    from .warmstart import describe

    mc, t, d, v = model_config(cfg), cfg["train"], cfg["data"], cfg["val"]
    task = task_of(cfg)
    level = {"sr": f"x{mc.upscale}", "realsr": f"x{mc.upscale}, real-world degradations",
             "denoise": f"sigma {d['noise_sigma']:g}", "jpeg": f"quality {d['jpeg_quality']}"}
    patch = (f"{d['patch_size']}px LR ({d['patch_size'] * mc.upscale}px HR)" if task in ("sr", "realsr")
             else f"{d['patch_size']}px")
    lines = [f"run: {cfg['name']} -> {cfg['output_dir']} (seed {cfg['seed']})",
             f"model: {describe(mc)} ({task} {level[task]})",
             f"data: {', '.join(as_list(d['train_root'])) or '(data.train_root not set)'}; patches {patch}; "
             f"flips {'on' if d['flip'] else 'off'}, rotations {'on' if d['rot90'] else 'off'}"]
    lines += batch_lines(cfg, world_size)
    lines += [f"steps: {t['iters']} ({_steps(t['iters'])}); Adam betas {tuple(t['betas'])}, "
              f"weight decay {t['weight_decay']:g}"]
    lines += schedule_lines(t)
    lines += warm_start_lines(cfg)
    if task == "realsr":
        lines += realsr_lines(cfg["realsr"])
    if cfg["gan"]["enabled"]:
        lines += gan_lines(cfg)
    loss = "L1" if t["loss"] == "l1" else f"Charbonnier (eps {t['charbonnier_eps']:g})"
    ema = f"EMA decay {t['ema_decay']:g}{' with warm-up' if t['ema_warmup'] else ''}" if t["ema_decay"] else "no EMA"
    lines.append(f"loss: {loss}; {ema}; precision {t['amp'] if t['amp'] != 'none' else 'float32'} (CUDA)")
    if v["root"] and v["every"]:
        task = "sr" if task == "realsr" else task
        spec = TaskSpec(task, scale=mc.upscale if task == "sr" else 1,
                        sigma=d["noise_sigma"] if task == "denoise" else None,
                        quality=d["jpeg_quality"] if task == "jpeg" else None)
        lines.append(f"validation: every {v['every']} steps on {v['root']} ({spec.describe()}, PSNR on "
                     f"{'gray' if spec.gray else spec.channels.upper()}, crop {spec.crop_border}, "
                     f"protocol {v['protocol']})")
    else:
        lines.append("validation: off")
    lines.append(f"checkpoints: every {t['save_every']} steps (keep {t['keep_checkpoints'] or 'all'})")
    lines.append("set apart from the defaults:")
    lines += [f"  {line}" for line in changed_fields(cfg)]
    return "\n".join(lines) + "\n"
