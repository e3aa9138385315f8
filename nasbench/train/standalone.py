"""One sliced model distilled alone with a fixed token budget: a standalone model (the ``sliced-recovered`` baseline).

The same recovery as the supernet's (the ``recovery`` preset of :mod:`nasbench.train.config`: forward-KL logit
distillation from the frozen full model, LoRA r=32 alpha 32 plus the norm weights, no dropout, rows of the space's
``recovery`` text, AdamW, linear warmup then a cosine to 10% of the peak rate), but every step trains the one arch:
the whole budget goes to a single model instead of being shared by the sub-networks a supernet step samples. The
step itself is the training loop's (:func:`nasbench.train.loop.run_picks` with one :class:`Pick`, the frozen teacher's
logits from :func:`~nasbench.train.loop.teacher_forward`), so the two differ in what is trained, not in how.

No checkpoints: a killed recovery restarts that model (each model's rows are resumable once it is trained and
saved under the work directory).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nasbench.errors import NasBenchError
from nasbench.importance import Importance
from nasbench.space import SearchSpace

__all__ = ["Recovered", "recover_arch"]


@dataclass(frozen=True)
class Recovered:
    model: Any
    """The dense HF model of the arch, LoRA merged (float32)."""
    tokens: int
    """Data tokens consumed (non-padding)."""
    steps: int
    seconds: float
    precision: str
    final_loss: float
    config: dict[str, Any]
    """The training config (the recovery preset with this run's steps)."""


def recover_arch(space: SearchSpace, sorted_model: torch.nn.Module, importance: Importance | None,
                 arch: dict[str, Any], tokens: int, *, data_dir: Path | None = None, tokenizer: Any = None,
                 seed: int = 0, precision: str = "auto", batch_size: int | None = None, seq_len: int | None = None,
                 progress: bool = True) -> Recovered:
    """Distill ``arch`` (sliced from ``sorted_model``, which is left untouched) for ``tokens`` training tokens.

    ``steps = ceil(tokens / (batch_size x seq_len))`` (the preset's 4 x 512 unless given): the cosine schedule spans
    exactly the budget, as the supernet's recovery run did with its own steps.
    """
    import copy

    from tqdm.auto import tqdm

    from nasbench.models import load_tokenizer
    from nasbench.supernet import Supernet
    from nasbench.train.config import make_config
    from nasbench.train.data import build_data
    from nasbench.train.loop import prepare_trainable, run_picks, teacher_forward
    from nasbench.precision import resolve_precision
    from nasbench.train.strategies import Pick

    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise NasBenchError("tokens", "the recovery budget must be an integer >= 1 (tokens per model)", tokens)
    probe = make_config("recovery", batch_size=batch_size, seq_len=seq_len)
    steps = math.ceil(tokens / (probe.batch_size * probe.seq_len))
    config = make_config("recovery", steps=steps, batch_size=batch_size, seq_len=seq_len, seed=seed,
                         precision=precision)
    torch.manual_seed(seed)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(space.model)
    data = build_data(space, tokenizer, source=config.data_source, seq_len=config.seq_len, data_dir=data_dir,
                      seed=config.seed)
    mode = resolve_precision(config.precision)
    supernet = Supernet(copy.deepcopy(sorted_model).float(), space)
    supernet, teacher = prepare_trainable(supernet, peft="lora", precision=mode, teacher=True, lora_r=config.lora_r,
                                          lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                          train_norms=config.train_norms)
    params = [p for p in supernet.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)

    def factor(step: int) -> float:  # the loop's schedule: linear warmup, then a cosine to min_lr_ratio
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        done = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * done))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    layers = {"layers": importance.layers_for(arch["n_layers"])} if importance and importance.layers else {}
    pick = [Pick("target", space.canonical(arch))]
    supernet.train()
    seen, loss, start = 0, math.nan, time.perf_counter()
    for step in tqdm(range(config.steps), unit="step", desc="recover", disable=not progress):
        rows = data.rows(step * config.batch_size, config.batch_size)
        batch = data.batch(rows)
        seen += int(batch["attention_mask"].sum())
        logits = teacher_forward(teacher, batch, mode)
        loss = run_picks(supernet, pick, batch, kd="kl", alpha=config.kd_alpha, temperature=config.kd_temperature,
                         precision=mode, importance=importance, teacher_logits=logits)[0]
        if config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - start
    supernet.model.float()  # frozen linears were stored in bf16 for speed: extract (LoRA merged) in float32
    dense = supernet.extract(arch, **layers).float().eval()
    return Recovered(dense, seen, config.steps, seconds, mode, float(loss), config.to_dict())
