"""Elastic layers: drop-in subclasses of the torch / HF layers whose active part is set by ``set_sub_network``.

Each layer keeps its full parameters; ``set_sub_network`` records which rows / columns / channels are active and
``reset_super_network`` makes everything active again. A selection is an :data:`Index`: an ``int`` ``n`` (the first
``n`` entries, a strided view of the weight) or a 1-D ``LongTensor`` of indices (any order, a gather).

Activating a sub-network copies no weight. A forward slices views (prefixes) or gathers (index lists) from the full
parameters, so gradients flow to the supernet's weights. When no gradient is needed (``torch.no_grad``, inference
mode, or frozen weights) a gathered weight is cached, contiguous, until the next ``set_sub_network`` /
``reset_super_network`` / in-place update of the weight (its version counter); after writing ``weight.data``
directly call :meth:`clear_cache`. Prefix selections are never cached (a strided view costs nothing).

An existing module becomes elastic in place with ``ElasticX.make_elastic(module)`` (class swap, same parameters,
same state-dict keys), so a loaded HF model keeps its structure and stays usable by HF ``generate``, peft and
lm-eval.
"""

from __future__ import annotations

from typing import Any, Iterator, Union

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.llama.modeling_llama import LlamaRMSNorm

__all__ = [
    "Index",
    "ElasticModule",
    "ElasticLinear",
    "ElasticEmbedding",
    "ElasticRMSNorm",
    "ElasticLayerNorm",
    "ElasticBlocks",
    "select",
    "as_index",
]

#: The first ``n`` entries (``int``) or explicit indices (1-D ``torch.long`` tensor).
Index = Union[int, torch.Tensor]


def select(tensor: torch.Tensor, dim: int, index: Index) -> torch.Tensor:
    """``tensor`` restricted to ``index`` along ``dim``: a view for a prefix, a gather for indices."""
    if isinstance(index, int):
        return tensor if index == tensor.shape[dim] else tensor.narrow(dim, 0, index)
    return tensor.index_select(dim, index.to(tensor.device))


def as_index(values: list[int] | torch.Tensor, size: int) -> Index:
    """An :data:`Index` for ``values`` (assumed valid): the int ``len(values)`` when they are ``0..len-1``."""
    values = torch.as_tensor(values, dtype=torch.long).flatten()
    n = int(values.numel())
    if n <= size and bool(torch.equal(values, torch.arange(n))):
        return n
    return values


def _size(index: Index) -> int:
    return index if isinstance(index, int) else int(index.numel())


class ElasticModule:
    """Mixin: the whittle-style protocol (``set_sub_network`` / ``reset_super_network``) and the gather cache."""

    _cache: tuple | None = None

    @classmethod
    def make_elastic(cls, module: nn.Module) -> Any:
        """Turn ``module`` (of the HF base class) into this elastic class in place; its weights stay where they are."""
        if not isinstance(module, cls):
            cls._check_convertible(module)
            module.__class__ = cls
            module._init_elastic()
        return module

    @classmethod
    def _check_convertible(cls, module: nn.Module) -> None:
        """Raise when ``module`` has a variant this elastic class does not handle."""

    def _init_elastic(self) -> None:
        raise NotImplementedError

    def clear_cache(self) -> None:
        """Drop the cached gathered weights (call after writing ``weight.data`` directly)."""
        self._cache = None

    def _cached(self, weight: torch.Tensor, build) -> tuple:
        """``build()`` (a tuple of tensors), cached while no gradient is needed and ``weight`` is unchanged."""
        if torch.is_grad_enabled() and weight.requires_grad:
            return build()
        version = None if weight.is_inference() else weight._version  # inference tensors have no version counter
        key = (version, weight.data_ptr(), weight.dtype, weight.device)
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                self._cache = (key, tuple(t if t is None else t.contiguous() for t in build()))
        return self._cache[1]


