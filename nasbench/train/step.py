"""One training step's pieces, shared by the fit loop, ``bench train`` and the GPU tools: the LM loss, the sampled
sub-networks' forward + backward on a batch (in-place or frozen-teacher distillation), the frozen teacher's forward,
and the supernet made trainable (LoRA or full, frozen linear weights in bf16 under ``bf16-mixed``).
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import torch

from nasbench.importance import Importance
from nasbench.supernet import Supernet
from nasbench.supernet.modules import ElasticLayerNorm, ElasticLinear, ElasticRMSNorm
from nasbench.train.data import IGNORE_INDEX
from nasbench.train.distill import TeacherTargets, distill_loss, kl_to_targets, student_loss, summed_cross_entropy
from nasbench.supernet.lora import apply_lora
from nasbench.train.strategies import Pick, sub_network_kwargs

__all__ = ["lm_loss", "kd_loss", "run_picks", "teacher_forward", "prepare_trainable", "frozen_linears_to_bf16",
           "loss_keys", "autocast"]


def autocast(device_type: str, precision: str) -> Any:
    """The forward's context under ``precision``: bf16 autocast for ``bf16-mixed``, nothing for ``fp32``."""
    if precision == "bf16-mixed":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross entropy (float32) over the labelled positions (``labels != -100``).

    Computed in chunks of tokens (:func:`~nasbench.train.distill.summed_cross_entropy`), so no float32 copy of the
    whole ``[tokens, vocab]`` logits is materialised."""
    shift = logits[:, :-1].reshape(-1, logits.shape[-1])
    target = labels[:, 1:].reshape(-1).to(logits.device)
    count = (target != IGNORE_INDEX).sum()
    return summed_cross_entropy(shift, target, IGNORE_INDEX) / count.clamp(min=1)


def run_picks(supernet: Supernet, picks: list[Pick], batch: dict[str, torch.Tensor], *, kd: str = "none",
              teacher_first: bool = False, temperature: float = 1.0, alpha: float = 0.5,
              precision: str = "bf16-mixed", importance: Importance | None = None, scale: float = 1.0,
              teacher_logits: torch.Tensor | None = None) -> list[float]:
    """Forward + backward of each pick on ``batch`` (gradients accumulate); returns each pick's loss.

    With ``teacher_first`` the first pick (the largest) trains on the LM loss and, unless ``kd == "none"``, its
    detached logits are the students' distillation target: ``(1 - alpha) * lm + alpha * kd``. With
    ``teacher_logits`` (a frozen teacher's logits of ``batch``) every pick is a student of those instead. Losses are
    multiplied by ``scale`` before ``backward`` (``1 / grad_accum``). The supernet is reset afterwards.
    """
    teacher: torch.Tensor | None = teacher_logits if kd != "none" else None
    mask = batch["attention_mask"].bool()
    targets: TeacherTargets | None = None
    out = []
    try:
        for i, pick in enumerate(picks):
            if pick.arch is None:
                supernet.reset()
            else:
                supernet.set_sub_network(pick.arch, **sub_network_kwargs(pick.arch, importance))
            with autocast(batch["input_ids"].device.type, precision):
                logits = supernet(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                  use_cache=False).logits
            if teacher_logits is None and teacher_first and i == 0:
                loss = lm_loss(logits, batch["labels"])
                if kd != "none":
                    teacher = logits.detach()
            elif teacher is not None:
                if targets is None and kd == "kl" and teacher_logits is not None:
                    targets = TeacherTargets(teacher, temperature, mask)  # once, for every student of the batch
                loss = kd_loss(logits, batch, teacher, kd=kd, alpha=alpha, temperature=temperature, targets=targets)
            else:
                loss = lm_loss(logits, batch["labels"])
            (loss * scale).backward()
            out.append(float(loss.detach()))
            del logits, loss
    finally:
        supernet.reset()
    return out


def kd_loss(logits: torch.Tensor, batch: dict[str, torch.Tensor], teacher: torch.Tensor, *, kd: str, alpha: float,
            temperature: float, targets: TeacherTargets | None = None) -> torch.Tensor:
    """A student's loss on ``batch`` against a teacher's logits: ``(1 - alpha) * lm + alpha * kd`` (``alpha`` 1:
    distillation only, without the LM term's second pass over the logits). ``targets``: the teacher's forward-KL
    targets prepared once per batch (:class:`~nasbench.train.distill.TeacherTargets`), else ``distill_loss``."""
    kd_term = (kl_to_targets(logits, targets) if targets is not None
               else distill_loss(logits, teacher, kd, temperature, mask=batch["attention_mask"].bool()))
    return kd_term if alpha >= 1.0 else student_loss(lm_loss(logits, batch["labels"]), kd_term, alpha)


def prepare_trainable(supernet: Supernet, *, peft: str, precision: str, teacher: bool = False, lora_r: int = 32,
                      lora_alpha: int = 16, lora_dropout: float = 0.0,
                      train_norms: bool = False) -> tuple[Supernet, torch.nn.Module | None]:
    """The supernet made trainable (``lora``: peft adapters, plus the norm weights with ``train_norms``; ``full``:
    every weight) and, with ``teacher``, a frozen copy of the starting model (taken before any adapter). Under
    ``bf16-mixed`` the frozen linear weights are stored in bf16: autocast would cast them at every forward to the
    same numbers; trainable weights stay fp32 (AdamW's updates need the mantissa)."""
    frozen = copy.deepcopy(supernet.hf_model).eval().requires_grad_(False) if teacher else None
    if peft == "lora":
        supernet = apply_lora(supernet, lora_r, lora_alpha, lora_dropout)
        if train_norms:
            for module in supernet.model.modules():
                if isinstance(module, (ElasticRMSNorm, ElasticLayerNorm)):
                    module.requires_grad_(True)
    else:
        for p in supernet.parameters():
            p.requires_grad_(True)
    if precision == "bf16-mixed":
        for model in (supernet.model, frozen):
            if model is not None:
                frozen_linears_to_bf16(model)
    return supernet, frozen


@torch.no_grad()
def teacher_forward(model: torch.nn.Module, batch: dict[str, torch.Tensor], precision: str) -> torch.Tensor:
    """A frozen teacher's logits of ``batch`` (in the autocast dtype when ``precision`` is ``bf16-mixed``)."""
    with autocast(batch["input_ids"].device.type, precision):
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits


@torch.no_grad()
def frozen_linears_to_bf16(model: torch.nn.Module) -> None:
    """Store the frozen weights of linear layers (elastic or dense) in bf16. A head tied to the token embedding keeps
    fp32 (casting it would cast the embedding, and with it the residual stream)."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    for module in model.modules():
        if (isinstance(module, torch.nn.Linear) and not module.weight.requires_grad
                and id(module.weight) not in embeddings):
            module.weight.data = module.weight.data.to(torch.bfloat16)
            if module.bias is not None and not module.bias.requires_grad:
                module.bias.data = module.bias.data.to(torch.bfloat16)
            if isinstance(module, ElasticLinear):
                module.clear_cache()


def loss_keys(picks: list[Pick]) -> list[str]:
    """One name per pick: its role, numbered when a role repeats (``random.1``, ``random.2``)."""
    roles = [p.role for p in picks]
    seen: dict[str, int] = {}
    keys = []
    for role in roles:
        seen[role] = seen.get(role, 0) + 1
        keys.append(f"{role}.{seen[role]}" if roles.count(role) > 1 else role)
    return keys
