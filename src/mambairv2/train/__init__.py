"""Training MambaIRv2: configuration, data, losses, EMA, checkpoints, distributed helpers and
the training loop behind ``mambairv2 train CONFIG.yaml``.

>>> from mambairv2.train import load_config, train
>>> cfg = load_config("quickstart_light_x2_cpu", ["train.iters=100"])
>>> train(cfg)
"""
from .config import ConfigError, load_config

__all__ = ["ConfigError", "load_config", "train"]


def train(cfg, resume=None):  # noqa: ANN001 - thin lazy wrapper (keeps ``import`` cheap)
    """Runs training for a loaded config (see :func:`mambairv2.train.trainer.train`)."""
    from .trainer import train as _train

    return _train(cfg, resume=resume)
