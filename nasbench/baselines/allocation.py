"""Layer-wise allocation in the spirit of DSA (Li et al. 2024, "Discovering Sparsity Allocation for Layer-wise Pruning
of Large Language Models"): per-layer widths are not searched one by one but set by a small searched function of the
layer importance scores, so a per-layer space costs two extra numbers instead of ``|choices| ^ n_layers``.

A space whose dimensions are ``per_layer: true`` (``spaces/smollm2-135m-layerwise.yaml``) opts in with::

    allocation:
      scores: layers                 # the sorted supernet's per-layer (block) importance, Importance.layers
      alpha: {choice: [0.5, 1, 2]}   # shape: how the normalized scores are bent
      beta: {choice: [0, 0.25, 0.5]} # amplitude: the widest layer gets up to (1 + beta) x the mean width

The searched point is then a *uniform* arch (every per-layer dimension one value, its mean width ``w``) plus
``alpha`` and ``beta``. :func:`allocate` maps it to a per-layer arch: over the arch's active layers (the
``n_layers`` most important, in order), ``u = (s - min s) / (max s - min s)``, ``c = u^alpha - mean(u^alpha)``,
``width_l = w * (1 + beta * c_l / max|c|)``, snapped to the dimension's nearest allowed value. ``beta = 0`` is the
uniform arch; the mean width stays ``w`` up to the snapping, so the parameter count stays near the uniform arch's.
DSA searches a richer expression (compositions of transforms) with an evolutionary search over the same kind of map;
this is its smallest honest form: two scalars, an explicit formula, the rest of nasbench unchanged (the result is an
ordinary per-layer arch of the space: the supernet slices it; HF's config has one width per model, so it is measured
on the sliced supernet, not exported).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from nasbench.errors import InvalidSpaceError, NasBenchError, one_of
from nasbench.space import SearchSpace

__all__ = ["SCORES", "Allocation", "allocate", "layer_scores"]

#: Where the per-layer scores come from: ``layers`` the block importance of a sorted supernet (Importance.layers).
SCORES = ("layers",)


@dataclass(frozen=True)
class Allocation:
    """A space's ``allocation:`` section: the searched parameters of the layer-wise map."""

    alpha: tuple[float, ...]
    """Choices of the shape exponent (> 0)."""
    beta: tuple[float, ...]
    """Choices of the amplitude, in [0, 1)."""
    scores: str = "layers"

    @classmethod
    def from_space(cls, space: SearchSpace) -> "Allocation":
        """The space's section, validated (every error names ``file:allocation.<key>``, the rule and the value)."""
        where = f"{space.path}:allocation"
        section = (yaml.safe_load(space.yaml_text) or {}).get("allocation")
        if section is None:
            raise InvalidSpaceError(where, "the space has no allocation: section", None, show_got=False)
        if not isinstance(section, dict) or set(section) - {"scores", "alpha", "beta"}:
            raise InvalidSpaceError(where, "must be a mapping of scores, alpha, beta", section)
        if not space.per_layer:
            raise InvalidSpaceError(where, "needs per-layer dimensions (per_layer: true) to allocate", None,
                                    show_got=False)
        scores = section.get("scores", "layers")
        if scores not in SCORES:
            raise InvalidSpaceError(f"{where}.scores", one_of(SCORES), scores)
        alpha = _choices(section.get("alpha", {"choice": [1.0]}), f"{where}.alpha", 0.0, math.inf, low_open=True)
        beta = _choices(section.get("beta", {"choice": [0.0]}), f"{where}.beta", 0.0, 1.0, high_open=True)
        return cls(alpha, beta, scores)

    def cardinality(self, space: SearchSpace) -> int:
        """Points of the allocated space: uniform archs (per-layer dimensions counted once) x alpha x beta."""
        dims = space.dimensions
        total = 0
        for n_layers in dims["n_layers"].candidates():
            total += math.prod(dims[d].count() for d in dims if d != "n_layers")
        return total * len(self.alpha) * len(self.beta)

    def sample(self, space: SearchSpace, scores: Sequence[float], n: int, seed: int = 0,
               max_trials: int = 10_000) -> list[tuple[dict[str, Any], float, float]]:
        """``n`` valid (per-layer arch, alpha, beta), drawn as uniform arch x alpha x beta and allocated."""
        rng = np.random.default_rng([seed, 11])
        out: list[tuple[dict[str, Any], float, float]] = []
        for _ in range(max_trials):
            if len(out) == n:
                return out
            uniform = {name: dim.sample(rng) for name, dim in space.dimensions.items()}
            alpha = float(self.alpha[int(rng.integers(len(self.alpha)))])
            beta = float(self.beta[int(rng.integers(len(self.beta)))])
            try:
                arch = allocate(space, uniform, scores, alpha, beta)
            except NasBenchError:
                continue
            if space.is_valid(arch):
                out.append((arch, alpha, beta))
        raise NasBenchError("allocation", f"found only {len(out)} of {n} valid allocated archs in {max_trials} draws",
                            len(out))


def _choices(value: Any, where: str, low: float, high: float, low_open: bool = False,
             high_open: bool = False) -> tuple[float, ...]:
    items = value.get("choice") if isinstance(value, dict) and set(value) == {"choice"} else None
    if not isinstance(items, list) or not items:
        raise InvalidSpaceError(where, "must be {choice: [numbers]}", value)
    out = []
    for v in items:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ok = ok and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
        if not ok:
            bounds = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise InvalidSpaceError(where, f"every choice must be a number in {bounds}", v)
        out.append(float(v))
    return tuple(out)


def layer_scores(importance: Any, n_layers: int) -> list[float]:
    """The block importance of the ``n_layers`` layers a sub-network keeps (the most important, in model order)."""
    if importance is None or not getattr(importance, "layers", None):
        raise NasBenchError("supernet", "layer-wise allocation needs a sorted supernet with layer scores "
                                        "(nasbench importance)", None, show_got=False)
    return [float(importance.layers[i]) for i in importance.layers_for(n_layers)]


def allocate(space: SearchSpace, uniform: Mapping[str, Any], scores: Sequence[float], alpha: float,
             beta: float) -> dict[str, Any]:
    """The per-layer arch of ``uniform`` (one value per dimension) under the map of the module docstring.

    ``scores``: one per active layer (``uniform["n_layers"]`` of them, model order), higher is more important;
    a list as long as the reference's layers is cut to the most important ``n_layers``.
    """
    n = int(uniform["n_layers"])
    s = np.asarray(scores, dtype=np.float64)
    if len(s) != n:
        if len(s) < n:
            raise NasBenchError("scores", f"need one per active layer ({n})", len(s))
        keep = np.sort(np.argsort(-s, kind="stable")[:n])
        s = s[keep]
    if not (alpha > 0 and 0 <= beta < 1):
        raise NasBenchError("allocation", "needs alpha > 0 and beta in [0, 1)", (alpha, beta))
    spread = s.max() - s.min()
    u = (s - s.min()) / spread if spread > 0 else np.zeros_like(s)
    c = u ** alpha
    c = c - c.mean()
    scale = np.abs(c).max()
    c = c / scale if scale > 0 else c
    arch = dict(uniform)
    for name in space.per_layer:
        base = uniform[name]
        mean = float(np.mean(base)) if isinstance(base, (list, tuple)) else float(base)
        allowed = np.asarray(space.dimensions[name].candidates(), dtype=np.float64)
        widths = mean * (1.0 + beta * c)
        arch[name] = [int(allowed[np.abs(allowed - w).argmin()]) for w in widths]
    return space.canonical(arch)
