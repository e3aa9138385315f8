"""In-place distillation losses: a student sub-network's logits against the largest sub-network's (the teacher).

Every loss is per token over the vocabulary, averaged over the selected tokens, computed in float32, zero for
identical logits and positive otherwise. Logits are divided by the temperature ``T`` first; the divergences
(``kl``, ``reverse-kl``, ``jsd``, ``symmetric-kl``) are multiplied by ``T**2`` (Hinton's scaling, so gradients keep
their size across temperatures). ``cosine`` (the seed's best) is ``1 - cos(student, teacher)`` of the logit vectors
and ``mse`` the mean squared difference of the (tempered) logits.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from nasbench.errors import NasBenchError, one_of
from nasbench.perplexity import logit_rows
from nasbench.train.config import KD_LOSSES

__all__ = ["KD_LOSSES", "distill_loss", "student_loss", "TeacherTargets", "kl_to_targets", "summed_cross_entropy"]

#: Tokens per chunk of the autograd-traced losses (:func:`distill_loss`): bounds their float32 copies of
#: ``[tokens, vocab]``. Not smaller: autograd's backward of each chunk's slice writes a full-size gradient.
_CHUNK = 512


def _rows(t: torch.Tensor) -> int:
    """Tokens per chunk of the hand-written passes (:class:`TeacherTargets`, :class:`_KLFromTargets`,
    :class:`_CrossEntropySum`). On a 2-core EPYC the teacher's targets fell from 1.40 s to 0.14 s and a student's KL
    forward + backward from 1.26 s to 0.16 s (2,048 tokens, 16-row against 512-row chunks; the same loss)."""
    return logit_rows(t.device)


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row from log-probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def _per_token(kind: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if kind == "cosine":
        return lambda s, t: 1.0 - F.cosine_similarity(s, t, dim=-1)
    if kind == "mse":
        return lambda s, t: (s - t).pow(2).mean(-1)
    if kind == "kl":
        return lambda s, t: _kl(F.log_softmax(t, -1), F.log_softmax(s, -1))
    if kind == "reverse-kl":
        return lambda s, t: _kl(F.log_softmax(s, -1), F.log_softmax(t, -1))
    if kind == "symmetric-kl":
        def symmetric(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            ls, lt = F.log_softmax(s, -1), F.log_softmax(t, -1)
            return 0.5 * (_kl(lt, ls) + _kl(ls, lt))
        return symmetric
    if kind == "jsd":
        def jsd(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            ls, lt = F.log_softmax(s, -1), F.log_softmax(t, -1)
            log_m = torch.logsumexp(torch.stack([ls, lt]), 0) - torch.log(torch.tensor(2.0, device=s.device))
            return 0.5 * (_kl(ls, log_m) + _kl(lt, log_m))
        return jsd
    raise NasBenchError("kd", one_of(KD_LOSSES), kind)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str, temperature: float = 1.0,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean per-token distillation loss of ``student`` logits against ``teacher`` logits (``[..., vocab]``).

    ``mask`` (``[...]``, bool) selects the tokens; the teacher is detached. ``kind == "none"`` returns 0.
    """
    if kind == "none":
        return student.new_zeros((), dtype=torch.float32)
    if student.shape != teacher.shape:
        raise NasBenchError("teacher", f"logits must have the student's shape {tuple(student.shape)}",
                            tuple(teacher.shape))
    per_token = _per_token(kind)
    s = student.reshape(-1, student.shape[-1])
    t = teacher.detach().reshape(-1, teacher.shape[-1])
    if mask is not None:
        keep = mask.reshape(-1).to(s.device)
        s, t = s[keep], t[keep]
    if s.shape[0] == 0:
        return student.new_zeros((), dtype=torch.float32) * student.sum()
    scale = temperature ** 2 if kind in ("kl", "reverse-kl", "jsd", "symmetric-kl") else 1.0
    total = s.new_zeros((), dtype=torch.float32)
    for lo in range(0, s.shape[0], _CHUNK):
        sc, tc = s[lo:lo + _CHUNK].float(), t[lo:lo + _CHUNK].float()
        if temperature != 1.0:
            sc, tc = sc / temperature, tc / temperature
        total = total + per_token(sc, tc).sum()
    return total * scale / s.shape[0]


def student_loss(lm: torch.Tensor, kd: torch.Tensor, alpha: float) -> torch.Tensor:
    """``(1 - alpha) * lm + alpha * kd``: a student sub-network's loss."""
    return (1.0 - alpha) * lm + alpha * kd


class TeacherTargets:
    """A frozen teacher's tempered distribution over the vocabulary, computed once per batch and shared by every
    student of the step: probabilities (bf16, ``[tokens, vocab]``) and their negative entropy (float32)."""

    def __init__(self, teacher_logits: torch.Tensor, temperature: float = 1.0, mask: torch.Tensor | None = None):
        t = teacher_logits.detach().reshape(-1, teacher_logits.shape[-1])
        keep = None if mask is None else mask.reshape(-1).to(t.device)
        # an all-true mask (packed rows) selects nothing: skip the copy of [tokens, vocab] that indexing makes
        self.keep = None if keep is None or bool(keep.all()) else keep
        if self.keep is not None:
            t = t[self.keep]
        self.temperature = temperature
        probs, neg_entropy = [], []
        n = _rows(t)
        for lo in range(0, t.shape[0], n):
            tc = t[lo:lo + n].float()
            log_p = F.log_softmax(tc / temperature if temperature != 1.0 else tc, -1)
            p = log_p.exp()
            neg_entropy.append((p * log_p).sum(-1))
            probs.append(p.to(torch.bfloat16))
        self.probs = torch.cat(probs) if probs else t.new_zeros((0, t.shape[-1]), dtype=torch.bfloat16)
        self.neg_entropy = torch.cat(neg_entropy) if neg_entropy else t.new_zeros((0,), dtype=torch.float32)


