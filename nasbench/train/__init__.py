"""Supernet fine-tuning: samplers, in-place distillation, elastic LoRA and the one fit loop.

- :mod:`~nasbench.train.config`: :class:`TrainConfig` and the ``quick`` / ``paper`` presets;
- :mod:`~nasbench.train.strategies`: the sub-network samplers (``standard``, ``random``, ``sandwich``,
  ``grid-params``, ``importance-*``);
- :mod:`~nasbench.train.distill`: the distillation losses;
- :mod:`~nasbench.train.data`: Alpaca / plain-text rows and their resumable order;
- :mod:`~nasbench.train.step`: one step's pieces (LM loss, the picks' forward + backward, the frozen teacher, the
  trainable supernet);
- :mod:`~nasbench.train.parallel`: data parallel over processes;
- :mod:`~nasbench.train.checkpoint`: a run's files (``train.json``, resumable checkpoints, the curve's name);
- :mod:`~nasbench.train.curve`: the recovery curve;
- :mod:`~nasbench.train.loop`: :func:`train`, the driver;
- :mod:`~nasbench.train.standalone`: :func:`recover_arch`, one sub-network distilled alone with a token budget;
  :func:`recover_model`, any pruned dense model (SliceGPT, DSA) distilled the same way.

The speed of a training step is measured by :func:`nasbench.bench.bench_train`.
"""

from __future__ import annotations

from nasbench.lazy import lazy_getattr
from nasbench.train.config import (IMPORTANCE_STRATEGIES, KD_LOSSES, PEFT_MODES, PRESETS, STRATEGIES, TrainConfig,
                                   make_config)

# torch-heavy modules load on first use: the CLI reads the strategy names from config without importing torch
_LAZY = {
    "distill_loss": "nasbench.train.distill",
    "TrainResult": "nasbench.train.loop",
    "lm_loss": "nasbench.train.loop",
    "train": "nasbench.train.loop",
    "Pick": "nasbench.train.strategies",
    "Recovered": "nasbench.train.standalone",
    "recover_arch": "nasbench.train.standalone",
    "recover_model": "nasbench.train.standalone",
    "Sampler": "nasbench.train.strategies",
    "make_sampler": "nasbench.train.strategies",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "train",
    "TrainResult",
    "TrainConfig",
    "make_config",
    "PRESETS",
    "STRATEGIES",
    "IMPORTANCE_STRATEGIES",
    "KD_LOSSES",
    "PEFT_MODES",
    "distill_loss",
    "lm_loss",
    "Pick",
    "Recovered",
    "recover_arch",
    "recover_model",
    "Sampler",
    "make_sampler",
]