class ElasticLinear(ElasticModule, nn.Linear):
    """``nn.Linear`` computing ``x @ weight[out_index][:, in_index].T + bias[out_index]``."""

    in_index: Index
    out_index: Index

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__(in_features, out_features, bias, device, dtype)
        self._init_elastic()

    def _init_elastic(self) -> None:
        self.in_index, self.out_index, self._cache = self.in_features, self.out_features, None

    def set_sub_network(self, in_index: Index | None = None, out_index: Index | None = None) -> None:
        """Activate input columns ``in_index`` and output rows ``out_index`` (``None``: all)."""
        self.in_index = self.in_features if in_index is None else in_index
        self.out_index = self.out_features if out_index is None else out_index
        self._cache = None

    def reset_super_network(self) -> None:
        self.set_sub_network()

    @property
    def sub_in_features(self) -> int:
        return _size(self.in_index)

    @property
    def sub_out_features(self) -> int:
        return _size(self.out_index)

    def slice_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """The active part of a full-size ``(out_features, in_features)`` tensor (weight, LoRA delta, gradient)."""
        return select(select(weight, 0, self.out_index), 1, self.in_index)

    def _build(self) -> tuple:
        bias = None if self.bias is None else select(self.bias, 0, self.out_index)
        return self.slice_weight(self.weight), bias

    def active_weight(self) -> torch.Tensor:
        return self.active()[0]

    def active_bias(self) -> torch.Tensor | None:
        return self.active()[1]

    def active(self) -> tuple:
        """``(weight, bias)`` of the active sub-layer."""
        if isinstance(self.in_index, int) and isinstance(self.out_index, int):
            return self._build()
        return self._cached(self.weight, self._build)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.active()
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", active=({self.sub_in_features}->{self.sub_out_features})"


class ElasticEmbedding(ElasticModule, nn.Embedding):
    """``nn.Embedding`` returning only the active channels ``weight[:, index]`` (every token stays)."""

    index: Index

    def _init_elastic(self) -> None:
        self.index, self._cache = self.embedding_dim, None

    def set_sub_network(self, index: Index | None = None) -> None:
        self.index = self.embedding_dim if index is None else index
        self._cache = None

    def reset_super_network(self) -> None:
        self.set_sub_network()

    def active_weight(self) -> torch.Tensor:
        if isinstance(self.index, int):
            return select(self.weight, 1, self.index)
        return self._cached(self.weight, lambda: (select(self.weight, 1, self.index),))[0]

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.embedding(input, self.active_weight(), self.padding_idx, self.max_norm, self.norm_type,
                           self.scale_grad_by_freq, self.sparse)


class ElasticRMSNorm(ElasticModule, LlamaRMSNorm):
    """Llama's RMSNorm over the active channels only: exactly a dense RMSNorm of the active width."""

    index: Index

    def _init_elastic(self) -> None:
        self.index, self._cache = self.weight.shape[0], None

    def set_sub_network(self, index: Index | None = None) -> None:
        self.index = self.weight.shape[0] if index is None else index
        self._cache = None

    def reset_super_network(self) -> None:
        self.set_sub_network()

    def active_weight(self) -> torch.Tensor:
        return select(self.weight, 0, self.index)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:  # the same arithmetic as LlamaRMSNorm
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.active_weight() * hidden_states.to(input_dtype)


class ElasticLayerNorm(ElasticModule, nn.LayerNorm):
    """``nn.LayerNorm`` (1-D shape) over the active channels, with the active slice of weight and bias."""

    index: Index

    @classmethod
    def _check_convertible(cls, module: nn.Module) -> None:
        if len(module.normalized_shape) != 1:
            raise TypeError(f"ElasticLayerNorm needs a 1-D normalized_shape, got {module.normalized_shape}")

    def _init_elastic(self) -> None:
        self.index, self._cache = self.normalized_shape[0], None

    def set_sub_network(self, index: Index | None = None) -> None:
        self.index = self.normalized_shape[0] if index is None else index
        self._cache = None

    def reset_super_network(self) -> None:
        self.set_sub_network()

    def active_weight(self) -> torch.Tensor | None:
        return None if self.weight is None else select(self.weight, 0, self.index)

    def active_bias(self) -> torch.Tensor | None:
        return None if self.bias is None else select(self.bias, 0, self.index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (_size(self.index),), self.active_weight(), self.active_bias(), self.eps)


class ElasticBlocks(nn.ModuleList):
    """The decoder layers: iterating (and slicing) yields the active layers in the chosen order.

    ``len()``, integer indexing, ``named_modules()`` and ``state_dict()`` still address every layer, so the model's
    structure and checkpoints do not change with the sub-network.
    """

    _active: list[int] | None = None

    @classmethod
    def make_elastic(cls, module: nn.ModuleList) -> "ElasticBlocks":
        if not isinstance(module, cls):
            module.__class__ = cls
        module._active = None
        return module

    def set_sub_network(self, indices: list[int] | None = None) -> None:
        self._active = None if indices is None else [int(i) for i in indices]

    def reset_super_network(self) -> None:
        self.set_sub_network()

    def active_indices(self) -> list[int]:
        return list(range(len(self))) if self._active is None else list(self._active)

    def __iter__(self) -> Iterator[nn.Module]:
        if self._active is None:
            return super().__iter__()
        return iter([super(ElasticBlocks, self).__getitem__(i) for i in self._active])

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return nn.ModuleList(list(self)[idx])
        return super().__getitem__(idx)
