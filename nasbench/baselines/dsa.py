"""The ``dsa`` baseline: each arch of a parameter band re-allocated layer by layer (in the spirit of DSA), the
allocation searched on calibration perplexity, then measured as a dense model.

For one uniform arch of the band, every ``(alpha, beta)`` of a small grid maps it through the sorted supernet's block
importance to per-layer head counts and MLP widths (:func:`nasbench.baselines.allocation.allocate`). A combo whose
parameter count leaves the band (``+-`` :data:`TOLERANCE` of the target share) is rejected: the baseline must stay
comparable with the ``sliced`` model of the same band. The others are cut from the importance-sorted pretrained
model (:func:`dense_model`, no training) and scored by perplexity on the space's ``calibration`` data, never the
perplexity corpus; the lowest wins. ``beta = 0`` is the uniform arch itself, i.e. the ``sliced`` model, so the search
can only match or beat ``sliced`` on calibration text.

HF's config holds one head count and one MLP width for all layers, so a per-layer arch cannot be extracted by
``Supernet.extract``. :func:`dense_model` builds it module by module instead: an HF model of the arch's largest
widths whose narrower layers get smaller ``nn.Linear`` s (and, for Llama, their own ``num_key_value_groups``, the
one per-layer attribute HF's attention reads besides the projections' shapes), loaded from the supernet's active
slices. Latency and memory are then those of a model that really runs the allocated widths.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from nasbench.baselines.allocation import allocate
from nasbench.errors import NasBenchError
from nasbench.space import SearchSpace, arch_id
from nasbench.space.schema import Dimension

__all__ = ["ALPHA", "BETA", "TOLERANCE", "Combo", "Search", "per_layer_space", "dense_model", "uniform_arch",
           "search"]

#: The default grid: alpha bends the normalised scores (< 1 lifts the weak layers' share, > 1 favours the strongest),
#: beta is the amplitude (0: the uniform arch, 0.5: the widest layer up to 1.5 x the mean width).
ALPHA = (0.5, 1.0, 2.0)
BETA = (0.0, 0.25, 0.5)
#: How far an allocated arch's parameter share may sit from the target: the bands' own +-1 pp.
TOLERANCE = 0.01


@dataclass
class Combo:
    """One tried ``(alpha, beta)`` of one band arch."""

    alpha: float
    beta: float
    status: str
    """``scored``, ``same arch as #k`` (not scored twice) or ``rejected: <why>``."""
    arch: dict[str, Any] | None = None
    """The per-layer arch (None when allocation itself failed)."""
    params: int | None = None
    share: float | None = None
    calibration_ppl: float | None = None

    def record(self) -> dict[str, Any]:
        """JSON-ready: the per-layer widths, not the whole arch (the band arch holds the rest)."""
        out: dict[str, Any] = {"alpha": self.alpha, "beta": self.beta, "status": self.status}
        if self.arch is not None:
            out |= {"n_heads": self.arch["n_heads"], "intermediate_size": self.arch["intermediate_size"],
                    "params": self.params, "share": None if self.share is None else round(self.share, 6)}
        if self.calibration_ppl is not None:
            out["calibration_ppl"] = self.calibration_ppl
        return out


@dataclass
class Search:
    """The search of one band arch: every combo in grid order and the winner."""

    band_arch: dict[str, Any]
    combos: list[Combo] = field(default_factory=list)
    best: int = -1
    """Index of the winning combo in ``combos``."""
    seconds: float = 0.0

    @property
    def chosen(self) -> Combo:
        return self.combos[self.best]

    def record(self) -> dict[str, Any]:
        return {"band_arch_id": arch_id(self.band_arch), "alpha": self.chosen.alpha, "beta": self.chosen.beta,
                "calibration_ppl": self.chosen.calibration_ppl, "seconds": round(self.seconds, 1),
                "combos": [c.record() for c in self.combos]}


