"""SparseGPT 2:4 (Frantar & Alistarh 2023, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot").

Per linear layer, with ``H = 2/n * X^T X`` over the calibration tokens' inputs: columns are visited left to right in
blocks of 128; at the start of every group of four columns the two weights of each row with the smallest
``w^2 / [H^-1]_jj^2`` are chosen for pruning, and the error of zeroing each column is pushed onto the columns not yet
visited through the Cholesky factor of ``H^-1`` (optimal brain surgeon updates), so the remaining weights compensate.
Dampening ``0.01 * mean(diag H)``, as the reference code. Blocks are pruned one after another on the outputs of the
already pruned blocks.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from nasbench.baselines._layerwise import prune_layerwise
from nasbench.errors import NasBenchError

__all__ = ["sparsegpt_weight", "sparsegpt_prune"]


@torch.no_grad()
def sparsegpt_weight(weight: torch.Tensor, gram: torch.Tensor, tokens: int, n: int = 2, m: int = 4,
                     block_size: int = 128, damp: float = 0.01) -> torch.Tensor:
    """The ``n``:``m``-pruned and compensated copy of ``weight`` (``[out, in]``, float32 result).

    ``gram`` is ``sum_t x_t^T x_t`` over ``tokens`` calibration inputs (``[in, in]``).
    """
    w = weight.detach().clone().float()
    cols = w.shape[1]
    if cols % m or block_size % m:
        raise NasBenchError("weight", f"input features and block size must be multiples of {m}", cols)
    h = gram.to(w.device).float() * (2.0 / max(tokens, 1))
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += torch.eye(cols, device=w.device) * damp * torch.mean(torch.diag(h))
    h_inv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    for lo in range(0, cols, block_size):
        hi = min(lo + block_size, cols)
        w1 = w[:, lo:hi].clone()
        q1 = torch.zeros_like(w1)
        err1 = torch.zeros_like(w1)
        hinv1 = h_inv[lo:hi, lo:hi]
        prune1 = torch.zeros_like(w1, dtype=torch.bool)
        for i in range(hi - lo):
            if i % m == 0:
                score = w1[:, i:i + m] ** 2 / torch.diag(hinv1)[i:i + m].reshape(1, -1) ** 2
                prune1.scatter_(1, i + torch.topk(score, n, dim=1, largest=False).indices, True)
            col = w1[:, i]
            q = col.clone()
            q[prune1[:, i]] = 0.0
            q1[:, i] = q
            e = (col - q) / hinv1[i, i]
            w1[:, i:] -= e.unsqueeze(1) @ hinv1[i, i:].unsqueeze(0)
            err1[:, i] = e
        w[:, lo:hi] = q1
        w[:, hi:] -= err1 @ h_inv[lo:hi, hi:]
    return w


@torch.no_grad()
def sparsegpt_prune(model: nn.Module, windows: torch.Tensor, n: int = 2, m: int = 4, batch_size: int = 4,
                    block_size: int = 128, progress: Callable[[int], Any] | None = None) -> nn.Module:
    """Prune ``model``'s decoder blocks to ``n``:``m`` in place with SparseGPT on ``windows`` (``[k, seq]``)."""

    def prune(linear: nn.Linear, gram: torch.Tensor, tokens: int) -> None:
        pruned = sparsegpt_weight(linear.weight, gram, tokens, n, m, block_size)
        linear.weight.copy_(pruned.to(linear.weight.dtype))

    prune_layerwise(model, windows, "gram", prune, batch_size=batch_size, progress=progress)
    return model
