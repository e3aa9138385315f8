"""One model distilled alone with a fixed token budget: a standalone sub-network (:func:`recover_arch`, the
``sliced-recovered`` baseline) or any pruned dense model (:func:`recover_model`: a SliceGPT or DSA baseline recovered
with the same budget).

The same recovery as the supernet's (the ``recovery`` preset of :mod:`nasbench.train.config`: forward-KL logit
distillation from the frozen full model, LoRA r=32 alpha 32 plus the norm weights, no dropout, rows of the space's
``recovery`` text, AdamW, linear warmup then a cosine to 10% of the peak rate), but every step trains the one arch:
the whole budget goes to a single model instead of being shared by the sub-networks a supernet step samples. The
step itself is the training loop's (:func:`nasbench.train.loop.run_picks` with one :class:`Pick`, the frozen teacher's
logits from :func:`~nasbench.train.loop.teacher_forward`), so the two differ in what is trained, not in how.

:func:`recover_model` runs the same loop on a dense model that is not a sub-network of the space (SliceGPT's rotated
and sliced model, DSA's per-layer widths): LoRA of the preset's rank on every linear layer (the LM head only when it
is not tied to the embedding; SliceGPT's residual shortcut matrices are linear layers too), plus the norm weights, each
step the frozen full model's logits as the target, then the adapters merged into the weights.

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

__all__ = ["Recovered", "recover_arch", "recover_model"]


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

    from nasbench.supernet import Supernet
    from nasbench.train.step import prepare_trainable, run_picks
    from nasbench.train.strategies import Pick

    config, data, mode = _setup(space, tokens, data_dir, tokenizer, seed, precision, batch_size, seq_len)
    supernet = Supernet(copy.deepcopy(sorted_model).float(), space)
    supernet, teacher = prepare_trainable(supernet, peft="lora", precision=mode, teacher=True, lora_r=config.lora_r,
                                          lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                          train_norms=config.train_norms)
    layers = {"layers": importance.layers_for(arch["n_layers"])} if importance and importance.layers else {}
    pick = [Pick("target", space.canonical(arch))]
    supernet.train()

    def step(batch: dict[str, torch.Tensor], logits: torch.Tensor) -> float:
        return run_picks(supernet, pick, batch, kd="kl", alpha=config.kd_alpha, temperature=config.kd_temperature,
                         precision=mode, importance=importance, teacher_logits=logits)[0]

    seen, loss, seconds = _distill(config, data, mode, teacher, supernet.model, step, progress)
    supernet.model.float()  # frozen linears were stored in bf16 for speed: extract (LoRA merged) in float32
    dense = supernet.extract(arch, **layers).float().eval()
    return Recovered(dense, seen, config.steps, seconds, mode, loss, config.to_dict())


def recover_model(space: SearchSpace, model: torch.nn.Module, teacher: torch.nn.Module, tokens: int, *,
                  data_dir: Path | None = None, tokenizer: Any = None, seed: int = 0, precision: str = "auto",
                  batch_size: int | None = None, seq_len: int | None = None, progress: bool = True) -> Recovered:
    """Distill a pruned dense ``model`` (left untouched) towards the frozen ``teacher`` (the space's full model) for
    ``tokens`` training tokens, with :func:`recover_arch`'s recipe, data and schedule (see the module docstring)."""
    import copy

    from peft import LoraConfig, get_peft_model

    from nasbench.train.distill import TeacherTargets
    from nasbench.train.step import autocast, frozen_linears_to_bf16, kd_loss

    config, data, mode = _setup(space, tokens, data_dir, tokenizer, seed, precision, batch_size, seq_len)
    student = copy.deepcopy(model).float()
    tied = {id(m.weight) for m in student.modules() if isinstance(m, torch.nn.Embedding)}
    targets = [name for name, m in student.named_modules()
               if isinstance(m, torch.nn.Linear) and id(m.weight) not in tied]
    student = get_peft_model(student, LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,
                                                 lora_dropout=config.lora_dropout, target_modules=targets,
                                                 bias="none"))
    if config.train_norms:  # the recipe's norm weights (RMSNorm / LayerNorm of any family), as the supernet's
        for module in student.modules():
            if "norm" in type(module).__name__.lower() and getattr(module, "weight", None) is not None:
                module.requires_grad_(True)
    frozen = copy.deepcopy(teacher).float().eval().requires_grad_(False)
    if mode == "bf16-mixed":
        for m in (student, frozen):
            frozen_linears_to_bf16(m)
    student.train()

    def step(batch: dict[str, torch.Tensor], logits: torch.Tensor) -> float:
        with autocast(batch["input_ids"].device.type, mode):
            out = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        targets = TeacherTargets(logits, config.kd_temperature, batch["attention_mask"].bool())  # as run_picks
        loss = kd_loss(out, batch, logits, kd="kl", alpha=config.kd_alpha, temperature=config.kd_temperature,
                       targets=targets)
        loss.backward()
        return float(loss.detach())

    seen, loss, seconds = _distill(config, data, mode, frozen, student, step, progress)
    dense = student.float().merge_and_unload().eval()
    return Recovered(dense, seen, config.steps, seconds, mode, loss, config.to_dict())


def _setup(space: SearchSpace, tokens: int, data_dir: Path | None, tokenizer: Any, seed: int, precision: str,
           batch_size: int | None, seq_len: int | None) -> tuple[Any, Any, str]:
    """(the recovery preset with ``ceil(tokens / (batch_size x seq_len))`` steps, its training data, the precision
    mode): the cosine schedule spans exactly the budget."""
    from nasbench.models import load_tokenizer
    from nasbench.precision import resolve_precision
    from nasbench.train.config import make_config
    from nasbench.train.data import build_data

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
    return config, data, resolve_precision(config.precision)


def _distill(config: Any, data: Any, mode: str, teacher: torch.nn.Module, trained: torch.nn.Module,
             step: Any, progress: bool) -> tuple[int, float, float]:
    """The recovery loop both functions share: per step the teacher's logits of the next rows, ``step(batch,
    logits)`` (forward + backward, returns the loss), clipping, AdamW and the loop's schedule (linear warmup, then
    a cosine to ``min_lr_ratio``). Returns (data tokens seen, the last loss, seconds)."""
    from tqdm.auto import tqdm

    from nasbench.train.step import teacher_forward

    params = [p for p in trained.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        done = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * done))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    seen, loss, start = 0, math.nan, time.perf_counter()
    for i in tqdm(range(config.steps), unit="step", desc="recover", disable=not progress):
        batch = data.batch(data.rows(i * config.batch_size, config.batch_size))
        seen += int(batch["attention_mask"].sum())
        loss = step(batch, teacher_forward(teacher, batch, mode))
        if config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return seen, float(loss), time.perf_counter() - start
