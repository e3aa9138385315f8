"""Sub-network samplers: which sub-networks one training step runs (seed paper Sec. 4.1, 5.2, B.6).

A sampler is a seeded object with state (:meth:`Sampler.state_dict` / :meth:`Sampler.load_state_dict`, JSON-able),
so a resumed run draws exactly what the uninterrupted run would have. :meth:`Sampler.step` returns the
:class:`Pick` s of one step; when the largest sub-network is among them it comes first: it is the teacher of
in-place distillation.

- ``standard`` (``importance-standard``): the whole model, every step (plain fine-tuning, the no-NAS baseline:
  fine-tune, then slice);
- ``random`` (``importance-random``): one uniformly random sub-network per step;
- ``sandwich`` (``importance-sandwich``): largest + smallest + ``k`` random;
- ``grid-params`` (``importance-grid-params``): largest + smallest + ``k`` middles from the ``K``-bin parameter grid
  (:meth:`SearchSpace.grid`): bins are visited round-robin in a shuffled order, an arch is drawn at random within
  the bin;
- ``importance-calibrate-mag``: as ``grid-params``, but each bin is represented by one fixed arch: among (up to
  ``calibrate_candidates``) of its candidates, the one whose active weights have the largest mean ``|w|`` on the
  (sorted) supernet.

The ``importance-*`` variants differ from their plain counterparts in the supernet they train (the sorted one) and in
the layers a sub-network keeps (the sorted supernet's layer ranking, see :func:`sub_network_kwargs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from nasbench.errors import NasBenchError, one_of
from nasbench.importance import Importance
from nasbench.space import SearchSpace
from nasbench.supernet import Supernet
from nasbench.supernet.modules import ElasticEmbedding, ElasticLinear
from nasbench.train.config import STRATEGIES, TrainConfig

__all__ = ["Pick", "Sampler", "StandardSampler", "RandomSampler", "SandwichSampler", "GridParamsSampler",
           "CalibrateMagSampler", "make_sampler", "sub_network_kwargs", "mean_abs_weight"]


@dataclass(frozen=True)
class Pick:
    """One sub-network of a step."""

    role: str
    """``full``, ``largest``, ``smallest``, ``random``, or ``bin<j>`` (its parameter bin)."""
    arch: dict[str, Any] | None
    """The canonical arch; ``None``: the whole supernet (``standard``)."""


class Sampler:
    """Base class: a numpy ``Generator`` whose state is the sampler's state (plus what subclasses add)."""

    name = ""
    teacher = False
    """The first pick of every step is the largest sub-network (the distillation teacher)."""

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.space = space
        self.rng = np.random.default_rng([seed, 7])

    def step(self) -> list[Pick]:
        raise NotImplementedError

    def _random_arch(self) -> dict[str, Any]:
        return self.space.sample(1, seed=int(self.rng.integers(2**62)))[0]

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


class StandardSampler(Sampler):
    name = "standard"

    def step(self) -> list[Pick]:
        return [Pick("full", None)]


class RandomSampler(Sampler):
    name = "random"

    def step(self) -> list[Pick]:
        return [Pick("random", self._random_arch())]


class SandwichSampler(Sampler):
    name = "sandwich"
    teacher = True

    def __init__(self, space: SearchSpace, seed: int = 0, k: int = 2) -> None:
        super().__init__(space, seed)
        self.k = k
        self.largest, self.smallest = space.largest(), space.smallest_admitted()

    def step(self) -> list[Pick]:
        return [Pick("largest", self.largest), Pick("smallest", self.smallest), *self._middle()]

    def _middle(self) -> list[Pick]:
        return [Pick("random", self._random_arch()) for _ in range(self.k)]


class GridParamsSampler(SandwichSampler):
    """Sandwich whose middles come from the parameter grid: round-robin over the non-empty bins, random within."""

    name = "grid-params"

    def __init__(self, space: SearchSpace, seed: int = 0, k: int = 2, bins: int = 5, trials: int = 2_000) -> None:
        super().__init__(space, seed, k)
        self.bins = space.grid(bins, seed=seed, trials=trials)
        self.nonempty = [j for j, b in enumerate(self.bins) if b]
        if not self.nonempty:
            raise NasBenchError("grid_bins", "no valid arch fell into any parameter bin; raise grid_trials", bins)
        self.queue: list[int] = []

    def _next_bin(self) -> int:
        if not self.queue:
            self.queue = [self.nonempty[i] for i in self.rng.permutation(len(self.nonempty))]
        return self.queue.pop(0)

    def _middle(self) -> list[Pick]:
        out = []
        for _ in range(self.k):
            j = self._next_bin()
            out.append(Pick(f"bin{j}", self._from_bin(j)))
        return out

    def _from_bin(self, j: int) -> dict[str, Any]:
        return self.bins[j][int(self.rng.integers(len(self.bins[j])))]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "queue": list(self.queue)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.queue = [int(j) for j in state["queue"]]