def per_layer_space(space: SearchSpace, arch: Mapping[str, Any] | None = None) -> SearchSpace:
    """``space`` with ``intermediate_size`` (and, where the family allows it, ``n_heads``) per layer: the space the
    allocated archs live in, so that the supernet slices them and ``space.params`` counts them.

    With ``arch`` (a uniform arch of ``space``), the head choices are only the counts valid beside its kv groups,
    embedding width and head size: allocation snaps to allowed values, and a count no layer of this arch can have
    (4 heads on 1 kv group of at most 3 queries) would only turn into a rejected combo.
    """
    dims = dict(space.dimensions)
    names = ["intermediate_size"] + (["n_heads"] if space.model_family.per_layer_heads else [])
    for name in names:
        dim = dims[name]
        values = dim.values
        if name == "n_heads" and arch is not None:
            values = tuple(h for h in dim.candidates() if _valid_heads(space, arch, h)) or values
            dims[name] = Dimension(name, "choice", values, per_layer=True)
        else:
            dims[name] = dataclasses.replace(dim, per_layer=True)
    return dataclasses.replace(space, dimensions=dims)


def _valid_heads(space: SearchSpace, arch: Mapping[str, Any], heads: int) -> bool:
    row = {"embed_dim": arch["embed_dim"], "n_heads": heads, "n_kv_groups": arch["n_kv_groups"],
           "head_size": arch["head_size"]}
    return heads % row["n_kv_groups"] == 0 and all(rule.holds(row, space.reference)
                                                     for rule in space.model_family.head_rules(space.reference))


def uniform_arch(space: SearchSpace, arch: Mapping[str, Any]) -> dict[str, Any] | None:
    """The arch of ``space`` (scalar widths) an allocated arch is when every layer got the same widths, else None:
    such a model is the ``sliced`` one and its rows join the space's archs under the same arch_id."""
    flat = {k: (v[0] if isinstance(v, list) and len(set(v)) == 1 else v) for k, v in arch.items()}
    if any(isinstance(v, list) for v in flat.values()):
        return None
    return space.canonical(flat)


@torch.no_grad()
def dense_model(supernet: Any, arch: Mapping[str, Any], **indices: Any) -> Any:
    """A standalone dense HF model computing what ``supernet`` computes with ``arch`` active (per-layer widths
    allowed): the logits are the sliced supernet's. ``indices`` are :meth:`Supernet.set_sub_network`'s index lists
    (the layers of a sorted supernet). The supernet's active sub-network is left as it was.

    The config says the largest head count and MLP width of the arch (HF's attention sizes its projections from it,
    and LlamaConfig wants ``hidden_size`` divisible by the head count: the largest is a valid count of the arch);
    narrower layers get their own smaller linears, and ``config.nasbench_per_layer`` records the real widths. Such a
    model runs and is measured like any HF model, but ``save_pretrained`` / ``from_pretrained`` would not rebuild it.
    """
    import copy

    from transformers.initialization import no_init_weights

    canon = supernet.space.canonical(arch)
    heads, widths = _per_layer(canon["n_heads"], canon["n_layers"]), _per_layer(canon["intermediate_size"],
                                                                                  canon["n_layers"])
    hf = supernet.hf_model
    names = supernet.wiring.names
    config = copy.deepcopy(hf.config)
    top = dict(canon, n_heads=max(heads), intermediate_size=max(widths))
    for key, value in supernet.wiring.sub_config(top).items():
        setattr(config, key, value)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.nasbench_per_layer = {"n_heads": heads, "intermediate_size": widths}
    previous = supernet._selection  # restored below, as Supernet.extract does
    try:
        supernet.set_sub_network(canon, **indices)
        state = supernet._active_state_dict()  # the active slices under the dense model's names (LoRA merged)
    finally:
        if previous is None:
            supernet.reset()
        else:
            supernet.set_sub_network(previous[0], **previous[1])
    with no_init_weights():  # every parameter is overwritten below
        model = type(hf)._from_config(config, dtype=hf.dtype)
    blocks = getattr(model, names.base).layers
    per_layer_heads = supernet.space.model_family.per_layer_heads
    for layer, h, i in zip(blocks, heads, widths):
        attention, mlp = getattr(layer, names.attention), getattr(layer, names.mlp)
        if per_layer_heads and h != top["n_heads"]:
            rows = h * canon["head_size"]
            for name in names.q_rows:
                _resize(attention, name, out_features=rows)
            _resize(attention, names.attn_out, in_features=rows)
            # HF's attention reads its query heads from the projection (view(..., -1, head_dim)); the kv heads are
            # repeated num_key_value_groups times, so that is the one attribute a layer's head count changes
            attention.num_key_value_groups = h // canon["n_kv_groups"]
        if i != top["intermediate_size"]:
            for name in names.mlp_in:
                _resize(mlp, name, out_features=i)
            _resize(mlp, names.mlp_out, in_features=i)
    model.tie_weights()
    model.to(hf.device)
    expected = model.state_dict()
    for key, target in expected.items():
        if key not in state or tuple(target.shape) != tuple(state[key].shape):
            got = None if key not in state else tuple(state[key].shape)
            raise RuntimeError(f"dense_model: {key} is {got} in the supernet slice, the dense model wants "
                               f"{tuple(target.shape)}")
    model.load_state_dict({key: state[key] for key in expected}, strict=True)
    model.generation_config = copy.deepcopy(hf.generation_config)
    return model.eval()


