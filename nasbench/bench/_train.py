"""``nasbench bench train``: how fast one sandwich step runs, against this machine's own matmul rate, and what weight
sharing costs against training the same sub-networks as dense models.

- ``tokens_per_s``: data tokens of one step (``batch_size x seq_len``, each seen by every sampled sub-network and
  by the frozen teacher) over the step's wall clock (teacher forward + every student's forward and backward +
  AdamW), as the recovery run trains.
- ``utilization``: the step's model FLOPs over its time, as a share of the measured matmul rate in the step's
  precision (:func:`nasbench.precision.matmul_rate`). Model FLOPs per token come from the space's formula
  (:meth:`SearchSpace.training_flops`): a student's forward and LoRA backward are ``2F + A`` (``A``: attention's
  share of ``F``, whose backward takes both operands' gradients; the adapters' own are < 10%), with every weight
  trained ``3F``; the teacher runs one forward of the full model. Goal >= 40%.
- ``ratio``: the students' part of the step on the supernet over the sum of the same sub-networks' steps as dense
  models (``extract``), same LoRA and loss (goal <= 1.15): slicing and the shared optimizer against plain HF models.

Inputs are random token ids (compute only, no data files); times are medians over ``repeats`` steps after one
warm-up step.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from nasbench.allocator import freed_memory_kept
from nasbench.errors import NasBenchError, check_choice
from nasbench.precision import matmul_rate, resolve_precision
from nasbench.space import SearchSpace, arch_id
from nasbench.supernet import Supernet
from nasbench.train.config import KD_LOSSES, PEFT_MODES, PRECISIONS
from nasbench.train.distill import TeacherTargets, distill_loss, kl_to_targets
from nasbench.train.step import autocast, frozen_linears_to_bf16, lm_loss, prepare_trainable, run_picks, teacher_forward
from nasbench.train.strategies import Pick, SandwichSampler

__all__ = ["bench_train"]


def bench_train(space: SearchSpace, *, peft: str = "lora", kd: str = "kl", batch_size: int = 4, seq_len: int = 512,
                n_random: int = 2, repeats: int = 3, seed: int = 0, precision: str = "auto", lora_r: int = 32,
                lora_alpha: int = 32, dense: bool = True, supernet: Supernet | None = None) -> dict[str, Any]:
    """One JSON-able dict of figures (see the module docstring) for largest + smallest + ``n_random`` random
    sub-networks of ``space`` distilled from the frozen full model (``kd="none"``: LM loss, no teacher).
    ``supernet``: a plain, not yet LoRA-wrapped supernet to use instead of the base model."""
    check_choice("peft", peft, PEFT_MODES)
    check_choice("kd", kd, KD_LOSSES)
    check_choice("precision", precision, PRECISIONS)
    for name, value in (("batch_size", batch_size), ("seq_len", seq_len), ("repeats", repeats)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise NasBenchError(name, "must be an integer >= 1", value)
    precision = resolve_precision(precision)
    with freed_memory_kept():  # as the training loop's steps on a CPU
        return _bench_train(space, peft=peft, kd=kd, batch_size=batch_size, seq_len=seq_len, n_random=n_random,
                            repeats=repeats, seed=seed, precision=precision, lora_r=lora_r, lora_alpha=lora_alpha,
                            dense=dense, supernet=supernet)


def _bench_train(space: SearchSpace, *, peft: str, kd: str, batch_size: int, seq_len: int, n_random: int,
                 repeats: int, seed: int, precision: str, lora_r: int, lora_alpha: int, dense: bool,
                 supernet: Supernet | None) -> dict[str, Any]:
    rate = matmul_rate(torch.bfloat16 if precision == "bf16-mixed" else torch.float32) * 1e9
    torch.manual_seed(seed)
    supernet = supernet if supernet is not None else Supernet.from_space(space, dtype=torch.float32)
    picks = SandwichSampler(space, seed, n_random).step()
    models = [_dense(supernet, p, peft, lora_r, lora_alpha, precision) for p in picks] if dense else []
    supernet, teacher = prepare_trainable(supernet, peft=peft, precision=precision, teacher=kd != "none",
                                          lora_r=lora_r, lora_alpha=lora_alpha)
    supernet.train()
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(space.reference.vocab_size, (batch_size, seq_len), generator=generator)
    batch = {"input_ids": ids, "labels": ids, "attention_mask": torch.ones_like(ids)}
    optimizer = _optimizer(supernet)
    logits: list[torch.Tensor] = []

    def teacher_step() -> None:
        logits[:] = [teacher_forward(teacher, batch, precision)] if teacher is not None else []

    def students_step() -> None:
        run_picks(supernet, picks, batch, kd=kd, precision=precision, teacher_logits=logits[0] if logits else None,
                  alpha=1.0 if logits else 0.5)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    teacher_s = _median_time(teacher_step, repeats) if teacher is not None else 0.0
    students_s = _median_time(students_step, repeats)
    step_s = teacher_s + students_s
    tokens = batch_size * seq_len
    flops = tokens * (sum(space.training_flops(p.arch, seq_len, peft) for p in picks)
                      + (space.flops(space.largest(), seq_len) if teacher is not None else 0))
    out: dict[str, Any] = {
        "bench": "train", "tokens_per_s": tokens / step_s, "utilization": flops / step_s / rate, "goal": 0.40,
        "step_s": step_s, "teacher_s": teacher_s, "students_s": students_s, "model_tflop_per_step": flops / 1e12,
        "matmul_gflop_s": rate / 1e9, "precision": precision, "archs": [arch_id(p.arch) for p in picks],
        "roles": [p.role for p in picks], "params": [space.params(p.arch) for p in picks], "peft": peft, "kd": kd,
        "batch_size": batch_size, "seq_len": seq_len, "repeats": repeats, "threads": torch.get_num_threads()}
    if dense:
        target = logits[0] if logits else None
        dense_s = [_median_time(lambda m=m, o=o: _dense_step(m, o, batch, kd, target, precision), repeats)
                   for m, o in models]
        out.update(ratio=students_s / sum(dense_s), ratio_goal=1.15, dense_s=dense_s, dense_sum_s=sum(dense_s))
    return out


def _dense(supernet: Supernet, pick: Pick, peft: str, r: int, alpha: int, precision: str) -> tuple[Any, Any]:
    model = supernet.extract(pick.arch)
    if peft == "lora":
        from peft import LoraConfig, get_peft_model

        tied = bool(getattr(model.config, "tie_word_embeddings", False))
        head = model.get_output_embeddings()
        targets = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and not (tied and m is head)]
        model = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets))
        if precision == "bf16-mixed":  # as the supernet: frozen linear weights stored in bf16
            frozen_linears_to_bf16(model)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    model.train()
    return model, _optimizer(model)


def _dense_step(model: Any, optimizer: Any, batch: dict[str, torch.Tensor], kd: str, teacher: torch.Tensor | None,
                precision: str) -> None:
    with autocast(batch["input_ids"].device.type, precision):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    if teacher is not None:
        loss = (kl_to_targets(logits, TeacherTargets(teacher)) if kd == "kl"
                else distill_loss(logits, teacher, kd))
    else:
        loss = lm_loss(logits, batch["labels"])
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)


def _median_time(fn: Any, repeats: int) -> float:
    fn()  # warmup: allocations, gather caches, optimizer state
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
