"""Llama and the models sharing its layout (SmolLM2, Llama 3, ...): grouped-query attention, a gated MLP, RMSNorm."""

from __future__ import annotations

from typing import Any, Mapping

from nasbench.families.base import Family, HeadRule, Modules


class Llama(Family):
    name = "llama"
    model_type = "llama"
    kv_follows_heads = False
    per_layer_heads = True
    reference_switches = ("attention_bias", "mlp_bias")
    mlp_mats = 3
    coupling = ", embed_dim divisible by n_heads"
    modules = Modules(base="model", embedding="embed_tokens", final_norm="norm", attention="self_attn", mlp="mlp",
                      q_rows=("q_proj",), kv_rows=("k_proj", "v_proj"), attn_out="o_proj",
                      mlp_in=("gate_proj", "up_proj"), mlp_out="down_proj")
    tiny_config = {"vocab_size": 96, "hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 6,
                   "num_key_value_heads": 2, "head_dim": 10, "intermediate_size": 64, "tie_word_embeddings": True,
                   "max_position_embeddings": 128, "rms_norm_eps": 1e-5}

    def head_rules(self, ref: Any) -> list[HeadRule]:
        q_per_kv = ref.n_heads // ref.n_kv_groups
        return [
            HeadRule(lambda c, r: c["n_heads"] // c["n_kv_groups"] <= q_per_kv,
                     lambda c, r: f"n_heads / n_kv_groups must be <= {q_per_kv} (query heads per kv head in the "
                                  f"reference model; n_kv_groups={c['n_kv_groups']})"),
            # transformers' LlamaConfig refuses hidden_size % num_attention_heads != 0 even with an explicit
            # head_dim; keeping the rule makes every arch of the space exportable as a plain HF model
            HeadRule(lambda c, r: c["embed_dim"] % c["n_heads"] == 0,
                     lambda c, r: f"llama needs embed_dim divisible by n_heads (embed_dim={c['embed_dim']}; HF's "
                                  f"LlamaConfig rule)"),
        ]

    def head_count_possible(self, h: int, dims: Mapping[str, Any], ref: Any) -> tuple[bool, str]:
        q_per_kv = ref.n_heads // ref.n_kv_groups
        embed = dims["embed_dim"]
        if embed.kind in ("int", "log_int"):
            low, high = embed.values
            multiple = (low + h - 1) // h * h <= high
        else:
            multiple = any(v % h == 0 for v in embed.values)
        ok = any(h % g == 0 and h // g <= q_per_kv for g in dims["n_kv_groups"].candidates()) and multiple
        return ok, (f"n_heads={h} can never meet the structural rules (n_kv_groups {dims['n_kv_groups'].describe()}, "
                    f"at most {q_per_kv} query heads per group, embed_dim {embed.describe()} divisible by n_heads)")

    def embed_params(self, ref: Any, e: Any) -> Any:
        return ref.vocab_size * e * (1 if ref.tied_head else 2) + e  # + final RMSNorm

    def layer_params(self, ref: Any, e: Any, h: Any, g: Any, i: Any, d: Any) -> Any:
        attn = e * h * d + 2 * e * g * d + h * d * e
        if ref.attention_bias:
            attn = attn + h * d + 2 * g * d + e
        mlp = 3 * e * i + ((2 * i + e) if ref.mlp_bias else 0)
        return attn + mlp + 2 * e  # two RMSNorms

    def reference_from_config(self, config: Any) -> dict[str, Any]:
        out = super().reference_from_config(config)
        heads = config.num_attention_heads
        out["n_kv_groups"] = getattr(config, "num_key_value_heads", None) or heads
        out["head_size"] = getattr(config, "head_dim", None) or config.hidden_size // heads
        out["attention_bias"] = bool(getattr(config, "attention_bias", False))
        out["mlp_bias"] = bool(getattr(config, "mlp_bias", False))
        return out

    def hf_config(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        out = super().hf_config(arch)
        return {**{k: out[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads")},
                "num_key_value_heads": arch["n_kv_groups"], "head_dim": arch["head_size"],
                "intermediate_size": out["intermediate_size"]}

    def hf_model(self, config: dict[str, Any]) -> Any:
        from transformers import LlamaConfig, LlamaForCausalLM

        return LlamaForCausalLM(LlamaConfig(**config))


LLAMA = Llama()
