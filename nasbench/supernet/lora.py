"""LoRA on the elastic supernet: peft adapters whose A and B follow the active sub-network.

peft's LoRA layer computes ``base_layer(x) + lora_B(lora_A(dropout(x))) * scaling``. Under a sub-network the base
:class:`~nasbench.supernet.modules.ElasticLinear` reads only its active input columns and writes only its active
output rows, so ``x`` is narrower than ``lora_A``'s ``in_features``. :func:`apply_lora` therefore swaps the class of
every ``lora_A`` / ``lora_B`` of an elastic layer to a *follower*: ``lora_A`` uses the columns ``base.in_index`` and
``lora_B`` the rows ``base.out_index`` of their full weights, at every forward (views for prefixes, gathers for
index lists). The adapter of a sub-network is thus ``B[out] @ A[:, in]``, exactly the slice of the full delta
``B @ A``, so the supernet's ``extract`` (which merges the full delta and slices it) gives the sliced model's
logits. Adapters of layers a sub-network drops are not run and get no gradient.

The LM head gets an adapter only when it is not tied to the token embedding (a merged head delta would otherwise
be overwritten by the embedding's weights in a tied dense model).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasbench.supernet.model import Supernet
from nasbench.supernet.modules import ElasticLinear, select

__all__ = ["ElasticLoraA", "ElasticLoraB", "apply_lora", "make_lora_elastic", "lora_targets"]


class _Follower(nn.Linear):
    """An ``nn.Linear`` that slices its weight by the index of its elastic base layer (set by :func:`_follow`)."""

    _elastic_base: ElasticLinear

    def _follow(self, base: ElasticLinear) -> None:
        object.__setattr__(self, "_elastic_base", base)  # a plain reference, not a sub-module (no state-dict key)


class ElasticLoraA(_Follower):
    """``lora_A``: reads the base layer's active input columns."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, select(self.weight, 1, self._elastic_base.in_index), self.bias)


class ElasticLoraB(_Follower):
    """``lora_B``: writes the base layer's active output rows."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = self._elastic_base.out_index
        bias = None if self.bias is None else select(self.bias, 0, index)
        return F.linear(x, select(self.weight, 0, index), bias)


def lora_targets(supernet: Supernet) -> list[str]:
    """Names of the elastic linear layers that get adapters: every one, the LM head only when untied."""
    hf = supernet.hf_model
    tied = bool(getattr(hf.config, "tie_word_embeddings", False))
    head = supernet.wiring.head
    return [name for name, module in hf.named_modules()
            if isinstance(module, ElasticLinear) and not (tied and module is head)]


@functools.lru_cache(maxsize=None)
def _fused_class() -> type:
    """peft's LoRA ``Linear`` with a forward that adds the adapter's output inside the base layer's matmul."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    class FusedLoraLinear(LoraLinear):
        """``addmm(B(s * A(x)), x, W.T)``: the scaling applied to the rank-r activations and the sum done by the
        matmul, where peft scales and adds the full-width output in two more passes (and casts ``x`` to the
        adapters' dtype, which autocast casts straight back). Same arithmetic up to rounding; any case but one
        plain unmerged adapter without bias goes to peft's own forward."""

        def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            names = self.active_adapters
            base = self.base_layer
            if (args or kwargs or self.disable_adapters or self.merged or len(names) != 1 or names[0] not in
                    self.lora_A or names[0] in self.lora_variant or base.bias is not None):
                return super().forward(x, *args, **kwargs)
            name = names[0]
            weight = base.active_weight()
            if not torch.is_autocast_enabled(x.device.type) and not (
                    x.dtype == weight.dtype == self.lora_A[name].weight.dtype):
                return super().forward(x, *args, **kwargs)  # mixed dtypes without autocast: peft casts
            h = self.lora_A[name](self.lora_dropout[name](x)) * self.scaling[name]
            delta = self.lora_B[name](h)
            out = torch.addmm(delta.reshape(-1, delta.shape[-1]), x.reshape(-1, x.shape[-1]), weight.t())
            return out.view(*x.shape[:-1], out.shape[-1])

    return FusedLoraLinear


def make_lora_elastic(model: nn.Module) -> int:
    """Turn the ``lora_A`` / ``lora_B`` of every peft LoRA layer over an elastic linear into followers (and the layer
    into :func:`_fused_class`'s when it is peft's plain ``Linear``); returns how many layers were made elastic.
    Idempotent."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    count = 0
    for module in model.modules():
        base = getattr(module, "base_layer", None)
        if not isinstance(base, ElasticLinear) or not hasattr(module, "lora_A"):
            continue
        if type(module) is LoraLinear:
            module.__class__ = _fused_class()
        for adapter in module.lora_A:
            for linear, cls in ((module.lora_A[adapter], ElasticLoraA), (module.lora_B[adapter], ElasticLoraB)):
                if not isinstance(linear, nn.Linear):
                    raise TypeError(f"LoRA of {type(base).__name__}: expected nn.Linear adapters, got "
                                    f"{type(linear).__name__}")
                linear.__class__ = cls
                linear._follow(base)
        count += 1
    return count


def apply_lora(supernet: Supernet, r: int = 32, alpha: int = 16, dropout: float = 0.05,
               init_lora_weights: Any = True) -> Supernet:
    """Wrap the supernet's HF model with peft LoRA (see :func:`lora_targets`), make the adapters elastic and return
    the supernet over the peft model. Only the adapters are trainable."""
    from peft import LoraConfig, get_peft_model

    targets = lora_targets(supernet)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none",
                        init_lora_weights=init_lora_weights)
    peft_model = get_peft_model(supernet.model, config)
    make_lora_elastic(peft_model)
    return Supernet(peft_model, supernet.space)