def _per_layer(value: Any, n_layers: int) -> list[int]:
    return [int(v) for v in value] if isinstance(value, list) else [int(value)] * n_layers


def _resize(parent: nn.Module, name: str, *, in_features: int | None = None, out_features: int | None = None) -> None:
    old = getattr(parent, name)
    setattr(parent, name, nn.Linear(in_features or old.in_features, out_features or old.out_features,
                                    bias=old.bias is not None, device=old.weight.device, dtype=old.weight.dtype))


def search(supernet: Any, space: SearchSpace, uniform: Mapping[str, Any], scores: Sequence[float],
           windows: torch.Tensor, target: float, *, alpha: Sequence[float] = ALPHA, beta: Sequence[float] = BETA,
           tolerance: float = TOLERANCE, layers: Sequence[int] | None = None, batch_size: int = 4,
           device: str = "cpu", progress: Any = None) -> tuple[Search, Any]:
    """Try every ``(alpha, beta)`` on the band arch ``uniform`` (see the module docstring); return the search and the
    winner's dense model (float32, on ``device``).

    ``supernet``: the importance-sorted model made elastic over :func:`per_layer_space` of ``space``; ``scores``: the
    block importance of the arch's active layers (model order, :func:`~nasbench.baselines.allocation.layer_scores`);
    ``windows``: calibration token windows; ``target``: the band's share of the full model's params; ``layers``:
    the reference layers the arch runs. Combos are visited by ascending beta, then alpha, so on a tie in
    calibration perplexity the smaller amplitude (the uniform arch first) wins. ``progress()`` is called per combo.
    """
    from nasbench.perplexity import perplexity

    start = time.perf_counter()
    full = space.params(space.largest())
    local = per_layer_space(space, uniform)
    result = Search(space.canonical(uniform))
    seen: dict[str, int] = {}
    best_model, best_ppl = None, math.inf
    for b in sorted(set(float(x) for x in beta)):
        for a in sorted(set(float(x) for x in alpha)):
            combo = Combo(a, b, "scored")
            result.combos.append(combo)
            if progress is not None:
                progress()
            try:
                combo.arch = local.check(allocate(local, uniform, scores, a, b))
            except NasBenchError as error:  # e.g. a snapped width the space's constraints refuse
                combo.status = f"rejected: {error.line()}"
                continue
            combo.params = space.params(combo.arch)
            combo.share = combo.params / full
            if abs(combo.share - target) > tolerance:
                combo.status = (f"rejected: {combo.share:.2%} of the full params, outside {target * 100:g}% +- "
                                f"{tolerance * 100:g} pp")
                continue
            key = arch_id(combo.arch)
            if key in seen:  # beta = 0 under every alpha, or widths that snap alike: one model, one score
                combo.status = f"same arch as #{seen[key]}"
                combo.calibration_ppl = result.combos[seen[key]].calibration_ppl
                continue
            seen[key] = len(result.combos) - 1
            model = dense_model(supernet, combo.arch, **({} if layers is None else {"layers": list(layers)}))
            model = model.to(device=device, dtype=torch.float32).eval()
            combo.calibration_ppl = float(perplexity(model, windows, batch_size=batch_size).ppl)
            if combo.calibration_ppl < best_ppl:  # strict: ties keep the earlier (smaller beta) combo
                best_ppl, best_model, result.best = combo.calibration_ppl, model, len(result.combos) - 1
            else:
                del model
    if best_model is None:
        raise NasBenchError("target", f"no (alpha, beta) of the grid keeps {arch_id(uniform)} within "
                                      f"{tolerance * 100:g} pp of the band", target)
    result.seconds = time.perf_counter() - start
    return result, best_model
