"""Per-family wiring: which HF modules become elastic and which rows / columns a sub-network activates. The module
names, the HF config keys and whether kv groups follow heads come from the family registry (:mod:`nasbench.families`).

Channel selection inside a head (``head_size`` slicing) follows the rotary embedding, so that the sliced supernet is
*exactly* the dense HF model with ``head_dim = d`` extracted from it. HF's ``rotate_half`` pairs channel ``i`` with
``i + r/2`` over the ``r`` rotary channels of a head (``r = head_dim`` for Llama, ``int(head_dim *
partial_rotary_factor)`` rounded up to even for GPT-NeoX); the remaining ``head_dim - r`` channels pass through. A
head of the reference (size ``D``, rotary width ``R``) cut to size ``d`` (rotary width ``r``) keeps the channels::

    [0, r/2)  +  [R/2, R/2 + r/2)  +  [R, R + d - r)

i.e. the first ``r/2`` rotary pairs, in order, then the first pass-through channels; q, k, v and the
o-projection's inputs use the same channels. The rotary frequencies of the sub-network are those of head size ``d``
(``inv_freq`` is computed over ``d``, as the extracted model does) and attention scales by ``1/sqrt(d)``.

Query heads with grouped-query attention: HF Llama orders query heads group-major (query head ``j`` reads kv head
``j // (H/G)``). A sub-network with ``g`` kv heads and ``h`` query heads keeps the first ``g`` kv heads and, in each
of their groups, the first ``h/g`` query heads -- unless explicit index lists say otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from nasbench.errors import IllegalSubNetworkError, NasBenchError
from nasbench.families import GPT_NEOX, LLAMA, Family, Modules, uniform
from nasbench.space import ModelReference
from nasbench.supernet.modules import (
    ElasticBlocks,
    ElasticEmbedding,
    ElasticLayerNorm,
    ElasticLinear,
    ElasticRMSNorm,
    Index,
    as_index,
)
from nasbench.supernet.rotary import (ElasticGPTNeoXRotaryEmbedding, ElasticLlamaRotaryEmbedding, ElasticRotaryMixin,
                                      head_channels)

__all__ = [
    "LayerPlan", "Plan", "Wiring", "LlamaWiring", "GPTNeoXWiring", "wiring_for", "head_channels", "check_extractable",
]

# ---------------------------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class LayerPlan:
    """The resolved selection of one active layer."""

    source: int
    """The reference layer it runs."""
    heads: tuple[int, ...]
    """Query heads of the reference, group by group."""
    kv_heads: tuple[int, ...]
    """Key/value heads of the reference (``== heads`` without GQA)."""
    neurons: Index
    """MLP neurons."""


@dataclass(frozen=True)
class Plan:
    """A validated sub-network: the canonical arch plus every index it activates."""

    arch: dict[str, Any]
    channels: Index
    """Embedding channels (the residual stream)."""
    head_channels: Index
    """Channels inside each head."""
    layers: tuple[LayerPlan, ...]


def _indices(values: Any, size: int, length: int, where: str) -> list[int]:
    """``values`` as distinct ints in ``0..size-1``, exactly ``length`` of them."""
    if isinstance(values, torch.Tensor):
        values = values.tolist()
    if not isinstance(values, (list, tuple)):
        raise IllegalSubNetworkError(where, "must be a list of indices", values)
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < size:
            raise IllegalSubNetworkError(f"{where}[{i}]", f"must be an index in 0..{size - 1}", v)
        out.append(int(v))
    if len(out) != length:
        raise IllegalSubNetworkError(where, f"needs exactly {length} indices (the arch's value)", values)
    if len(set(out)) != len(out):
        raise IllegalSubNetworkError(where, "indices must be distinct", values)
    return out


def _per_layer_arg(value: Any, n_layers: int, where: str) -> list[Any]:
    """An index-list argument given once for all layers (a flat list) or per active layer (a list of lists)."""
    if value is None:
        return [None] * n_layers
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple, torch.Tensor)) for v in value):
        if len(value) != n_layers:
            raise IllegalSubNetworkError(where, f"a per-layer list needs one entry per active layer "
                                                f"(n_layers={n_layers})", value)
        return list(value)
    return [value] * n_layers


# -------------------------------------------------------------------------------------------------- the wiring
class Wiring:
    """Makes one HF model elastic in place and applies :class:`Plan` s to it. Subclasses slice the family's modules
    (their names: ``self.names``, from the family registry)."""

    rules: Family
    rotary_factor: float = 1.0

    def __init__(self, model: nn.Module, reference: ModelReference) -> None:
        self.model = model
        self.ref = reference
        self.family = self.rules.name
        self.names: Modules = self.rules.modules
        self.base = getattr(model, self.names.base)
        self.base_prefix = self.names.base
        self.layers_path = f"{self.base_prefix}.layers"
        self.blocks = ElasticBlocks.make_elastic(self.base.layers)
        self._make_elastic()
        self.q_per_kv = reference.n_heads // reference.n_kv_groups
        self.reset()  # a model made elastic before may still hold another supernet's selection

    norm_class: Any
    """The family's elastic norm (ElasticRMSNorm / ElasticLayerNorm)."""
    rotary_class: Any
    """The family's elastic rotary embedding class."""

    def _make_elastic(self) -> None:
        base, names = self.base, self.names
        self.embedding = ElasticEmbedding.make_elastic(getattr(base, names.embedding))
        self.final_norm = self.norm_class.make_elastic(getattr(base, names.final_norm))
        _make_linear(self.model, "lm_head")
        self.head = _linear(self.model.lm_head)
        if not isinstance(base.rotary_emb, ElasticRotaryMixin):
            base.rotary_emb.__class__ = self.rotary_class
            base.rotary_emb._init_elastic(self.ref.head_size)
        self.rotary = base.rotary_emb
        self._make_blocks_elastic()

    # -- subclasses -----------------------------------------------------------------------------------------------

    def _attention_defaults(self, index: int) -> dict[str, Any]:
        """The attention module's shape attributes in the reference model (what HF's ``__init__`` sets)."""
        raise NotImplementedError

    def _apply_layer(self, position: int, layer: nn.Module, plan: LayerPlan, whole: Plan) -> None:
        raise NotImplementedError

    # -- shared: module names from the registry -------------------------------------------------------------------
    def _attention(self, layer: nn.Module) -> nn.Module:
        return getattr(layer, self.names.attention)

    def _mlp(self, layer: nn.Module) -> nn.Module:
        return getattr(layer, self.names.mlp)

    def _make_blocks_elastic(self) -> None:
        """Every block's attention and MLP linears and its two norms."""
        for layer in self.blocks._modules.values():
            for name in self.names.attention_linears:
                _make_linear(self._attention(layer), name)
            for name in self.names.mlp_linears:
                _make_linear(self._mlp(layer), name)
            for name in self.names.norms:
                self.norm_class.make_elastic(getattr(layer, name))

    def _reset_layer(self, index: int, layer: nn.Module) -> None:
        attention, mlp = self._attention(layer), self._mlp(layer)
        for module in (*(getattr(attention, n) for n in self.names.attention_linears),
                       *(getattr(mlp, n) for n in self.names.mlp_linears)):
            _linear(module).reset_super_network()
        for name in self.names.norms:
            getattr(layer, name).reset_super_network()
        self._restore_attention(index, layer)

    def sub_config(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """The config entries of the dense model extracted for a uniform ``arch``."""
        return self.rules.hf_config(arch)

    # -- shared ---------------------------------------------------------------------------------------------------
    def plan(self, arch: dict[str, Any], *, layers: Sequence[int] | None = None, heads: Any = None,
             kv_groups: Any = None, neurons: Any = None, channels: Sequence[int] | None = None) -> Plan:
        """Resolve a canonical ``arch`` and the optional explicit index lists into a :class:`Plan`."""
        ref = self.ref
        n = arch["n_layers"]
        sources = list(range(n)) if layers is None else _indices(layers, ref.n_layers, n, "layers")
        chan = as_index(range(arch["embed_dim"]) if channels is None else
                        _indices(channels, ref.embed_dim, arch["embed_dim"], "channels"), ref.embed_dim)
        inside = as_index(head_channels(arch["head_size"], ref.head_size, self.rotary_factor), ref.head_size)
        heads_arg = _per_layer_arg(heads, n, "heads")
        kv_arg = _per_layer_arg(kv_groups, n, "kv_groups")
        neurons_arg = _per_layer_arg(neurons, n, "neurons")
        plans = []
        for p, source in enumerate(sources):
            h, i = arch["n_heads"], arch["intermediate_size"]
            h = h[p] if isinstance(h, list) else h
            i = i[p] if isinstance(i, list) else i
            q_heads, kv_heads = self._heads(h, arch["n_kv_groups"], heads_arg[p], kv_arg[p], p)
            cells = range(i) if neurons_arg[p] is None else \
                _indices(neurons_arg[p], ref.intermediate_size, i, f"neurons[{p}]")
            plans.append(LayerPlan(source, tuple(q_heads), tuple(kv_heads), as_index(cells, ref.intermediate_size)))
        return Plan(arch, chan, inside, tuple(plans))

    def _heads(self, h: int, g: int, heads: Any, kv: Any, p: int) -> tuple[list[int], list[int]]:
        ref, q = self.ref, h // g
        if self.rules.kv_follows_heads:
            if kv is not None:
                raise IllegalSubNetworkError("kv_groups", f"{self.family} has no grouped-query attention; choose "
                                                          f"heads with heads=", kv)
            chosen = list(range(h)) if heads is None else _indices(heads, ref.n_heads, h, f"heads[{p}]")
            return chosen, chosen
        if kv is not None:
            kv = _indices(kv, ref.n_kv_groups, g, f"kv_groups[{p}]")
        if heads is None:
            kv = list(range(g)) if kv is None else kv
            return [k * self.q_per_kv + j for k in kv for j in range(q)], kv
        heads = _indices(heads, ref.n_heads, h, f"heads[{p}]")
        groups = [j // self.q_per_kv for j in heads]
        kv = groups[::q] if kv is None else kv
        expected = [k for k in kv for _ in range(q)]
        if groups != expected:
            raise IllegalSubNetworkError(
                f"heads[{p}]", f"must list {q} query heads of each kv group in order {kv} (query head j belongs to "
                               f"kv group j // {self.q_per_kv})", heads)
        return heads, kv

    def apply(self, plan: Plan) -> None:
        self.blocks.set_sub_network([lp.source for lp in plan.layers])
        self.embedding.set_sub_network(plan.channels)
        self.final_norm.set_sub_network(plan.channels)
        self.head.set_sub_network(in_index=plan.channels)
        self.rotary.set_sub_network(plan.arch["head_size"])
        active = {lp.source for lp in plan.layers}
        for index, layer in self.blocks._modules.items():
            if int(index) not in active:
                self._reset_layer(int(index), layer)
        for position, lp in enumerate(plan.layers):
            self._apply_layer(position, self.blocks[lp.source], lp, plan)

    def reset(self) -> None:
        self.blocks.reset_super_network()
        self.embedding.reset_super_network()
        self.final_norm.reset_super_network()
        self.head.reset_super_network()
        self.rotary.reset_super_network()
        for index, layer in self.blocks._modules.items():
            self._reset_layer(int(index), layer)

    def _restore_attention(self, index: int, layer: nn.Module) -> None:
        attention = self._attention(layer)
        for key, value in self._attention_defaults(index).items():
            setattr(attention, key, value)


def _linear(module: nn.Module) -> ElasticLinear:
    """The elastic linear inside ``module`` (itself, or the ``base_layer`` of a peft wrapper)."""
    while not isinstance(module, ElasticLinear) and hasattr(module, "base_layer"):
        module = module.base_layer
    if not isinstance(module, ElasticLinear):
        raise TypeError(f"expected an elastic linear layer, got {type(module).__name__}")
    return module


def _make_linear(parent: nn.Module, name: str) -> None:
    target = getattr(parent, name)
    while hasattr(target, "base_layer"):
        target = target.base_layer
    if not isinstance(target, nn.Linear):
        raise TypeError(f"{name}: expected nn.Linear, got {type(target).__name__}")
    ElasticLinear.make_elastic(target)


def _rows(units: Sequence[int], unit_size: int, inside: Sequence[int]) -> list[int]:
    return [u * unit_size + c for u in units for c in inside]


class LlamaWiring(Wiring):
    rules = LLAMA
    rotary_factor = 1.0
    norm_class = ElasticRMSNorm
    rotary_class = ElasticLlamaRotaryEmbedding

    def _attention_defaults(self, index: int) -> dict[str, Any]:
        d = self.ref.head_size
        return {"head_dim": d, "scaling": d ** -0.5, "num_key_value_groups": self.q_per_kv, "layer_idx": index}

    def _apply_layer(self, position: int, layer: nn.Module, plan: LayerPlan, whole: Plan) -> None:
        ref, names, attention, mlp = self.ref, self.names, self._attention(layer), self._mlp(layer)
        d = whole.arch["head_size"]
        inside = range(d) if isinstance(whole.head_channels, int) else whole.head_channels.tolist()
        q_rows = as_index(_rows(plan.heads, ref.head_size, inside), ref.n_heads * ref.head_size)
        kv_rows = as_index(_rows(plan.kv_heads, ref.head_size, inside), ref.n_kv_groups * ref.head_size)
        e = whole.channels
        for name in names.q_rows:
            _linear(getattr(attention, name)).set_sub_network(e, q_rows)
        for name in names.kv_rows:
            _linear(getattr(attention, name)).set_sub_network(e, kv_rows)
        _linear(getattr(attention, names.attn_out)).set_sub_network(q_rows, e)
        attention.head_dim = d
        attention.scaling = d ** -0.5
        attention.num_key_value_groups = len(plan.heads) // len(plan.kv_heads)
        attention.layer_idx = position  # the KV cache holds the active layers in order
        for name in names.mlp_in:
            _linear(getattr(mlp, name)).set_sub_network(e, plan.neurons)
        _linear(getattr(mlp, names.mlp_out)).set_sub_network(plan.neurons, e)
        for name in names.norms:
            getattr(layer, name).set_sub_network(e)


class GPTNeoXWiring(Wiring):
    rules = GPT_NEOX
    norm_class = ElasticLayerNorm
    rotary_class = ElasticGPTNeoXRotaryEmbedding

    def __init__(self, model: nn.Module, reference: ModelReference) -> None:
        self.rotary_factor = float(model.config.rope_parameters.get("partial_rotary_factor", 1.0))
        super().__init__(model, reference)

    def _attention_defaults(self, index: int) -> dict[str, Any]:
        d = self.ref.head_size
        return {"head_size": d, "scaling": d ** -0.5, "rotary_ndims": int(d * self.rotary_factor), "layer_idx": index}

    def _apply_layer(self, position: int, layer: nn.Module, plan: LayerPlan, whole: Plan) -> None:
        ref, names, attention, mlp = self.ref, self.names, self._attention(layer), self._mlp(layer)
        d, size = whole.arch["head_size"], ref.head_size
        inside = range(d) if isinstance(whole.head_channels, int) else whole.head_channels.tolist()
        # the fused query_key_value rows are laid out per head as [q_h | k_h | v_h], each ``head_size`` rows
        qkv_rows = as_index([h * 3 * size + part * size + c for h in plan.heads for part in range(3) for c in inside],
                            3 * ref.n_heads * size)
        out_cols = as_index(_rows(plan.heads, size, inside), ref.n_heads * size)
        e = whole.channels
        for name in names.q_rows:
            _linear(getattr(attention, name)).set_sub_network(e, qkv_rows)
        _linear(getattr(attention, names.attn_out)).set_sub_network(out_cols, e)
        attention.head_size = d
        attention.scaling = d ** -0.5
        attention.rotary_ndims = int(d * self.rotary_factor)
        attention.layer_idx = position
        for name in names.mlp_in:
            _linear(getattr(mlp, name)).set_sub_network(e, plan.neurons)
        _linear(getattr(mlp, names.mlp_out)).set_sub_network(plan.neurons, e)
        for name in names.norms:
            getattr(layer, name).set_sub_network(e)


_WIRINGS: dict[str, type[Wiring]] = {w.rules.name: w for w in (LlamaWiring, GPTNeoXWiring)}


def check_extractable(family: str, arch: Mapping[str, Any]) -> None:
    """Raise IllegalSubNetworkError when ``arch`` has per-layer widths (a dense HF config cannot hold them)."""
    uniform(arch, "n_heads", "num_attention_heads")
    uniform(arch, "intermediate_size", "intermediate_size")


def wiring_for(name: str) -> type[Wiring]:
    if name not in _WIRINGS:
        raise NasBenchError("model.family", f"the supernet knows {' and '.join(_WIRINGS)}", name)
    return _WIRINGS[name]
