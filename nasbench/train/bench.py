"""``bench train``: the time of one sandwich step on the supernet against the sum of the same sub-networks' steps
as dense models (forward + backward + optimizer step each, on the models ``extract`` builds, with the same LoRA).

The ratio is what weight sharing costs per step: slicing, gathers and the shared optimizer against training each
sub-network as a plain HF model. Goal: ``ratio <= 1.15``. Inputs are random token ids (compute only, no data files);
times are medians over ``repeats`` steps after one warmup step.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from nasbench.errors import NasBenchError
from nasbench.space import SearchSpace, arch_id
from nasbench.supernet import Supernet
from nasbench.train.config import KD_LOSSES, PEFT_MODES
from nasbench.train.lora import apply_lora
from nasbench.train.loop import run_picks
from nasbench.train.strategies import Pick, SandwichSampler

__all__ = ["bench_train"]


def bench_train(space: SearchSpace, *, peft: str = "lora", kd: str = "cosine", batch_size: int = 2,
                seq_len: int = 128, n_random: int = 2, repeats: int = 3, seed: int = 0, precision: str = "bf16-mixed",
                lora_r: int = 32, lora_alpha: int = 16, supernet: Supernet | None = None) -> dict[str, Any]:
    """``{"bench": "train", "ratio": sandwich_s / sum(dense_s), ...}`` for largest + smallest + ``n_random`` random
    sub-networks of ``space`` (``supernet``: a plain, not yet LoRA-wrapped supernet to use instead of the base)."""
    if peft not in PEFT_MODES:
        raise NasBenchError("--peft", f"must be one of {', '.join(PEFT_MODES)}", peft)
    if kd not in KD_LOSSES:
        raise NasBenchError("--kd", f"must be one of {', '.join(KD_LOSSES)}", kd)
    for name, value in (("--batch-size", batch_size), ("--seq-len", seq_len), ("--repeats", repeats)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise NasBenchError(name, "must be an integer >= 1", value)
    torch.manual_seed(seed)
    supernet = supernet if supernet is not None else Supernet.from_space(space, dtype=torch.float32)
    picks = SandwichSampler(space, seed, n_random).step()
    dense = [_dense(supernet, p, peft, lora_r, lora_alpha) for p in picks]  # before the supernet gets adapters
    if peft == "lora":
        supernet = apply_lora(supernet, lora_r, lora_alpha, dropout=0.0)
    else:
        for p in supernet.parameters():
            p.requires_grad_(True)
    supernet.train()
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(space.reference.vocab_size, (batch_size, seq_len), generator=generator)
    batch = {"input_ids": ids, "labels": ids, "attention_mask": torch.ones_like(ids)}
    optimizer = _optimizer(supernet)

    def sandwich_step() -> None:
        run_picks(supernet, picks, batch, kd=kd, teacher_first=True, precision=precision)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    sandwich_s = _median_time(sandwich_step, repeats)
    teacher = _teacher_logits(dense[0][0], batch, precision) if kd != "none" else None
    dense_s = []
    for i, (model, opt) in enumerate(dense):
        def dense_step(model: torch.nn.Module = model, opt: torch.optim.Optimizer = opt, student: bool = i > 0) -> None:
            from nasbench.train.distill import distill_loss, student_loss
            from nasbench.train.loop import lm_loss

            with _autocast(precision):
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                               use_cache=False).logits
            loss = lm_loss(logits, batch["labels"])
            if student and teacher is not None:
                loss = student_loss(loss, distill_loss(logits, teacher, kd), 0.5)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        dense_s.append(_median_time(dense_step, repeats))
    total = sum(dense_s)
    return {"bench": "train", "ratio": sandwich_s / total, "goal": 1.15, "sandwich_s": sandwich_s,
            "dense_s": dense_s, "dense_sum_s": total, "archs": [arch_id(p.arch) for p in picks],
            "roles": [p.role for p in picks], "params": [space.params(p.arch) for p in picks], "peft": peft, "kd": kd,
            "batch_size": batch_size, "seq_len": seq_len, "precision": precision, "repeats": repeats,
            "threads": torch.get_num_threads()}


def _dense(supernet: Supernet, pick: Pick, peft: str, r: int, alpha: int) -> tuple[Any, torch.optim.Optimizer]:
    model = supernet.extract(pick.arch)
    if peft == "lora":
        from peft import LoraConfig, get_peft_model

        tied = bool(getattr(model.config, "tie_word_embeddings", False))
        head = model.get_output_embeddings()
        targets = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and not (tied and m is head)]
        model = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets))
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    model.train()
    return model, _optimizer(model)


def _optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)


def _autocast(precision: str) -> Any:
    import contextlib

    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16-mixed" else contextlib.nullcontext()


@torch.no_grad()
def _teacher_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor], precision: str) -> torch.Tensor:
    with _autocast(precision):
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits


def _median_time(fn: Any, repeats: int) -> float:
    fn()  # warmup: allocations, gather caches, optimizer state
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
