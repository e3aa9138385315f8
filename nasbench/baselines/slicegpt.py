"""SliceGPT (Ashkboos et al. 2024, "SliceGPT: Compress Large Language Models by Deleting Rows and Columns"), Llama.

1. Fold every RMSNorm's weight into the linear layers that read it (q/k/v, gate/up, the LM head; the head is
   untied from the embedding first), so each norm is a plain ``x / rms(x)``, which commutes with any orthogonal Q.
2. Block by block on the calibration windows (as the reference's ``rotate_and_slice_sequential``): the residual
   signal at each norm's input (the embedding output, between attention and MLP, after the MLP) gets its own PCA basis
   ``Q`` (eigenvectors of ``sum x^T x`` in float64, dampened by 1% of the mean eigenvalue, largest first), computed
   on the signal of the already sliced earlier blocks. Weights that read the stream become ``W Q``, weights that write
   it ``Q^T W``, and each residual connection carries ``Q_before^T Q_after`` (a ``D' x D'`` matrix, two per block).
3. Only the first ``D'`` principal directions are kept: ``D' = floor((1 - slicing) * D)`` rounded down to a multiple
   of 8. Rows and columns of every matrix touching the stream are deleted; attention heads and MLP width stay.

The norms of the sliced model divide by the mean square over the *original* ``D`` (the reference's ``RMSN``): here a
norm weight of ``sqrt(D / D')`` and ``eps * D / D'``, so the result stays a ``LlamaForCausalLM`` whose decoder blocks
are :class:`SlicedLlamaDecoderLayer` (the two shortcut matrices). At 0% slicing the model computes the same function
(computational invariance, tested). The real parameter count includes the untied head and the shortcut matrices, so on
a small model with a large vocabulary SliceGPT can *grow* the model at low slicing: store and compare that count.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import nn
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

from nasbench.baselines._layerwise import layer_inputs
from nasbench.errors import NasBenchError

__all__ = ["ROUND_TO", "SlicedLlamaDecoderLayer", "sliced_dim", "sliced_arch", "fold_norms", "slice_model"]

ROUND_TO = 8
_DAMP = 0.01


class SlicedLlamaDecoderLayer(LlamaDecoderLayer):
    """A Llama block whose residual connections are the linear maps ``attn_shortcut`` and ``mlp_shortcut``."""

    attn_shortcut: nn.Linear
    mlp_shortcut: nn.Linear

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if args:
            raise TypeError("SlicedLlamaDecoderLayer takes its arguments after hidden_states by keyword")
        attn, _ = self.self_attn(hidden_states=self.input_layernorm(hidden_states), **kwargs)
        hidden_states = self.attn_shortcut(hidden_states) + attn
        return self.mlp_shortcut(hidden_states) + self.mlp(self.post_attention_layernorm(hidden_states))


def sliced_dim(hidden: int, slicing: float, round_to: int = ROUND_TO) -> int:
    """``floor((1 - slicing) * hidden)`` rounded down to a multiple of ``round_to`` (the hidden size itself at 0)."""
    if not 0.0 <= slicing < 1.0 or not math.isfinite(slicing):
        raise NasBenchError("slicing", "must be a fraction in [0, 1)", slicing)
    dim = int((1.0 - slicing) * hidden)
    dim -= dim % round_to
    if dim < round_to:
        raise NasBenchError("slicing", f"leaves fewer than {round_to} of {hidden} hidden channels", slicing)
    return dim


def sliced_arch(reference: Any, slicing: float, round_to: int = ROUND_TO) -> dict[str, Any]:
    """The arch encoding of a SliceGPT model of a space's reference model (``SearchSpace.reference``): the space's
    dimensions with the sliced ``embed_dim``, plus what is not a dimension of any space (method, slicing, the
    original width, the two ``D' x D'`` shortcuts per block, the untied head)."""
    return {"method": "slicegpt", "slicing": slicing, "embed_dim": sliced_dim(reference.embed_dim, slicing, round_to),
            "base_embed_dim": reference.embed_dim, "n_layers": reference.n_layers, "n_heads": reference.n_heads,
            "n_kv_groups": reference.n_kv_groups, "head_size": reference.head_size,
            "intermediate_size": reference.intermediate_size, "shortcuts_per_layer": 2, "tied_head": False}


def _check_llama(model: nn.Module) -> None:
    if getattr(model.config, "model_type", None) != "llama":
        raise NasBenchError("method", "slicegpt is implemented for llama models", model.config.model_type)


@torch.no_grad()
def fold_norms(model: nn.Module) -> nn.Module:
    """Untie the LM head and fold every RMSNorm weight into the linear layers after it (norm weights become 1)."""
    _check_llama(model)
    embed, head = model.model.embed_tokens, model.lm_head
    if head.weight.data_ptr() == embed.weight.data_ptr():
        head.weight = nn.Parameter(embed.weight.detach().clone())
    model.config.tie_word_embeddings = False
    pairs = [(layer.input_layernorm, (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj))
             for layer in model.model.layers]
    pairs += [(layer.post_attention_layernorm, (layer.mlp.gate_proj, layer.mlp.up_proj))
              for layer in model.model.layers]
    pairs.append((model.model.norm, (head,)))
    for norm, linears in pairs:
        for linear in linears:
            linear.weight.mul_(norm.weight.to(linear.weight.dtype).unsqueeze(0))
        norm.weight.fill_(1.0)
    return model


def _pca(signals: Sequence[torch.Tensor]) -> torch.Tensor:
    """Eigenvectors of the dampened ``sum x^T x`` (float64), largest eigenvalue first, as columns."""
    gram = None
    for x in signals:
        flat = x.reshape(-1, x.shape[-1]).double()
        gram = flat.T @ flat if gram is None else gram + flat.T @ flat
    gram += torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device) * _DAMP * torch.diag(gram).mean()
    values, vectors = torch.linalg.eigh(gram)
    return vectors[:, torch.argsort(values, descending=True)]


def _set(linear: nn.Linear, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
    linear.weight = nn.Parameter(weight.to(linear.weight.dtype).contiguous())
    linear.out_features, linear.in_features = weight.shape
    if bias is not None:
        linear.bias = nn.Parameter(bias.to(linear.bias.dtype).contiguous())


def _reads(linear: nn.Linear, q: torch.Tensor) -> None:
    """``linear`` reads the stream in the basis ``q`` (its first columns kept): ``W <- W Q``."""
    _set(linear, linear.weight.double() @ q)


def _writes(linear: nn.Linear, q: torch.Tensor) -> None:
    """``linear`` writes the stream in the basis ``q``: ``W <- Q^T W``, ``b <- b Q``."""
    bias = None if linear.bias is None else linear.bias.double() @ q
    _set(linear, q.T @ linear.weight.double(), bias)


def _shortcut(before: torch.Tensor, after: torch.Tensor, dtype: torch.dtype) -> nn.Linear:
    """The residual map from basis ``before`` to ``after`` (both ``D x D'``): ``x -> x before^T after``."""
    matrix = before.T @ after
    linear = nn.Linear(matrix.shape[0], matrix.shape[1], bias=False, device=before.device, dtype=dtype)
    linear.weight = nn.Parameter(matrix.T.to(dtype).contiguous())
    return linear


def _set_norm(norm: nn.Module, dim: int, scale: float, eps: float) -> None:
    norm.weight = nn.Parameter(torch.full((dim,), scale, dtype=norm.weight.dtype, device=norm.weight.device))
    norm.variance_epsilon = eps


@torch.no_grad()
def slice_model(model: nn.Module, windows: torch.Tensor, slicing: float, *, round_to: int = ROUND_TO,
                batch_size: int = 4, progress: Callable[[int], Any] | None = None) -> nn.Module:
    """Rotate and slice a llama ``model`` in place with PCA bases from ``windows`` (``[k, seq]``); returns it.

    ``progress(i)`` is called after block ``i``. See the module docstring.
    """
    _check_llama(model)
    config = model.config
    full = config.hidden_size
    dim = sliced_dim(full, slicing, round_to)
    head_dim = getattr(config, "head_dim", None) or full // config.num_attention_heads
    scale, eps = math.sqrt(full / dim), config.rms_norm_eps * full / dim
    dtype = model.model.embed_tokens.weight.dtype
    fold_norms(model)
    inputs = layer_inputs(model, windows, batch_size)
    basis = _pca([h for h, _ in inputs])[:, :dim]
    embed = model.model.embed_tokens
    embed.weight = nn.Parameter((embed.weight.double() @ basis).to(dtype).contiguous())
    embed.embedding_dim = dim
    stream = [((h.double() @ basis).to(h.dtype), kwargs) for h, kwargs in inputs]
    for index, layer in enumerate(model.model.layers):
        attn, mlp = layer.self_attn, layer.mlp
        for linear in (attn.q_proj, attn.k_proj, attn.v_proj):
            _reads(linear, basis)
        _set_norm(layer.input_layernorm, dim, scale, eps)
        low = basis.to(dtype)
        mid = [h @ low.T + attn(hidden_states=layer.input_layernorm(h), **kwargs)[0] for h, kwargs in stream]
        mid_basis = _pca(mid)[:, :dim]
        _writes(attn.o_proj, mid_basis)
        attn_shortcut = _shortcut(basis, mid_basis, dtype)
        for linear in (mlp.gate_proj, mlp.up_proj):
            _reads(linear, mid_basis)
        _set_norm(layer.post_attention_layernorm, dim, scale, eps)
        low_mid = mid_basis.to(dtype)
        mid = [a @ low_mid for a in mid]
        out = [a @ low_mid.T + mlp(layer.post_attention_layernorm(a)) for a in mid]
        out_basis = _pca(out)[:, :dim]
        _writes(mlp.down_proj, out_basis)
        layer.__class__ = SlicedLlamaDecoderLayer
        layer.attn_shortcut = attn_shortcut
        layer.mlp_shortcut = _shortcut(mid_basis, out_basis, dtype)
        layer.hidden_size = dim
        low_out = out_basis.to(dtype)
        stream = [(r @ low_out, kwargs) for r, (_, kwargs) in zip(out, stream)]
        basis = out_basis
        if progress is not None:
            progress(index)
    _reads(model.lm_head, basis)
    _set_norm(model.model.norm, dim, scale, eps)
    config.hidden_size, config.head_dim, config.rms_norm_eps = dim, head_dim, eps
    return model
