"""Importance maths beside the supernet: the :class:`Importance` scores, the permutation that puts the most important
heads, neurons and channels first, and the index lists that select the same sub-network of an unsorted supernet.

Permuting so that prefix slicing takes the most important components preserves the full model's function exactly:
heads move with their q/k/v rows and o-projection columns (with GQA, kv groups move as units and query heads are
sorted within their group), neurons with their gate/up rows and down columns, channels with every matrix, norm and
embedding that touches the residual stream. Layers are not moved: a layer ranking is stored and a sub-network keeps
its chosen layers in their original order. q/k channels inside a head are not sorted: RoPE ties each channel pair to
a frequency, so moving them would change the function. Module names come from the family registry.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasbench.families import Family, family_of_model_type
from nasbench.families import family as family_entry
from nasbench.supernet._files import IMPORTANCE_FILE

__all__ = ["IMPORTANCE_FILE", "Importance", "load_importance", "apply_order", "sub_network_indices", "family_of", "model_family", "decoder_layers",
           "attn_out", "mlp_out"]


@dataclass
class Importance:
    """Scores of one model (higher is more important) and the scheme that produced them."""

    scheme: str
    heads: list[list[float]]
    """Per layer, one score per query head."""
    neurons: list[list[float]]
    """Per layer, one score per MLP neuron."""
    channels: list[float]
    """One score per embedding channel."""
    layers: list[float] = field(default_factory=list)
    """One score per layer (block importance or block drop), when computed."""
    layer_scheme: str = ""
    tokens: int = 0

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self)), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "Importance":
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))

    def layer_order(self) -> list[int]:
        """Layer indices, most important first (ties keep the original order)."""
        return sorted(range(len(self.layers)), key=lambda i: -self.layers[i])

    def layers_for(self, n_layers: int) -> list[int]:
        """The ``n_layers`` most important layers, in their original order."""
        if not self.layers:
            return list(range(n_layers))
        return sorted(self.layer_order()[:n_layers])


# --------------------------------------------------------------------------------------------------- family maps
# The HF module names come from the family registry (nasbench.families): the supernet's wiring reads the same ones.
def family_of(model: nn.Module) -> str:
    return model_family(model).name


def model_family(model: nn.Module) -> Family:
    return family_of_model_type(getattr(getattr(model, "config", None), "model_type", None), "importance sorting")


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    return getattr(model, model_family(model).modules.base).layers


def attn_out(layer: nn.Module, family: Family) -> nn.Linear:
    m = family.modules
    return getattr(getattr(layer, m.attention), m.attn_out)


def mlp_out(layer: nn.Module, family: Family) -> nn.Linear:
    m = family.modules
    return getattr(getattr(layer, m.mlp), m.mlp_out)


# --------------------------------------------------------------------------------------------------- permutation
def _order(scores: list[float]) -> torch.Tensor:
    """Indices by descending score; ties keep the original order (stable), so equal scores change nothing."""
    values = torch.tensor(scores, dtype=torch.float64)
    return torch.sort(-values, stable=True).indices


@torch.no_grad()
def apply_order(model: nn.Module, importance: Importance) -> dict[str, Any]:
    """Permute ``model``'s weights in place so that prefixes hold the most important components.

    Returns the permutations applied (``channels``, per-layer ``heads`` and ``neurons``) for the record.
    """
    family = model_family(model)
    m = family.modules
    layers = decoder_layers(model)
    config = model.config
    n_heads = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_heads
    record: dict[str, Any] = {"heads": [], "neurons": []}
    for i, layer in enumerate(layers):
        head_perm, kv_perm = _head_permutation(importance.heads[i], n_heads,
                                               n_heads if family.kv_follows_heads else n_kv)
        neuron_perm = _order(importance.neurons[i])
        attn, mlp = getattr(layer, m.attention), getattr(layer, m.mlp)
        # a fused q_rows linear holds per head [q, k, v] chunks
        q_block = 3 * head_dim if m.fused_qkv else head_dim
        for name in m.q_rows:
            _rows(getattr(attn, name), _expand(head_perm, q_block))
        for name in m.kv_rows:
            _rows(getattr(attn, name), _expand(kv_perm, head_dim))
        _cols(getattr(attn, m.attn_out), _expand(head_perm, head_dim))
        for name in m.mlp_in:
            _rows(getattr(mlp, name), neuron_perm)
        _cols(getattr(mlp, m.mlp_out), neuron_perm)
        record["heads"].append(head_perm.tolist())
        record["neurons"].append(neuron_perm.tolist())
    channel_perm = _order(importance.channels)
    _permute_channels(model, family, channel_perm)
    record["channels"] = channel_perm.tolist()
    return record


def _head_permutation(scores: list[float], n_heads: int, n_kv: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Query-head order and kv-head order: groups by summed score, then heads within each group."""
    per_group = n_heads // n_kv
    values = torch.tensor(scores, dtype=torch.float64).reshape(n_kv, per_group)
    kv_perm = _order(values.sum(1).tolist())
    head_perm = torch.cat([g * per_group + _order(values[g].tolist()) for g in kv_perm.tolist()])
    return head_perm, kv_perm


