"""What the 2:4 methods share: the decoder blocks' linear layers, the N:M mask, and one layer-by-layer pass.

The pass follows Wanda's and SparseGPT's reference code: the calibration windows' hidden states are caught at the
input of the first decoder block; for each block in turn, statistics of every linear layer's input are gathered in
one forward of the (not yet pruned) block, the block's linear layers are pruned, and the block is run again so that
the next block sees the outputs of the *pruned* one.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from nasbench.errors import NasBenchError, one_of
from nasbench.families import family_of_model_type

__all__ = ["decoder_layers", "decoder_linears", "n_m_mask", "apply_mask", "layer_inputs", "run_layer",
           "prune_layerwise", "nonzero_params", "dense_params"]

#: The statistics :func:`prune_layerwise` gathers per linear layer: ``sqnorm`` the squared L2 norm of each input
#: feature over all calibration tokens (Wanda), ``gram`` the sum of ``x^T x`` over tokens (SparseGPT's Hessian).
STATS = ("sqnorm", "gram")


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a llama or gpt_neox HF causal LM (module names from the family registry)."""
    family = family_of_model_type(getattr(model.config, "model_type", None), "the pruning baselines")
    return getattr(model, family.modules.base).layers


def decoder_linears(layer: nn.Module) -> dict[str, nn.Linear]:
    """Every ``nn.Linear`` inside one decoder block (attention and MLP projections), by name."""
    return {name: m for name, m in layer.named_modules() if isinstance(m, nn.Linear)}


def n_m_mask(scores: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """Boolean mask of the weights to *prune*: in every group of ``m`` consecutive inputs of a row (the layout of
    NVIDIA's semi-structured sparsity), the ``n`` with the lowest score. ``scores`` is ``[out, in]``."""
    rows, cols = scores.shape
    if cols % m:
        raise NasBenchError("weight", f"input features must be a multiple of {m} for {n}:{m} sparsity", cols)
    groups = scores.reshape(rows, cols // m, m)
    lowest = torch.topk(groups, n, dim=-1, largest=False).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, lowest, True)
    return mask.reshape(rows, cols)


@torch.no_grad()
def apply_mask(linear: nn.Linear, prune: torch.Tensor) -> None:
    linear.weight.masked_fill_(prune.to(linear.weight.device), 0.0)


class _Stop(Exception):
    """Raised by the pre-hook on the first block: the rest of the model is not needed to catch its inputs."""


@torch.no_grad()
def layer_inputs(model: nn.Module, windows: torch.Tensor, batch_size: int = 4) -> list[tuple[torch.Tensor, dict]]:
    """Per batch of calibration windows, the first decoder block's ``hidden_states`` and keyword arguments (position
    embeddings, mask, position ids) exactly as the model passes them."""
    caught: list[tuple[torch.Tensor, dict]] = []

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        kwargs = dict(kwargs)
        hidden = args[0] if args else kwargs.pop("hidden_states")
        caught.append((hidden.detach(), kwargs))
        raise _Stop

    handle = decoder_layers(model)[0].register_forward_pre_hook(hook, with_kwargs=True)
    device = next(model.parameters()).device
    try:
        for batch in windows.split(batch_size):
            try:
                model(input_ids=batch.to(device), use_cache=False)
            except _Stop:
                pass
    finally:
        handle.remove()
    return caught


def run_layer(layer: nn.Module, hidden: torch.Tensor, kwargs: dict) -> torch.Tensor:
    out = layer(hidden, **kwargs)
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def prune_layerwise(model: nn.Module, windows: torch.Tensor, stat: str,
                    prune: Callable[[nn.Linear, torch.Tensor, int], None], batch_size: int = 4,
                    progress: Callable[[int], Any] | None = None) -> None:
    """Prune every decoder block's linear layers in place, block by block (see the module docstring).

    ``prune(linear, statistic, n_tokens)`` gets the ``stat`` of that layer's input (:data:`STATS`) gathered over
    ``n_tokens`` calibration tokens; ``progress(i)`` is called after block ``i``.
    """
    if stat not in STATS:
        raise NasBenchError("stat", one_of(STATS), stat)
    inputs = layer_inputs(model, windows, batch_size)
    for index, layer in enumerate(decoder_layers(model)):
        linears = decoder_linears(layer)
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        shared: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # q/k/v (gate/up) read one tensor: compute once

        def hook(name: str) -> Callable:
            def gather(module: nn.Module, args: tuple, output: Any) -> None:
                x = args[0]
                if id(x) not in shared:
                    flat = x.detach().reshape(-1, x.shape[-1]).float()
                    shared[id(x)] = (x, (flat * flat).sum(0) if stat == "sqnorm" else flat.T @ flat)
                value = shared[id(x)][1]
                sums[name] = sums[name] + value if name in sums else value.clone()
                counts[name] = counts.get(name, 0) + x[..., 0].numel()
            return gather

        handles = [linear.register_forward_hook(hook(name)) for name, linear in linears.items()]
        try:
            for hidden, kwargs in inputs:
                run_layer(layer, hidden, kwargs)
                shared.clear()
        finally:
            for handle in handles:
                handle.remove()
        for name, linear in linears.items():
            prune(linear, sums.pop(name), counts[name])
        inputs = [(run_layer(layer, hidden, kwargs), kwargs) for hidden, kwargs in inputs]
        if progress is not None:
            progress(index)


def nonzero_params(model: nn.Module) -> int:
    """Non-zero entries over every parameter (shared ones counted once)."""
    return int(sum(int(torch.count_nonzero(p)) for p in model.parameters()))


def dense_params(model: nn.Module) -> int:
    """Every parameter entry, zeros included (shared ones counted once)."""
    return int(sum(p.numel() for p in model.parameters()))