class CalibrateMagSampler(GridParamsSampler):
    """Grid sandwich with one fixed arch per bin: the candidate with the largest mean |w| on the supernet."""

    name = "importance-calibrate-mag"

    def __init__(self, space: SearchSpace, supernet: Supernet, importance: Importance | None, seed: int = 0,
                 k: int = 2, bins: int = 5, trials: int = 2_000, candidates: int = 16) -> None:
        super().__init__(space, seed, k, bins, trials)
        pick_rng = np.random.default_rng([seed, 11])
        self.chosen: dict[int, dict[str, Any]] = {}
        self.magnitudes: dict[int, float] = {}
        for j in self.nonempty:
            pool = self.bins[j]
            if len(pool) > candidates:
                pool = [pool[i] for i in sorted(pick_rng.choice(len(pool), candidates, replace=False))]
            scored = [(mean_abs_weight(supernet, a, importance), a) for a in pool]
            best = max(scored, key=lambda s: s[0])
            self.chosen[j], self.magnitudes[j] = best[1], best[0]

    def _from_bin(self, j: int) -> dict[str, Any]:
        return self.chosen[j]


def sub_network_kwargs(arch: Mapping[str, Any], importance: Importance | None) -> dict[str, Any]:
    """``set_sub_network`` index lists: the sorted supernet's top layers when an importance with layer scores is given
    (heads, neurons and channels are already sorted, so prefixes are the most important)."""
    if importance is None or not importance.layers:
        return {}
    return {"layers": importance.layers_for(arch["n_layers"])}


@torch.no_grad()
def mean_abs_weight(supernet: Supernet, arch: Mapping[str, Any], importance: Importance | None = None) -> float:
    """Mean ``|w|`` over the active weights of ``arch``'s linear layers and embedding (the supernet is reset after)."""
    supernet.set_sub_network(arch, **sub_network_kwargs(arch, importance))
    try:
        total, count = 0.0, 0
        hf = supernet.hf_model
        active = set()
        for index in supernet.wiring.blocks.active_indices():
            active.update(id(m) for m in supernet.wiring.blocks._modules[str(index)].modules())
        layers_prefix = supernet.wiring.layers_path + "."
        for name, module in hf.named_modules():
            if name.startswith(layers_prefix) and id(module) not in active:
                continue
            if isinstance(module, ElasticLinear):
                w = module.active_weight()
            elif isinstance(module, ElasticEmbedding):
                w = module.active_weight()
            else:
                continue
            total += float(w.abs().sum(dtype=torch.float64))
            count += w.numel()
        return total / max(count, 1)
    finally:
        supernet.reset()


def make_sampler(strategy: str, space: SearchSpace, config: TrainConfig, *, supernet: Supernet | None = None,
                 importance: Importance | None = None) -> Sampler:
    """The sampler of ``strategy`` with the config's ``n_random``, ``grid_bins``, ``grid_trials``, seed."""
    seed, k = config.seed, config.n_random
    if strategy in ("standard", "importance-standard"):
        return StandardSampler(space, seed)
    if strategy in ("random", "importance-random"):
        return RandomSampler(space, seed)
    if strategy in ("sandwich", "importance-sandwich"):
        return SandwichSampler(space, seed, k)
    if strategy in ("grid-params", "importance-grid-params"):
        return GridParamsSampler(space, seed, k, config.grid_bins, config.grid_trials)
    if strategy == "importance-calibrate-mag":
        if supernet is None:
            raise NasBenchError("strategy", "importance-calibrate-mag scores candidates on a supernet", strategy)
        return CalibrateMagSampler(space, supernet, importance, seed, k, config.grid_bins, config.grid_trials,
                                   config.calibrate_candidates)
    raise NasBenchError("strategy", one_of(STRATEGIES), strategy)