def _expand(perm: torch.Tensor, block: int) -> torch.Tensor:
    """Block permutation -> element permutation (each index covers ``block`` consecutive rows or columns)."""
    return (perm[:, None] * block + torch.arange(block)[None, :]).reshape(-1)


def _rows(linear: nn.Linear, perm: torch.Tensor) -> None:
    linear.weight.data = linear.weight.data[perm].contiguous()
    if linear.bias is not None:
        linear.bias.data = linear.bias.data[perm].contiguous()


def _cols(linear: nn.Linear, perm: torch.Tensor) -> None:
    linear.weight.data = linear.weight.data[:, perm].contiguous()


def _vector(module: nn.Module, perm: torch.Tensor) -> None:
    for name in ("weight", "bias"):
        param = getattr(module, name, None)
        if param is not None:
            param.data = param.data[perm].contiguous()


def _permute_channels(model: nn.Module, family: Family, perm: torch.Tensor) -> None:
    m = family.modules
    base = getattr(model, m.base)
    embed, final_norm = getattr(base, m.embedding), getattr(base, m.final_norm)
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is embed.weight
    embed.weight.data = embed.weight.data[:, perm].contiguous()
    if tied:
        head.weight = embed.weight
    elif head is not None:
        head.weight.data = head.weight.data[:, perm].contiguous()
    _vector(final_norm, perm)
    for layer in base.layers:
        for name in m.norms:
            _vector(getattr(layer, name), perm)
        attn, mlp = getattr(layer, m.attention), getattr(layer, m.mlp)
        for linear in (*(getattr(attn, n) for n in (*m.q_rows, *m.kv_rows)), *(getattr(mlp, n) for n in m.mlp_in)):
            _cols(linear, perm)
        for linear in (getattr(attn, m.attn_out), getattr(mlp, m.mlp_out)):
            _rows(linear, perm)


# ------------------------------------------------------------------------------------------ sub-network indices
def sub_network_indices(importance: Importance, arch: dict[str, Any], family: str, q_per_kv: int,
                        layers: bool = True) -> dict[str, Any]:
    """Index lists for :meth:`Supernet.set_sub_network` that select ``arch``'s most important components of an
    *unsorted* supernet: the same sub-network that prefix slicing of the sorted (permuted) supernet activates.

    ``q_per_kv`` is the reference's query heads per kv head (1 for gpt_neox); ``layers=False`` keeps the first
    ``n_layers`` layers (no layer ranking).
    """
    n = arch["n_layers"]
    follows = family_entry(family).kv_follows_heads
    sources = importance.layers_for(n) if layers and importance.layers else list(range(n))
    heads, kv_groups, neurons = [], [], []
    for p, source in enumerate(sources):
        h = arch["n_heads"][p] if isinstance(arch["n_heads"], list) else arch["n_heads"]
        i = arch["intermediate_size"][p] if isinstance(arch["intermediate_size"], list) else arch["intermediate_size"]
        n_ref = len(importance.heads[source])
        head_perm, kv_perm = _head_permutation(importance.heads[source], n_ref, n_ref // q_per_kv)
        g = h if follows else arch["n_kv_groups"]
        chosen_kv = kv_perm[:g].tolist()
        q = h // g
        heads.append([j for k in chosen_kv for j in [j for j in head_perm.tolist() if j // q_per_kv == k][:q]])
        kv_groups.append(chosen_kv)
        neurons.append(_order(importance.neurons[source])[:i].tolist())
    out = {"layers": sources, "heads": heads, "neurons": neurons,
           "channels": _order(importance.channels)[:arch["embed_dim"]].tolist()}
    if not follows:
        out["kv_groups"] = kv_groups
    return out


def load_importance(directory: str | Path) -> Importance | None:
    """The importance saved with a sorted supernet in ``directory``, or ``None`` for a directory without one."""
    path = Path(directory) / IMPORTANCE_FILE
    if not path.is_file():
        return None
    payload = json.loads(path.read_text(encoding="utf-8"))
    keys = Importance.__dataclass_fields__
    return Importance(**{k: v for k, v in payload.items() if k in keys})
