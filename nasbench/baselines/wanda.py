"""Wanda 2:4 (Sun et al. 2023, "A Simple and Effective Pruning Approach for Large Language Models").

A weight's score is its magnitude times the L2 norm of its input feature over the calibration tokens,
``|W_ij| * ||X_j||``; in every group of four consecutive inputs of a row the two lowest-scored weights are zeroed.
Blocks are pruned one after another on the outputs of the already pruned blocks, as the reference code does.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from nasbench.baselines._layerwise import apply_mask, n_m_mask, prune_layerwise

__all__ = ["wanda_scores", "wanda_prune"]


def wanda_scores(weight: torch.Tensor, input_sqnorm: torch.Tensor) -> torch.Tensor:
    """``|W| * ||X_j||``: ``weight`` is ``[out, in]``, ``input_sqnorm`` the per-input sum of squares over tokens.

    (Wanda's code divides the sum by the token count first; a constant factor leaves every mask unchanged.)
    """
    return weight.detach().abs().float() * input_sqnorm.to(weight.device).float().sqrt().unsqueeze(0)


@torch.no_grad()
def wanda_prune(model: nn.Module, windows: torch.Tensor, n: int = 2, m: int = 4, batch_size: int = 4,
                progress: Callable[[int], Any] | None = None) -> nn.Module:
    """Prune ``model``'s decoder blocks to ``n``:``m`` in place with Wanda scores from ``windows`` (``[k, seq]``)."""

    def prune(linear: nn.Linear, sqnorm: torch.Tensor, tokens: int) -> None:
        apply_mask(linear, n_m_mask(wanda_scores(linear.weight, sqnorm), n, m))

    prune_layerwise(model, windows, "sqnorm", prune, batch_size=batch_size, progress=progress)
    return model
