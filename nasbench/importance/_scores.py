"""Importance sorting: score heads, MLP neurons, embedding channels and layers, then permute the weights.

Scores are activation-based (Minitron): one pass over calibration tokens with forward hooks on a plain HF model.
A scheme ``<batch>-<seq>`` names how a component's per-token magnitudes are aggregated, first across the sequence of
each calibration window, then across windows: ``mean``, ``norm`` (L2) or ``var``. Per token, a head's magnitude is
the L2 norm of its attention output, a neuron's the absolute value of the down projection's input, a channel's the
absolute value of every LayerNorm/RMSNorm output summed over layers. The permutation and the index lists of a
sub-network are maths of the supernet (:mod:`nasbench.supernet.order`).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from nasbench.errors import NasBenchError, check_choice, one_of
from nasbench.importance._schemes import (AGGREGATIONS, DEFAULT_LAYER_SCHEME, DEFAULT_SCHEME, LAYER_SCHEMES, SCHEMES,
                                          SORT_SEQ_LEN, SORT_TOKENS)
from nasbench.supernet.order import (IMPORTANCE_FILE, Importance, apply_order, attn_out, decoder_layers, family_of,
                                     load_importance, mlp_out, model_family, sub_network_indices)

__all__ = ["IMPORTANCE_FILE", "Importance", "score", "layer_importance", "apply_order", "family_of",
           "calibration_windows", "sort_model", "load_importance", "sub_network_indices"]


# ------------------------------------------------------------------------------------------------------- scoring
def _aggregate(x: torch.Tensor, how: str, dim: int) -> torch.Tensor:
    if how == "mean":
        return x.mean(dim)
    if how == "norm":
        return x.norm(dim=dim)
    if how == "var":
        return x.var(dim, unbiased=False)
    raise NasBenchError("scheme", f"aggregation {one_of(AGGREGATIONS)}", how)


def _parse_scheme(scheme: str) -> tuple[str, str]:
    if scheme not in SCHEMES:
        raise NasBenchError("scheme", f"{one_of(SCHEMES)} (<batch>-<sequence> aggregation)", scheme)
    batch, seq = scheme.split("-")
    return batch, seq


@torch.inference_mode()
def score(model: nn.Module, windows: torch.Tensor, schemes: Iterable[str] = (DEFAULT_SCHEME,), batch_size: int = 4,
          progress: Callable[[int], None] | None = None) -> dict[str, Importance]:
    """Activation importance of heads, neurons and channels for each scheme, from one pass over ``windows``.

    ``windows`` is a [n, seq_len] LongTensor of calibration tokens; every scheme reuses the same pass (per window the
    per-token magnitudes are reduced over the sequence by each sequence aggregation, then kept per window).
    """
    schemes = list(dict.fromkeys(schemes))
    parsed = {s: _parse_scheme(s) for s in schemes}
    seq_aggs = sorted({seq for _, seq in parsed.values()})
    family = model_family(model)
    layers = decoder_layers(model)
    n_heads = model.config.num_attention_heads
    # per window: {seq_agg: tensor}; kept as lists and reduced across windows at the end
    heads: list[dict[str, list[torch.Tensor]]] = [{a: [] for a in seq_aggs} for _ in layers]
    neurons: list[dict[str, list[torch.Tensor]]] = [{a: [] for a in seq_aggs} for _ in layers]
    channels: dict[str, list[torch.Tensor]] = {a: [] for a in seq_aggs}
    channel_sum: list[torch.Tensor | None] = [None]

    def per_window(values: torch.Tensor, store: dict[str, list[torch.Tensor]]) -> None:
        # values: [batch, seq, components] magnitudes
        for agg in seq_aggs:
            store[agg].extend(_aggregate(values.float(), agg, dim=1))

    def head_hook(i: int) -> Callable:
        def hook(module: nn.Module, args: tuple) -> None:
            x = args[0]
            per_head = x.reshape(*x.shape[:-1], n_heads, -1).float().norm(dim=-1)
            per_window(per_head, heads[i])
        return hook

    def neuron_hook(i: int) -> Callable:
        def hook(module: nn.Module, args: tuple) -> None:
            per_window(args[0].abs(), neurons[i])
        return hook

    def norm_hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        value = output.abs().float()
        channel_sum[0] = value if channel_sum[0] is None else channel_sum[0] + value

    handles = []
    for i, layer in enumerate(layers):
        handles.append(attn_out(layer, family).register_forward_pre_hook(head_hook(i)))
        handles.append(mlp_out(layer, family).register_forward_pre_hook(neuron_hook(i)))
        for name in family.modules.norms:
            handles.append(getattr(layer, name).register_forward_hook(norm_hook))
    try:
        for start in range(0, len(windows), batch_size):
            batch = windows[start:start + batch_size]
            channel_sum[0] = None
            model(input_ids=batch)
            per_window(channel_sum[0], channels)
            if progress is not None:
                progress(batch.numel())
    finally:
        for handle in handles:
            handle.remove()

    out = {}
    for scheme, (batch_agg, seq_agg) in parsed.items():
        def reduce(store: dict[str, list[torch.Tensor]]) -> list[float]:
            return _aggregate(torch.stack(store[seq_agg]), batch_agg, dim=0).tolist()

        out[scheme] = Importance(scheme=scheme, heads=[reduce(h) for h in heads],
                                 neurons=[reduce(n) for n in neurons], channels=reduce(channels),
                                 tokens=int(windows.numel()))
    return out


@torch.inference_mode()
def layer_importance(model: nn.Module, windows: torch.Tensor, scheme: str = DEFAULT_LAYER_SCHEME, batch_size: int = 4,
                     nll: Callable[[nn.Module, torch.Tensor], float] | None = None) -> list[float]:
    """One score per layer; higher means the layer matters more.

    ``block-importance``: 1 - cosine similarity of a block's input and output, averaged over tokens (ShortGPT's BI).
    ``block-drop``: increase of the mean next-token NLL over ``windows`` when the block is skipped (``nll`` computes
    the mean NLL of a model on windows; the project's perplexity function, so both agree).
    """
    layers = decoder_layers(model)
    if scheme == "block-importance":
        sums = torch.zeros(len(layers), dtype=torch.float64)
        count = [0]

        def hook(i: int) -> Callable:
            def run(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
                x = args[0] if args else kwargs["hidden_states"]
                y = output[0] if isinstance(output, tuple) else output
                sums[i] += (1 - torch.nn.functional.cosine_similarity(x.float(), y.float(), dim=-1)).sum().double()
            return run

        handles = [layer.register_forward_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)]
        try:
            for start in range(0, len(windows), batch_size):
                batch = windows[start:start + batch_size]
                model(input_ids=batch)
                count[0] += batch.numel()
        finally:
            for handle in handles:
                handle.remove()
        return (sums / max(count[0], 1)).tolist()
    if scheme == "block-drop":
        if nll is None:
            raise NasBenchError("scheme", "block-drop needs an NLL function", scheme)
        base = nll(model, windows)
        scores = []
        for layer in layers:
            handle = layer.register_forward_hook(_skip_hook, with_kwargs=True)
            try:
                scores.append(nll(model, windows) - base)
            finally:
                handle.remove()
        return scores
    raise NasBenchError("scheme", one_of(LAYER_SCHEMES), scheme)


def _skip_hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
    """Replace a block's output by its input: the block is dropped."""
    x = args[0] if args else kwargs["hidden_states"]
    return (x, *output[1:]) if isinstance(output, tuple) else x


# ------------------------------------------------------------------------------------------------------- runner
#: Written next to the sorted supernet's weights: the scores, the scheme and the permutations applied.
def calibration_windows(space: Any, tokenizer: Any, data_dir: Path | None, tokens: int,
                        seq_len: int = 512) -> torch.Tensor:
    """``tokens`` calibration tokens as [n, seq_len] windows, an equal share from each source of ``data.calibration``.

    Each file is tokenized once with no special tokens and its share cut from its start, so the mix is the same for
    every run with the same budget.
    """
    from nasbench import data
    from nasbench.perplexity import tokenize_corpus, windows

    if "calibration" not in space.data:
        raise NasBenchError(f"{space.path}:data.calibration", "importance needs a calibration data source", None,
                            show_got=False)
    source = space.data["calibration"]
    parts = [type(source)(source.name, source.kind, (p,), source.hf[i:i + 1] if source.hf else ())
             for i, p in enumerate(source.paths)]
    share = max(seq_len, tokens // len(parts) // seq_len * seq_len)
    chunks = [windows(tokenize_corpus(tokenizer, data.read_text(p, data_dir)), seq_len, share) for p in parts]
    return torch.cat(chunks)


def sort_model(space: Any, out: str | Path, *, scheme: str = DEFAULT_SCHEME, layer_scheme: str = DEFAULT_LAYER_SCHEME,
               tokens: int = SORT_TOKENS, seq_len: int = SORT_SEQ_LEN, data_dir: Path | None = None,
               batch_size: int = 4, progress: bool = True) -> Importance:
    """Score the space's base model, permute it, and save the sorted supernet to ``out`` (safetensors, tokenizer,
    :data:`IMPORTANCE_FILE`). Returns the importance (with layer scores)."""
    import time

    from tqdm.auto import tqdm

    from nasbench.models import load_base_model, load_tokenizer
    from nasbench.perplexity import perplexity

    check_choice("layer_scheme", layer_scheme, LAYER_SCHEMES)
    _parse_scheme(scheme)
    tokenizer = load_tokenizer(space.model)
    model = load_base_model(space.model, dtype=torch.float32)
    calib = calibration_windows(space, tokenizer, data_dir, tokens, seq_len)
    start = time.perf_counter()
    with tqdm(total=calib.numel(), unit="tok", desc="importance", disable=not progress) as bar:
        importance = score(model, calib, [scheme], batch_size=batch_size, progress=bar.update)[scheme]
    nll = (lambda m, w: perplexity(m, w, batch_size=batch_size).nll)
    importance.layers = layer_importance(model, calib, layer_scheme, batch_size=batch_size, nll=nll)
    importance.layer_scheme = layer_scheme
    record = apply_order(model, importance)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    payload = asdict(importance) | {"space": space.name, "space_hash": space.hash, "permutation": record,
                                    "layer_order": importance.layer_order(), "seconds": time.perf_counter() - start}
    (out / IMPORTANCE_FILE).write_text(json.dumps(payload), encoding="utf-8")
    return importance
