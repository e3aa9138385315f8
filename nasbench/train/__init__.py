"""Supernet fine-tuning: samplers, in-place distillation, elastic LoRA and the one fit loop.

- :mod:`~nasbench.train.config`: :class:`TrainConfig` and the ``quick`` / ``paper`` presets;
- :mod:`~nasbench.train.strategies`: the sub-network samplers (``standard``, ``random``, ``sandwich``,
  ``grid-params``, ``importance-*``);
- :mod:`~nasbench.train.distill`: the distillation losses;
- :mod:`~nasbench.train.lora`: peft LoRA whose adapters slice with the active sub-network;
- :mod:`~nasbench.train.data`: Alpaca / plain-text rows and their resumable order;
- :mod:`~nasbench.train.loop`: :func:`train`;
- :mod:`~nasbench.train.bench`: :func:`bench_train` (a sandwich step vs the same sub-networks trained dense).
"""

from nasbench.train.bench import bench_train
from nasbench.train.config import (IMPORTANCE_STRATEGIES, KD_LOSSES, PEFT_MODES, PRESETS, STRATEGIES, TrainConfig,
                                   make_config)
from nasbench.train.distill import distill_loss
from nasbench.train.lora import apply_lora, make_lora_elastic
from nasbench.train.loop import TrainResult, lm_loss, train
from nasbench.train.strategies import Pick, Sampler, make_sampler

__all__ = [
    "train",
    "TrainResult",
    "bench_train",
    "TrainConfig",
    "make_config",
    "PRESETS",
    "STRATEGIES",
    "IMPORTANCE_STRATEGIES",
    "KD_LOSSES",
    "PEFT_MODES",
    "distill_loss",
    "lm_loss",
    "apply_lora",
    "make_lora_elastic",
    "Pick",
    "Sampler",
    "make_sampler",
]
