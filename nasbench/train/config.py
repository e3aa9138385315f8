"""Typed training configuration: one dataclass, two presets, every field validated where it is set.

An error names the field, the rule and the value (the CLI spells a field as its flag: ``batch_size`` is
``--batch-size``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

from nasbench.errors import NasBenchError, check_choice
from nasbench.perplexity import Protocol

__all__ = ["STRATEGIES", "IMPORTANCE_STRATEGIES", "KD_LOSSES", "KD_TEACHERS", "PEFT_MODES", "PRECISIONS", "PRESETS",
           "TrainConfig", "make_config"]

#: How sub-networks are drawn each step (see :mod:`nasbench.train.strategies`).
STRATEGIES = ("standard", "random", "sandwich", "grid-params", "importance-standard", "importance-random",
              "importance-sandwich", "importance-grid-params", "importance-calibrate-mag")
#: Strategies that start from a sorted supernet directory and use its layer ranking.
IMPORTANCE_STRATEGIES = tuple(s for s in STRATEGIES if s.startswith("importance-"))
#: In-place distillation losses (see :mod:`nasbench.train.distill`); ``none`` trains on the LM loss only.
KD_LOSSES = ("none", "cosine", "kl", "reverse-kl", "jsd", "symmetric-kl", "mse")
#: ``lora``: peft LoRA adapters on every linear layer (the LM head too, unless it is tied); ``full``: every weight.
PEFT_MODES = ("lora", "full")
#: ``auto`` measures this CPU's (or GPU's) bf16 and fp32 matmul rates and picks (see :mod:`nasbench.precision`).
PRECISIONS = ("auto", "bf16-mixed", "fp32")
#: The distillation teacher: ``largest`` (in-place: the step's largest sub-network, trained on the LM loss) or
#: ``base`` (the starting model's full network, frozen: every sampled sub-network, the largest too, is a student).
KD_TEACHERS = ("largest", "base")


@dataclass
class TrainConfig:
    """Everything that determines a training run (with the seed, the space and the data)."""

    steps: int = 80
    """Optimizer steps of the run; the warmup + cosine schedule spans them (``--max-steps``)."""
    batch_size: int = 4
    """Sequences per micro-batch and process (``--batch-size``)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step; every sampled sub-network sees each of them."""
    seq_len: int = 256
    """Tokens per sequence (longer examples are truncated) (``--seq-len``)."""
    lr: float = 2e-4
    """Peak learning rate of AdamW."""
    min_lr_ratio: float = 0.1
    """The cosine decays to ``lr * min_lr_ratio``."""
    warmup_steps: int = 5
    """Linear warmup from 0 to ``lr``."""
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm (after all sub-networks of a step); ``None``: no clipping."""
    n_random: int = 2
    """``k``: the middle sub-networks per step of sandwich-type strategies (one per step for ``random``)."""
    grid_bins: int = 5
    """``K``: parameter bins of the grid strategies (:meth:`SearchSpace.grid`)."""
    grid_trials: int = 2_000
    """Rejection-sampling draws that fill the grid's bins."""
    calibrate_candidates: int = 16
    """``importance-calibrate-mag``: candidates scored per bin (the one with the largest mean |w| wins)."""
    kd_temperature: float = 1.0
    """Student and teacher logits are divided by it; divergences are scaled by its square."""
    kd_alpha: float = 0.5
    """Student loss ``(1 - alpha) * lm + alpha * kd``; the teacher (largest) trains on the LM loss only."""
    kd_teacher: str = "largest"
    """``largest`` (in-place distillation) or ``base`` (the frozen starting model; see :data:`KD_TEACHERS`)."""
    lora_r: int = 32
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    precision: str = "auto"
    """``bf16-mixed``: forward under ``torch.autocast(bfloat16)`` (trainable weights fp32; frozen linear weights are
    stored in bf16, which is what autocast would compute with anyway); ``fp32``: no autocast; ``auto``: bf16-mixed
    where this machine's bf16 matmuls are >= 1.5x its fp32 ones, else fp32 (measured at the start of the run)."""
    train_norms: bool = False
    """LoRA: also train the RMSNorm / LayerNorm weights (a few thousand values that rescale pruned activations)."""
    gradient_checkpointing: bool = False
    data_source: str = "finetune"
    """The space's ``data:`` source to train on (``instructions`` or ``text``)."""
    packing: bool = False
    """Instructions: pack examples into full ``seq_len`` rows instead of one padded example per row."""
    checkpoint_every: int = 20
    """Write a resumable checkpoint every N steps (and at the end) (``--checkpoint-every``)."""
    checkpoint_minutes: float = 10.0
    """... and whenever this many minutes of training passed since the last one (``--checkpoint-minutes``), so a
    kill loses at most that much work whatever a step costs."""
    eval_every: int = 0
    """Every N steps (and at the end), the recovery curve: perplexity of the probe archs (``eval_archs``, else the
    full model and the smallest sub-network) on the space's perplexity data, appended to ``out/curve.jsonl``; 0: off."""
    eval_tokens: int = Protocol.tokens
    """Tokens of the curve's perplexity (the project's protocol, :class:`~nasbench.perplexity.Protocol`: the first N
    tokens, windows of 512)."""
    eval_archs: str | None = None
    """A JSONL file of probe archs for the curve (``nasbench space sample`` lines or bare archs)."""
    keep_checkpoints: int = 2
    """Checkpoints kept on disk (the newest)."""
    stop_at: int | None = None
    """End this call after that many steps (checkpointed) without changing the schedule; ``resume`` continues."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "grid_bins", "grid_trials", "calibrate_candidates",
                     "lora_r", "checkpoint_every", "keep_checkpoints"):
            _int(self, name, minimum=1)
        _int(self, "seq_len", minimum=8)
        _int(self, "n_random", minimum=0)
        _int(self, "warmup_steps", minimum=0)
        _int(self, "lora_alpha", minimum=1)
        _int(self, "seed", minimum=0)
        if self.stop_at is not None:
            _int(self, "stop_at", minimum=1)
        for name, low, high in (("lr", 0.0, None), ("min_lr_ratio", 0.0, 1.0), ("weight_decay", 0.0, None),
                                ("kd_alpha", 0.0, 1.0), ("lora_dropout", 0.0, 0.999)):
            _number(self, name, low, high)
        if not (isinstance(self.kd_temperature, (int, float)) and self.kd_temperature > 0):
            raise NasBenchError("kd_temperature", "must be > 0", self.kd_temperature)
        if self.lr <= 0:
            raise NasBenchError("lr", "must be > 0", self.lr)
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise NasBenchError("max_grad_norm", "must be > 0 (or None: no clipping)", self.max_grad_norm)
        betas = tuple(self.betas)
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
            raise NasBenchError("betas", "must be two numbers in [0, 1)", self.betas)
        self.betas = (float(betas[0]), float(betas[1]))
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("kd_teacher", self.kd_teacher, KD_TEACHERS)
        _int(self, "eval_every", minimum=0)
        _int(self, "eval_tokens", minimum=16)
        if not (isinstance(self.checkpoint_minutes, (int, float)) and not isinstance(self.checkpoint_minutes, bool)
                and self.checkpoint_minutes > 0 and math.isfinite(self.checkpoint_minutes)):
            raise NasBenchError("checkpoint_minutes", "must be a finite number > 0", self.checkpoint_minutes)
        for name in ("gradient_checkpointing", "packing", "train_norms"):
            if not isinstance(getattr(self, name), bool):
                raise NasBenchError(name, "must be true or false", getattr(self, name))
        if not isinstance(self.data_source, str) or not self.data_source:
            raise NasBenchError("data_source", "must name a data: source of the space", self.data_source)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out


#: ``quick``: LoRA, sandwich k=2, 2 x 256 tokens, 80 steps: sized for <= 20 min on 2 CPU cores for SmolLM2-135M
#: (measured on a shared 2-core Xeon with OMP_NUM_THREADS=1: 11.8 s/step, i.e. ~16 min for 80 steps + ~20 s loading;
#: 4 x 256 took 30 s/step, too slow for 60+ steps). ``paper``: the seed's LoRA fine-tuning hyperparameters (litgpt's
#: Llama-3.1-8B LoRA recipe, which the seed's whittle code builds on: r=32, alpha=16, dropout 0.05, lr 2e-4, no weight
#: decay, 10 warmup steps, global batch 16, 512 tokens). The seed trains 2 epochs of Alpaca; on our 999-example
#: Alpaca-GPT4 demo set at global batch 16 that is ~125 steps (our choice where the seed states nothing).
PRESETS: dict[str, dict[str, Any]] = {
    "quick": dict(steps=80, batch_size=2, grad_accum=1, seq_len=256, lr=2e-4, warmup_steps=5, n_random=2,
                  lora_r=32, lora_alpha=16, lora_dropout=0.05, checkpoint_every=20),
    "paper": dict(steps=125, batch_size=4, grad_accum=4, seq_len=512, lr=2e-4, warmup_steps=10, weight_decay=0.0,
                  n_random=2, lora_r=32, lora_alpha=16, lora_dropout=0.05, checkpoint_every=25),
    # ``recovery``: Minitron-style recovery of the pruned sub-networks: logit distillation (kd="kl") from the frozen
    # starting model (kd_teacher=base, kd_alpha=1: KD only, no LM term, so the full model stays the pretrained one and
    # every ratio is to it) on plain text (the space's ``recovery`` source; never the perplexity corpus), rows of
    # 4 x 512 tokens, LoRA r=32 plus the norm weights, no dropout (a single pass over the data), the curve every 50
    # steps. ``steps`` sizes the cosine schedule: set it to what the machine can train (docs/training.md).
    "recovery": dict(steps=1000, batch_size=4, grad_accum=1, seq_len=512, lr=5e-4, warmup_steps=20, n_random=2,
                     grid_bins=5, lora_r=32, lora_alpha=32, lora_dropout=0.0, train_norms=True, kd_alpha=1.0,
                     kd_teacher="base", data_source="recovery", checkpoint_every=50, checkpoint_minutes=10.0,
                     eval_every=50),
}


def make_config(preset: str, **overrides: Any) -> TrainConfig:
    """The preset's config with ``overrides`` (``None`` values are ignored); unknown keys raise."""
    check_choice("preset", preset, PRESETS)
    known = {f.name for f in fields(TrainConfig)}
    values = dict(PRESETS[preset])
    for key, value in overrides.items():
        if key not in known:
            raise NasBenchError(key, f"unknown training option; known: {', '.join(sorted(known))}", value)
        if value is not None:
            values[key] = value
    return TrainConfig(**values)


def config_from_dict(values: Mapping[str, Any]) -> TrainConfig:
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: (tuple(v) if k == "betas" else v) for k, v in values.items() if k in known})


def _int(config: TrainConfig, name: str, minimum: int) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise NasBenchError(name, "must be an integer", value)
    if value < minimum:
        raise NasBenchError(name, f"must be >= {minimum}", value)


def _number(config: TrainConfig, name: str, low: float, high: float | None) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NasBenchError(name, "must be a number", value)
    if value < low or (high is not None and value > high):
        raise NasBenchError(name, f"must be in [{low}, {high if high is not None else 'inf'}]", value)
