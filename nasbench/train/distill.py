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

from nasbench.errors import NasBenchError
from nasbench.train.config import KD_LOSSES

__all__ = ["KD_LOSSES", "distill_loss", "student_loss"]

_CHUNK = 1024  # tokens per chunk: bounds the float32 copies of [tokens, vocab]


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
    raise NasBenchError("--kd", f"must be one of {', '.join(KD_LOSSES)}", kind)


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
        sc = s[lo:lo + _CHUNK].float() / temperature
        tc = t[lo:lo + _CHUNK].float() / temperature
        total = total + per_token(sc, tc).sum()
    return total * scale / s.shape[0]


def student_loss(lm: torch.Tensor, kd: torch.Tensor, alpha: float) -> torch.Tensor:
    """``(1 - alpha) * lm + alpha * kd``: a student sub-network's loss."""
    return (1.0 - alpha) * lm + alpha * kd
