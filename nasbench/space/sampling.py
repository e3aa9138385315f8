"""Drawing architectures from a space: seeded rejection sampling, the smallest and largest arch (the sandwich rule's
ends), and parameter-binned grids."""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from nasbench.errors import IllegalSubNetworkError, InvalidSpaceError
from nasbench.space.encoding import arch_id
from nasbench.space.schema import DIMENSIONS

if TYPE_CHECKING:
    from nasbench.space.searchspace import SearchSpace

__all__ = ["sample", "draw", "smallest", "largest", "grid", "sample_grid", "MAX_ENUMERATION"]

MAX_ENUMERATION = 200_000
"""Combinations of the coupled dimensions searched for the smallest / largest arch (and enumerated exactly when a
space's constraints are checked)."""
_MAX_ENUMERATION = MAX_ENUMERATION
_SAMPLE_PATIENCE = 20_000
"""Draws in a row without a valid arch after which sampling gives up (constraints that admit (almost) nothing)."""


def sample(space: SearchSpace, n: int = 1, seed: int = 0, max_trials: int = 100_000) -> list[dict[str, Any]]:
    """``n`` valid architectures drawn by rejection sampling; the same seed gives the same list."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidSpaceError("seed", "must be an integer >= 0", seed)
    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = []
    trials = misses = 0
    patience = min(max_trials, _SAMPLE_PATIENCE)
    while len(out) < n:
        trials += 1
        if misses >= patience:
            raise InvalidSpaceError(f"{space.path}:constraints",
                                    f"no valid architecture in {misses:,} draws in a row: the constraints (and "
                                    f"structural rules) admit (almost) no arch; widen min_params..max_params",
                                    {"min_params": space.constraints.min_params,
                                     "max_params": space.constraints.max_params})
        arch = draw(space, rng)
        if space.is_valid(arch):
            out.append(space.canonical(arch))
            misses = 0
        else:
            misses += 1
    return out

def draw(space: SearchSpace, rng: np.random.Generator) -> dict[str, Any]:
    arch: dict[str, Any] = {}
    n_layers = space.dimensions["n_layers"].sample(rng)
    for name in DIMENSIONS:
        dim = space.dimensions[name]
        if name == "n_layers":
            arch[name] = n_layers
        elif dim.per_layer:
            arch[name] = [dim.sample(rng) for _ in range(n_layers)]
        else:
            arch[name] = dim.sample(rng)
    return arch

def smallest(space: SearchSpace) -> dict[str, Any]:
    """The structurally valid arch with every dimension at its smallest (the sandwich rule's lower end).

    ``constraints.min_params`` / ``max_params`` are not applied here; they bound what is sampled.
    """
    return _extreme(space, largest=False)

def largest(space: SearchSpace) -> dict[str, Any]:
    """The structurally valid arch with every dimension at its largest (the sandwich rule's upper end)."""
    return _extreme(space, largest=True)

def _extreme(space: SearchSpace, largest: bool) -> dict[str, Any]:
    base = {name: dim.high if largest else dim.low for name, dim in space.dimensions.items()}
    if space.model_family.kv_follows_heads:
        base["n_kv_groups"] = base["n_heads"]
    try:
        return space.canonical(base)
    except IllegalSubNetworkError:
        pass
    # The extremes of the coupled dimensions (heads, kv groups, head size, embed dim) may clash: search the
    # coupled dimensions for the valid combination with the fewest (most) parameters.
    coupled = ["n_heads", "n_kv_groups", "head_size", "embed_dim"]
    if math.prod(space.dimensions[d].count() for d in coupled) > _MAX_ENUMERATION:
        if space.dimensions["n_heads"].count() * space.dimensions["n_kv_groups"].count() > _MAX_ENUMERATION:
            raise InvalidSpaceError(f"{space.path}:dimensions", f"n_heads x n_kv_groups must have at most "
                                                               f"{_MAX_ENUMERATION:,} combinations",
                                    space.dimensions["n_heads"].count() * space.dimensions["n_kv_groups"].count())
        lists = [space.dimensions[d].candidates() if d in ("n_heads", "n_kv_groups")
                 else [base[d]] for d in coupled]
    else:
        lists = [space.dimensions[d].candidates() for d in coupled]
    best: tuple[int, dict[str, Any]] | None = None
    for combo in itertools.product(*lists):
        trial = dict(base, **dict(zip(coupled, combo)))
        if space.model_family.kv_follows_heads:
            trial["n_kv_groups"] = trial["n_heads"]
        try:
            arch = space.canonical(trial)
        except IllegalSubNetworkError:
            continue
        key = space.params(arch) * (-1 if largest else 1)
        if best is None or key < best[0]:
            best = (key, arch)
    if best is None:
        raise InvalidSpaceError(
            f"{space.path}:dimensions",
            "unsatisfiable: no combination of n_heads, n_kv_groups, head_size and embed_dim meets the structural "
            "rules (n_heads divisible by n_kv_groups, n_heads / n_kv_groups <= the reference's ratio"
            + space.model_family.coupling + ")",
            {d: space.dimensions[d].describe() for d in coupled})
    return best[1]

def grid(space: SearchSpace, k: int, seed: int = 0, trials: int = 10_000) -> list[list[dict[str, Any]]]:
    """``k`` bins of equal width in parameter count, filled by rejection sampling with at most ``trials`` draws.

    Bin edges run from the smallest to the largest valid parameter count (clipped by min/max params). The
    smallest and largest archs seed the end bins when they meet the constraints. Bins may stay empty.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidSpaceError("k", "must be an integer >= 1", k)
    if isinstance(trials, bool) or not isinstance(trials, (int, np.integer)) or trials < 1:
        raise InvalidSpaceError("trials", "must be an integer >= 1", trials)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidSpaceError("seed", "must be an integer >= 0", seed)
    rng = np.random.default_rng(seed)
    low, high = space.params(smallest(space)), space.params(largest(space))
    if space.constraints.min_params is not None:
        low = max(low, space.constraints.min_params)
    if space.constraints.max_params is not None:
        high = min(high, space.constraints.max_params)
    edges = np.linspace(low, high, k + 1)
    bins: list[list[dict[str, Any]]] = [[] for _ in range(k)]
    seen: set[str] = set()
    pool = [a for a in (smallest(space), largest(space)) if space.is_valid(a)]
    for _ in range(trials):
        pool.append(draw(space, rng))
    for arch in pool:
        if not space.is_valid(arch):
            continue
        arch = space.canonical(arch)
        aid = arch_id(arch)
        if aid in seen:
            continue
        seen.add(aid)
        index = int(np.searchsorted(edges, space.params(arch), side="right")) - 1
        bins[min(max(index, 0), k - 1)].append(arch)
    return bins

def sample_grid(space: SearchSpace, n: int, k: int, seed: int = 0, trials: int = 10_000) -> list[dict[str, Any]]:
    """``n`` archs spread evenly over the ``k`` parameter bins: bins are visited in turn, an arch drawn from each.

    Within a bin archs are drawn without replacement until the bin is used up, then with replacement.
    """
    bins = [b for b in grid(space, k, seed, trials) if b]
    if not bins:
        raise InvalidSpaceError(f"{space.path}:constraints", f"no valid architecture in {trials:,} draws (raise "
                                                            f"trials or widen the constraints)", trials)
    rng = np.random.default_rng(seed + 1)
    order = [list(rng.permutation(len(b))) for b in bins]
    out = []
    for i in range(n):
        j = i % len(bins)
        index = order[j].pop() if order[j] else int(rng.integers(len(bins[j])))
        out.append(bins[j][index])
    return out
