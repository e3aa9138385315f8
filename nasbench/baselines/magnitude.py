"""Magnitude 2:4: in every group of four consecutive inputs of each row, zero the two weights of smallest |W|.

No calibration data: the seed's simplest baseline (Table 1, "Magnitude").
"""

from __future__ import annotations

import torch
from torch import nn

from nasbench.baselines._layerwise import apply_mask, decoder_layers, decoder_linears, n_m_mask

__all__ = ["magnitude_scores", "magnitude_prune"]


def magnitude_scores(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().abs().float()


@torch.no_grad()
def magnitude_prune(model: nn.Module, n: int = 2, m: int = 4) -> nn.Module:
    """Prune every linear layer of every decoder block to ``n``:``m`` sparsity in place; returns ``model``."""
    for layer in decoder_layers(model):
        for linear in decoder_linears(layer).values():
            apply_mask(linear, n_m_mask(magnitude_scores(linear.weight), n, m))
    return model
