"""The family interface: module names, head rules and the formulas every family fills in (see
:mod:`nasbench.families`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from nasbench.errors import IllegalSubNetworkError

__all__ = ["Family", "Modules", "HeadRule", "uniform"]


@dataclass(frozen=True)
class Modules:
    """Attribute names of an HF causal LM of the family (what the wiring makes elastic and importance permutes)."""

    base: str
    """The CausalLM's decoder attribute (``model`` / ``gpt_neox``); its ``layers`` are the blocks."""
    embedding: str
    final_norm: str
    attention: str
    mlp: str
    q_rows: tuple[str, ...]
    """Attention linears whose output rows are query heads (``query_key_value`` when ``fused_qkv``)."""
    kv_rows: tuple[str, ...]
    """Attention linears whose output rows are kv heads (none when fused)."""
    attn_out: str
    mlp_in: tuple[str, ...]
    mlp_out: str
    norms: tuple[str, ...] = ("input_layernorm", "post_attention_layernorm")
    fused_qkv: bool = False
    """One linear holds q, k and v, laid out per head as ``[q_h | k_h | v_h]``."""

    @property
    def attention_linears(self) -> tuple[str, ...]:
        return (*self.q_rows, *self.kv_rows, self.attn_out)

    @property
    def mlp_linears(self) -> tuple[str, ...]:
        return (*self.mlp_in, self.mlp_out)


@dataclass(frozen=True)
class HeadRule:
    """A rule on one layer's heads: ``holds`` over columns (arrays of embed_dim, n_heads, n_kv_groups, head_size),
    ``message`` for the one arch (plain ints) that breaks it."""

    holds: Callable[[Mapping[str, Any], Any], Any]
    message: Callable[[Mapping[str, int], Any], str]