class _KLFromTargets(torch.autograd.Function):
    """Sum over tokens of ``KL(p || softmax(s))`` = ``sum p log p - p.s + logsumexp(s)``, chunked; the backward
    recomputes ``softmax(s) - p`` chunk by chunk, so no ``[tokens, vocab]`` float32 tensor is kept between the two."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, probs: torch.Tensor, neg_entropy: torch.Tensor) -> torch.Tensor:
        lse = torch.empty(s.shape[0], dtype=torch.float32, device=s.device)
        total = torch.zeros((), dtype=torch.float64, device=s.device)
        n = _rows(s)
        for lo in range(0, s.shape[0], n):
            sc = s[lo:lo + n].float()
            lse[lo:lo + n] = torch.logsumexp(sc, -1)
            dot = (probs[lo:lo + n].float() * sc).sum(-1)
            total += (neg_entropy[lo:lo + n] - dot + lse[lo:lo + n]).double().sum()
        ctx.save_for_backward(s, probs, lse)
        return total.float()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        s, probs, lse = ctx.saved_tensors
        out = torch.empty_like(s)
        n = _rows(s)
        for lo in range(0, s.shape[0], n):
            g = torch.exp(s[lo:lo + n].float() - lse[lo:lo + n, None]) - probs[lo:lo + n].float()
            out[lo:lo + n] = (g * grad).to(s.dtype)
        return out, None, None


def kl_to_targets(student: torch.Tensor, targets: TeacherTargets) -> torch.Tensor:
    """Mean per-token ``T**2 * KL(teacher || student)`` against precomputed :class:`TeacherTargets` (the ``kl`` loss
    of :func:`distill_loss`, up to the bf16 rounding of the teacher's probabilities, at a fraction of its cost)."""
    s = student.reshape(-1, student.shape[-1])
    if targets.keep is not None:
        s = s[targets.keep]
    if s.shape[0] == 0:
        return student.new_zeros((), dtype=torch.float32) * student.sum()
    if s.shape != targets.probs.shape:
        raise NasBenchError("teacher", f"targets must have the student's shape {tuple(s.shape)}",
                            tuple(targets.probs.shape))
    T = targets.temperature
    total = _KLFromTargets.apply(s / T if T != 1.0 else s, targets.probs, targets.neg_entropy)
    return total * (T ** 2) / s.shape[0]


class _CrossEntropySum(torch.autograd.Function):
    """Sum over the labelled rows of ``logsumexp(s) - s[target]`` (float32), chunked like :class:`_KLFromTargets`:
    the backward recomputes ``softmax(s) - onehot(target)`` chunk by chunk instead of keeping a float32
    log-softmax of ``[tokens, vocab]`` (and without autograd's full-size gradient per chunk)."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
        lse = torch.empty(s.shape[0], dtype=torch.float32, device=s.device)
        valid = target != ignore_index
        safe = torch.where(valid, target, torch.zeros_like(target))
        total = torch.zeros((), dtype=torch.float64, device=s.device)
        n = _rows(s)
        for lo in range(0, s.shape[0], n):
            sc = s[lo:lo + n].float()
            lse[lo:lo + n] = torch.logsumexp(sc, -1)
            picked = sc.gather(1, safe[lo:lo + n, None])[:, 0]
            total += ((lse[lo:lo + n] - picked) * valid[lo:lo + n]).double().sum()
        ctx.save_for_backward(s, safe, valid, lse)
        return total.float()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        s, safe, valid, lse = ctx.saved_tensors
        out = torch.empty_like(s)
        weight = (valid * grad).float()[:, None]  # 0 on the ignored rows
        n = _rows(s)
        for lo in range(0, s.shape[0], n):
            g = torch.exp(s[lo:lo + n].float() - lse[lo:lo + n, None])
            g.scatter_add_(1, safe[lo:lo + n, None], torch.full_like(g[:, :1], -1.0))
            out[lo:lo + n] = g.mul_(weight[lo:lo + n])
        return out, None, None


def summed_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Sum of the next-token cross entropy (float32) of ``logits`` (``[tokens, vocab]``) against ``target``
    (``[tokens]``) over the rows whose target is not ``ignore_index``: ``F.cross_entropy(logits.float(), target,
    reduction="sum")`` in cache-sized chunks."""
    if logits.shape[0] != target.shape[0]:
        raise NasBenchError("target", f"must have one label per row of the logits ({logits.shape[0]})",
                            tuple(target.shape))
    return _CrossEntropySum.apply(logits, target.to(logits.device), ignore_index)
