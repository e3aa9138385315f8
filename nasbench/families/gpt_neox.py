"""GPT-NeoX (Pythia): no grouped-query attention, a fused query_key_value, an ungated MLP, LayerNorms with bias, a
parallel residual, partial rotary embeddings."""

from __future__ import annotations

from typing import Any, Mapping

from nasbench.errors import InvalidSpaceError
from nasbench.families.base import Family, HeadRule, Modules


class GPTNeoX(Family):
    name = "gpt_neox"
    model_type = "gpt_neox"
    kv_follows_heads = True
    per_layer_heads = False  # n_heads is tied to embed_dim / head_size
    mlp_mats = 2
    norm = "layernorm"
    activation = "gelu"
    coupling = ", n_heads * head_size == embed_dim"
    modules = Modules(base="gpt_neox", embedding="embed_in", final_norm="final_layer_norm", attention="attention",
                      mlp="mlp", q_rows=("query_key_value",), kv_rows=(), attn_out="dense",
                      mlp_in=("dense_h_to_4h",), mlp_out="dense_4h_to_h", fused_qkv=True)
    tiny_config = {"vocab_size": 96, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "intermediate_size": 96, "tie_word_embeddings": False, "max_position_embeddings": 128,
                   "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}}

    def head_rules(self, ref: Any) -> list[HeadRule]:
        return [HeadRule(lambda c, r: c["n_heads"] * c["head_size"] == c["embed_dim"],
                         lambda c, r: f"gpt_neox needs n_heads * head_size == embed_dim (head_size={c['head_size']}, "
                                      f"embed_dim={c['embed_dim']})")]

    def check_reference(self, values: Mapping[str, Any]) -> tuple[str, str, Any] | None:
        if values["n_kv_groups"] != values["n_heads"]:
            return ("model.reference.n_kv_groups", "gpt_neox has no grouped-query attention: must equal n_heads",
                    values["n_kv_groups"])
        if values["n_heads"] * values["head_size"] != values["embed_dim"]:
            return "model.reference.head_size", "gpt_neox needs n_heads * head_size == embed_dim", values["head_size"]
        return None

    def head_count_possible(self, h: int, dims: Mapping[str, Any], ref: Any) -> tuple[bool, str]:
        ok = any(dims["embed_dim"].contains(h * d) for d in dims["head_size"].candidates())
        return ok, f"n_heads={h} can never meet n_heads * head_size == embed_dim"

    def embed_params(self, ref: Any, e: Any) -> Any:
        return ref.vocab_size * e * (1 if ref.tied_head else 2) + 2 * e  # + final LayerNorm

    def layer_params(self, ref: Any, e: Any, h: Any, g: Any, i: Any, d: Any) -> Any:
        # biases everywhere, LayerNorms with bias, fused qkv, ungated MLP
        attn = e * 3 * h * d + 3 * h * d + h * d * e + e
        mlp = e * i + i + i * e + e
        return attn + mlp + 4 * e  # two LayerNorms

    def reference_from_config(self, config: Any) -> dict[str, Any]:
        out = super().reference_from_config(config)
        out["n_kv_groups"] = config.num_attention_heads
        out["head_size"] = config.hidden_size // config.num_attention_heads
        return out

    def check_config(self, config: Any, source: str) -> None:
        if not getattr(config, "use_parallel_residual", True):
            raise InvalidSpaceError("model", f"{source}: the supernet's gpt_neox wiring expects a parallel residual "
                                             "(use_parallel_residual: true)", False)

    def hf_model(self, config: dict[str, Any]) -> Any:
        from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

        return GPTNeoXForCausalLM(GPTNeoXConfig(**config))


GPT_NEOX = GPTNeoX()
