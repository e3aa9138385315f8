"""Elastic rotary embeddings and the channels a head of size ``d`` keeps (see :mod:`nasbench.supernet.wiring`): the
first ``r/2`` rotary pairs, in order, then the first pass-through channels, so the sliced supernet is exactly the
dense HF model with ``head_dim = d``."""

from __future__ import annotations

import math
from typing import Any

import torch
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXRotaryEmbedding
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

from nasbench.errors import IllegalSubNetworkError, NasBenchError

__all__ = ["ElasticRotaryMixin", "ElasticLlamaRotaryEmbedding", "ElasticGPTNeoXRotaryEmbedding", "head_channels"]

_STATIC_ROPE = ("default", "linear", "llama3", "yarn")


# ------------------------------------------------------------------------------------------------------- rotary
class _HeadDimConfig:
    """A read-only view of an HF config with ``head_dim`` replaced (what the rope init functions read)."""

    def __init__(self, config: Any, head_dim: int) -> None:
        self._config = config
        self.head_dim = head_dim

    def __getattr__(self, name: str) -> Any:
        return getattr(self._config, name)


class ElasticRotaryMixin:
    """Rotary embedding of the active head size: ``inv_freq`` computed over ``d`` exactly as HF does for a dense
    model with ``head_dim = d`` (per ``d``, cached); the full head size uses the module's own buffers."""

    sub_head_size: int | None = None

    def _init_elastic(self, head_size: int) -> None:
        if self.rope_type not in _STATIC_ROPE:
            raise NasBenchError("model.config.rope_parameters.rope_type",
                                         f"the supernet supports static rotary types ({', '.join(_STATIC_ROPE)})",
                                         self.rope_type)
        self.full_head_size = head_size
        self.sub_head_size = None
        self._rope_by_size: dict[int, tuple[torch.Tensor, float]] = {}

    def set_sub_network(self, head_size: int | None = None) -> None:
        self.sub_head_size = None if head_size == self.full_head_size else head_size

    def reset_super_network(self) -> None:
        self.sub_head_size = None

    def _rope(self, head_size: int | None) -> tuple[torch.Tensor, float]:
        if head_size is None:
            return self.inv_freq, self.attention_scaling
        if head_size not in self._rope_by_size:
            init = self.compute_default_rope_parameters if self.rope_type == "default" else \
                ROPE_INIT_FUNCTIONS[self.rope_type]
            inv_freq, scaling = init(_HeadDimConfig(self.config, head_size))
            self._rope_by_size[head_size] = (inv_freq.to(self.inv_freq.device), scaling)
        return self._rope_by_size[head_size]

    @torch.no_grad()
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inv_freq, scaling = self._rope(self.sub_head_size)
        freqs = position_ids[..., None].float() * inv_freq.to(device=x.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = emb.cos() * scaling
        sin = emb.sin() * scaling
        return cos.to(dtype=x.dtype), sin.to(dtype=x.dtype)


class ElasticLlamaRotaryEmbedding(ElasticRotaryMixin, LlamaRotaryEmbedding):
    pass


class ElasticGPTNeoXRotaryEmbedding(ElasticRotaryMixin, GPTNeoXRotaryEmbedding):
    pass


def _rotary_width(head_size: int, factor: float) -> int:
    """Channels HF rotates in a head: ``2 * len(inv_freq)`` with ``inv_freq`` over ``int(head_size * factor)``."""
    return 2 * math.ceil(int(head_size * factor) / 2)


def head_channels(d: int, full: int, rotary_factor: float = 1.0) -> list[int]:
    """Channels of a size-``full`` head that form the size-``d`` head (see the module docstring)."""
    big, small = _rotary_width(full, rotary_factor), _rotary_width(d, rotary_factor)
    if small > d:
        raise IllegalSubNetworkError("arch.head_size", "must be even (the rotary embedding pairs channels)", d)
    rotary = list(range(small // 2)) + list(range(big // 2, big // 2 + small // 2))
    passthrough = list(range(big, big + d - small))
    channels = rotary + passthrough
    if small > big or (channels and max(channels) >= full):
        raise IllegalSubNetworkError("arch.head_size", f"cannot be cut from head size {full} with rotary factor "
                                                       f"{rotary_factor}", d)
    return channels