class Family:
    """A model family. Subclasses fill in the names, the formulas and the rules; one instance each in FAMILIES."""

    name: str = ""
    model_type: str = ""
    """HF ``config.model_type``."""
    kv_follows_heads: bool = False
    """No grouped-query attention: ``n_kv_groups`` is ``n_heads`` (not a dimension of the space)."""
    per_layer_heads: bool = True
    """``n_heads`` may vary by layer."""
    reference_switches: tuple[str, ...] = ()
    """Optional booleans of ``model.reference`` only this family has."""
    mlp_mats: int = 2
    """Weight matrices of one MLP (a gated MLP has 3)."""
    norm: str = "rmsnorm"
    """The blocks' norm: ``rmsnorm`` (computed in float32, as HF's) or ``layernorm``."""
    activation: str = "silu"
    """The MLP's activation (``silu``, ``gelu``); a gated MLP multiplies it by the up projection."""
    coupling: str = ""
    """The family's extra rule on the coupled dimensions, for messages (``, embed_dim divisible by n_heads``)."""
    modules: Modules
    tiny_config: dict[str, Any] = {}
    """The HF config of the tiny random test model (``nasbench.models.tiny_model``)."""

    # -- structure ------------------------------------------------------------------------------------------------
    def kv_bound(self, ref: Any) -> int:
        """Largest ``n_kv_groups`` of an arch."""
        return ref.n_heads if self.kv_follows_heads else ref.n_kv_groups

    def head_rules(self, ref: Any) -> list[HeadRule]:
        """Rules on each layer's heads, checked in order after ``n_heads % n_kv_groups == 0``."""
        return []

    def check_reference(self, values: Mapping[str, Any]) -> tuple[str, str, Any] | None:
        """(key, rule, got) of the first ``model.reference`` value the family cannot have, else None."""
        return None

    def head_count_possible(self, h: int, dims: Mapping[str, Any], ref: Any) -> tuple[bool, str]:
        """Whether some choice of the other dimensions admits ``n_heads=h``, and the rule to name when none does."""
        raise NotImplementedError

    # -- counting: written once over arrays -----------------------------------------------------------------------
    def embed_params(self, ref: Any, e: Any) -> Any:
        """Parameters outside the blocks: token embedding, LM head (unless tied), final norm."""
        raise NotImplementedError

    def layer_params(self, ref: Any, e: Any, h: Any, g: Any, i: Any, d: Any) -> Any:
        """Parameters of one block (attention, MLP, norms)."""
        raise NotImplementedError

    def layer_matmul(self, e: Any, h: Any, g: Any, i: Any, d: Any) -> Any:
        """Multiply-adds per token of one block's weight matrices."""
        return e * h * d * 2 + 2 * e * g * d + self.mlp_mats * e * i

    @staticmethod
    def layer_attention_flops(h: Any, d: Any, seq_len: int) -> Any:
        """Causal attention FLOPs per token of one block: scores and weighted sum over on average half the context."""
        return 2 * 2 * h * d * (seq_len + 1) / 2

    def params(self, ref: Any, cols: Mapping[str, Any]) -> Any:
        """Exact parameter count. ``cols``: one arch (per-layer values as lists) or columns of uniform archs."""
        e, d, layers = cols["embed_dim"], cols["head_size"], cols["n_layers"]
        h, g, i = (_layers(cols[k], layers) for k in ("n_heads", "n_kv_groups", "intermediate_size"))
        per_layer = self.layer_params(ref, e, h, g, i, d)
        if isinstance(per_layer, np.ndarray) and per_layer.dtype == object:  # one arch: sum its layers
            return int(self.embed_params(ref, e) + per_layer.sum())
        return self.embed_params(ref, e) + layers * per_layer

    def flops(self, ref: Any, cols: Mapping[str, Any], seq_len: int = 512) -> Any:
        """Forward FLOPs per token (2 per multiply-add, LM head included, embedding lookup excluded) plus causal
        attention; norms, activations and softmax are ignored (< 1% here)."""
        e, d, layers = cols["embed_dim"], cols["head_size"], cols["n_layers"]
        h, g, i = (_layers(cols[k], layers) for k in ("n_heads", "n_kv_groups", "intermediate_size"))
        matmul = self.layer_matmul(e, h, g, i, d)
        if isinstance(matmul, np.ndarray) and matmul.dtype == object:
            return int(2 * (ref.vocab_size * e + matmul.sum()) + self.attention_flops(cols, seq_len))
        return (2 * (ref.vocab_size * e + layers * matmul) + self.attention_flops(cols, seq_len)).astype(np.int64)

    def attention_flops(self, cols: Mapping[str, Any], seq_len: int = 512) -> Any:
        """The causal-attention part of :meth:`flops`: the matmuls of two activations (scores, weighted sum)."""
        layers = cols["n_layers"]
        attention = self.layer_attention_flops(_layers(cols["n_heads"], layers), cols["head_size"], seq_len)
        if isinstance(attention, np.ndarray) and attention.dtype == object:  # one arch: sum its layers
            return float(sum(attention, 0.0))
        return layers * attention

    # -- HF -------------------------------------------------------------------------------------------------------
    def reference_from_config(self, config: Any) -> dict[str, Any]:
        """The ``model.reference`` entries an HF config implies."""
        heads = config.num_attention_heads
        return {
            "n_layers": config.num_hidden_layers,
            "embed_dim": config.hidden_size,
            "n_heads": heads,
            "intermediate_size": config.intermediate_size,
            "vocab_size": config.vocab_size,
            "tied_head": bool(getattr(config, "tie_word_embeddings", False)),
        }

    def check_config(self, config: Any, source: str) -> None:
        """Raise when the HF config has a variant the supernet's wiring does not handle."""

    def hf_config(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """The HF config entries of the dense model extracted for a uniform ``arch``."""
        return {"hidden_size": arch["embed_dim"], "num_hidden_layers": arch["n_layers"],
                "num_attention_heads": uniform(arch, "n_heads", "num_attention_heads"),
                "intermediate_size": uniform(arch, "intermediate_size", "intermediate_size")}

    def hf_model(self, config: dict[str, Any]) -> Any:
        """A random HF CausalLM of the family with ``config``."""
        raise NotImplementedError


def _layers(value: Any, n_layers: Any) -> Any:
    """A per-layer list as an object array (exact Python ints, one entry per layer); columns stay as they are."""
    if isinstance(value, (list, tuple)):
        return np.array(value, dtype=object)
    if isinstance(value, np.ndarray) and value.ndim:
        return value
    return np.array([value] * int(n_layers), dtype=object)


def uniform(arch: Mapping[str, Any], name: str, key: str) -> int:
    """The one value of a dimension across layers; an error when a per-layer list differs (a dense HF config holds
    one value for all layers)."""
    value = arch[name]
    if isinstance(value, list):
        if len(set(value)) != 1:
            raise IllegalSubNetworkError(
                f"arch.{name}", f"cannot extract a dense HF model: HF's config for this family has one {key} for all "
                                f"layers; per-layer values only run sliced in the supernet", value)
        return value[0]
    return value
