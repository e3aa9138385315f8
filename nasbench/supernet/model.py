"""The :class:`Supernet`: a real HF model made elastic in place, plus extraction of dense sub-networks."""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.initialization import no_init_weights

from nasbench.errors import NasBenchError
from nasbench.models import check_reference, load_base_model
from nasbench.space import SearchSpace
from nasbench.supernet.wiring import Plan, Wiring, check_extractable, wiring_for
from nasbench.supernet.modules import ElasticEmbedding, ElasticLayerNorm, ElasticLinear, ElasticModule, ElasticRMSNorm

__all__ = ["Supernet"]


def _unwrap(model: nn.Module) -> PreTrainedModel:
    """The HF model inside a peft model (or ``model`` itself)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not isinstance(inner, PreTrainedModel):
        raise NasBenchError("model", "the supernet wraps a transformers PreTrainedModel (or a peft model of one)",
                            type(inner).__name__)
    return inner


class Supernet(nn.Module):
    """A pretrained HF causal LM whose sub-networks are selected by :meth:`set_sub_network`.

    The HF model is made elastic in place: its linear layers, embedding, norms, rotary embedding and layer list
    become the elastic subclasses of :mod:`nasbench.supernet.modules` (same parameters, same state-dict keys). It
    stays an HF model: ``supernet.model`` works with ``generate``, peft (``get_peft_model(supernet.model, ...)``)
    and lm-eval (``HFLM(pretrained=supernet.model)``), and always returns logits over the full vocabulary, whatever
    the active ``embed_dim``. Calling the supernet calls the model.
    """

    def __init__(self, model: nn.Module, space: SearchSpace) -> None:
        super().__init__()
        hf = _unwrap(model)
        check_reference(space.model, hf.config)
        self.model = model
        self.space = space
        self.wiring: Wiring = wiring_for(space.family)(hf, space.reference)
        self.arch: dict[str, Any] | None = None
        """The active sub-network's canonical arch; ``None`` while the whole supernet is active."""
        self._selection: tuple[dict[str, Any], dict[str, Any]] | None = None
        self._plan: Plan | None = None

    @classmethod
    def from_space(cls, space: SearchSpace, dtype: torch.dtype = torch.float32) -> "Supernet":
        """Load the space's base model (:func:`nasbench.models.load_base_model`) and make it a supernet."""
        return cls(load_base_model(space.model, dtype=dtype), space)

    # -- the HF side ----------------------------------------------------------------------------------------------
    @property
    def hf_model(self) -> PreTrainedModel:
        """The HF model (inside the peft wrapper, if any)."""
        return _unwrap(self.model)

    @property
    def config(self) -> Any:
        return self.hf_model.config

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        return self.model.generate(*args, **kwargs)

    # -- sub-networks ---------------------------------------------------------------------------------------------
    def set_sub_network(self, arch: Mapping[str, Any], *, layers: Sequence[int] | None = None, heads: Any = None,
                        kv_groups: Any = None, neurons: Any = None,
                        channels: Sequence[int] | None = None) -> dict[str, Any]:
        """Activate ``arch`` (validated by ``space.canonical``) and return its canonical form.

        By default every dimension keeps the first units (layers, kv groups, query heads of each group, neurons,
        channels). The explicit index lists override that (the hook of importance sorting):

        - ``layers``: the ``n_layers`` reference layers to run, in order;
        - ``heads``: the query heads (reference indices, group by group), ``n_heads`` of them;
        - ``kv_groups``: the key/value heads, ``n_kv_groups`` of them (llama);
        - ``neurons``: the MLP neurons, ``intermediate_size`` of them;
        - ``channels``: the embedding channels, ``embed_dim`` of them.

        ``heads``, ``kv_groups`` and ``neurons`` are one list for every layer or a list of lists, one per active
        layer. Raise IllegalSubNetworkError naming the dimension or list, the rule and the value.
        """
        canon = self.space.canonical(arch)
        options = {"layers": layers, "heads": heads, "kv_groups": kv_groups, "neurons": neurons, "channels": channels}
        plan = self.wiring.plan(canon, **options)
        self.wiring.apply(plan)
        self.arch, self._selection, self._plan = canon, (canon, options), plan
        return canon

    def reset(self) -> None:
        """Make the whole supernet active again."""
        self.wiring.reset()
        self.arch, self._selection, self._plan = None, None, None

    def clear_cache(self) -> None:
        """Drop the cached gathered weights of every elastic layer (after writing ``weight.data`` directly)."""
        for module in self.hf_model.modules():
            if isinstance(module, ElasticModule):
                module.clear_cache()

    # -- extraction -----------------------------------------------------------------------------------------------
    def extract(self, arch: Mapping[str, Any], **indices: Any) -> PreTrainedModel:
        """A standalone dense HF model of the same class for ``arch``, weights copied from the active slices.

        Its config has the reduced ``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``,
        ``num_key_value_heads``, ``head_dim`` and ``intermediate_size``; its logits equal the sliced supernet's.
        LoRA adapters of a peft-wrapped supernet are merged into the extracted weights. ``indices`` are the index
        lists of :meth:`set_sub_network`. Archs with per-layer widths raise IllegalSubNetworkError (HF's config has
        one width for all layers). The active sub-network is left as it was.
        """
        canon = self.space.canonical(arch)
        check_extractable(self.space.family, canon)
        previous = self._selection
        try:
            self.set_sub_network(canon, **indices)
            return self._extract(canon)
        finally:
            if previous is None:
                self.reset()
            else:
                self.set_sub_network(previous[0], **previous[1])

    def _extract(self, arch: dict[str, Any]) -> PreTrainedModel:
        hf = self.hf_model
        config = copy.deepcopy(hf.config)
        for key, value in self.wiring.sub_config(arch).items():
            setattr(config, key, value)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        with no_init_weights():  # every parameter is overwritten below; skip the random init (seconds at 135M)
            model = type(hf)._from_config(config, dtype=hf.dtype)
        model.tie_weights()
        model.to(hf.device)
        expected = model.state_dict()
        state = self._active_state_dict()
        missing = sorted(set(expected) - set(state))
        if missing:
            raise RuntimeError(f"extract: no weights for {missing[:5]} (the {self.space.family} wiring misses them)")
        with torch.no_grad():
            for key, target in expected.items():
                if tuple(target.shape) != tuple(state[key].shape):
                    raise RuntimeError(f"extract: {key} has shape {tuple(state[key].shape)}, the extracted config "
                                       f"wants {tuple(target.shape)}")
            model.load_state_dict({key: state[key] for key in expected}, strict=True)
        model.generation_config = copy.deepcopy(hf.generation_config)
        return model.eval()

    @torch.no_grad()
    def _active_state_dict(self) -> dict[str, torch.Tensor]:
        """Every active slice under the extracted model's parameter names (layers renumbered, LoRA merged)."""
        hf, plan = self.hf_model, self._plan
        positions = {lp.source: p for p, lp in enumerate(plan.layers)} if plan is not None else None
        prefix = self.wiring.layers_path + "."
        deltas = _lora_deltas(hf)
        state: dict[str, torch.Tensor] = {}
        for name, module in hf.named_modules():
            if not isinstance(module, ElasticModule):
                continue
            clean = name.replace(".base_layer", "")
            if clean.startswith(prefix) and positions is not None:
                index, rest = clean[len(prefix):].split(".", 1)
                if int(index) not in positions:
                    continue
                clean = f"{prefix}{positions[int(index)]}.{rest}"
            if isinstance(module, ElasticLinear):
                weight = module.weight
                if id(module) in deltas:
                    weight = weight + deltas[id(module)].to(weight.dtype)
                state[f"{clean}.weight"] = module.slice_weight(weight)
                if module.bias is not None:
                    state[f"{clean}.bias"] = module.active_bias()
            elif isinstance(module, (ElasticEmbedding, ElasticRMSNorm)):
                state[f"{clean}.weight"] = module.active_weight()
            elif isinstance(module, ElasticLayerNorm):
                if module.weight is not None:
                    state[f"{clean}.weight"] = module.active_weight()
                if module.bias is not None:
                    state[f"{clean}.bias"] = module.active_bias()
            else:
                raise TypeError(f"extract: no rule for the elastic module {type(module).__name__} at {name}")
        return state


def _lora_deltas(model: nn.Module) -> dict[int, torch.Tensor]:
    """``id(elastic linear) -> summed LoRA delta`` of the active, unmerged peft LoRA adapters wrapping it."""
    deltas: dict[int, torch.Tensor] = {}
    for name, module in model.named_modules():
        base = getattr(module, "base_layer", None)
        if not isinstance(base, ElasticLinear) or not hasattr(module, "get_delta_weight"):
            continue
        if getattr(module, "merged", False):
            continue  # already in base.weight
        for adapter in getattr(module, "active_adapters", []):
            if adapter not in getattr(module, "lora_A", {}):
                continue
            if getattr(module, "use_dora", {}).get(adapter, False):
                raise NasBenchError(name, "extract merges plain LoRA adapters; DoRA is not supported", adapter)
            delta = module.get_delta_weight(adapter)
            deltas[id(base)] = deltas[id(base)] + delta if id(base) in deltas else delta
    return deltas
