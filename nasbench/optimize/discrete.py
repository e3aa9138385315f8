"""The searchers' view of a space: dimensions as discrete index grids (:class:`DiscreteSpace`), table mode's
nearest-profiled-arch projection (:class:`TableIndex`), and the bookkeeping every searcher shares."""

from __future__ import annotations

import itertools
from typing import Any, Callable, Sequence

import numpy as np
from syne_tune.config_space import Categorical, Domain, FiniteRange, Integer

from nasbench.errors import NasBenchError


__all__ = ["DiscreteSpace", "TableIndex", "nearest_valid"]


# ----------------------------------------------------------------------------------------------------- encoding
class DiscreteSpace:
    """The non-constant dimensions of a Syne Tune config space as ordered value lists.

    Every dimension of a nasbench space is discrete (``choice``, ``randint``, ``lograndint``); each value gets its
    position in the sorted value list, scaled to [0, 1], as the numeric encoding that distances and GPs use.
    """

    def __init__(self, config_space: dict[str, Any]) -> None:
        self.config_space = config_space
        self.names: list[str] = []
        self.values: list[list[Any]] = []
        for name, dom in config_space.items():
            if not isinstance(dom, Domain):
                continue
            if isinstance(dom, Categorical):
                vals = list(dom.categories)
                if all(isinstance(v, (int, float)) for v in vals):
                    vals = sorted(vals)
            elif isinstance(dom, Integer):
                vals = list(range(int(dom.lower), int(dom.upper) + 1))
            elif isinstance(dom, FiniteRange):
                vals = list(dom.values)
            else:
                raise NasBenchError(f"config_space:{name}", "searchers need discrete dimensions "
                                    "(choice, randint, lograndint, finrange)", type(dom).__name__)
            self.names.append(name)
            self.values.append(vals)
        if not self.names:
            raise NasBenchError("config_space", "needs at least one non-constant dimension", list(config_space))
        self._index = [{v: i for i, v in enumerate(vals)} for vals in self.values]
        self.sizes = np.array([len(v) for v in self.values])

    @property
    def size(self) -> float:
        return float(np.prod(self.sizes.astype(float)))

    def key(self, config: dict[str, Any]) -> tuple:
        return tuple(config[n] for n in self.names)

    def positions(self, config: dict[str, Any]) -> np.ndarray:
        try:
            return np.array([self._index[j][config[n]] for j, n in enumerate(self.names)])
        except KeyError as exc:
            raise NasBenchError("config", "value outside the config space", {n: config.get(n) for n in self.names}) \
                from exc

    def encode(self, configs: Sequence[dict[str, Any]]) -> np.ndarray:
        """``(n, d)`` matrix in [0, 1]: value position / (number of values - 1)."""
        if not configs:
            return np.zeros((0, len(self.names)))
        pos = np.stack([self.positions(c) for c in configs]).astype(float)
        return pos / np.maximum(self.sizes - 1, 1)

    def from_positions(self, pos: Sequence[int]) -> dict[str, Any]:
        return {n: self.values[j][int(p)] for j, (n, p) in enumerate(zip(self.names, pos))}

    def sample(self, rng: np.random.RandomState) -> dict[str, Any]:
        return self.sample_many(rng, 1)[0]

    def sample_many(self, rng: np.random.RandomState, k: int) -> list[dict[str, Any]]:
        """``k`` configs drawn from each domain's own distribution, seeded by ``rng``.

        Uniform domains draw value positions with one numpy call per dimension (Syne Tune's per-value
        ``Domain.sample`` costs ~20 us a call, which made candidate pools the BO methods' main cost); other
        samplers (lograndint's log-uniform) go through the domain.
        """
        from syne_tune.config_space import Uniform

        columns = []
        for j, name in enumerate(self.names):
            dom = self.config_space[name]
            if isinstance(dom, FiniteRange) or isinstance(dom.get_sampler(), Uniform):
                columns.append([self.values[j][p] for p in rng.randint(self.sizes[j], size=k)])
            else:
                drawn = dom.sample(size=k, random_state=rng)
                columns.append(list(drawn) if k > 1 else [drawn])
        return [{n: columns[j][i] for j, n in enumerate(self.names)} for i in range(k)]

    def mutate(self, config: dict[str, Any], rng: np.random.RandomState, prob: float) -> dict[str, Any]:
        """Resample each dimension with probability ``prob`` (at least one changes) to a different value."""
        pos = self.positions(config)
        change = rng.rand(len(pos)) < prob
        if not change.any():
            change[rng.randint(len(pos))] = True
        for j in np.flatnonzero(change):
            if self.sizes[j] > 1:
                new = rng.randint(self.sizes[j] - 1)
                pos[j] = new if new < pos[j] else new + 1
        return self.from_positions(pos)

    def neighbours(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        """Configs one step away: one dimension moved to the next smaller or larger value."""
        pos = self.positions(config)
        out = []
        for j in range(len(pos)):
            for step in (-1, 1):
                p = pos[j] + step
                if 0 <= p < self.sizes[j]:
                    q = pos.copy()
                    q[j] = p
                    out.append(self.from_positions(q))
        return out


class TableIndex:
    """The profiled archs of a table, for projecting suggestions onto them (table mode).

    ``rows`` are configs (dimension name -> value) of the table in a fixed order. :meth:`project` returns the nearest
    row in the [0, 1] encoding (Euclidean) that has not been taken yet, marking it taken; ties go to the lowest row
    index, so the projection is deterministic.
    """

    def __init__(self, space: DiscreteSpace, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            raise NasBenchError("table", "table mode needs at least one profiled arch", 0)
        self.space = space
        self.rows = [{n: r[n] for n in space.names} for r in rows]
        self.X = space.encode(self.rows)
        self.taken = np.zeros(len(self.rows), dtype=bool)
        self._by_key = {space.key(r): i for i, r in enumerate(self.rows)}
        if len(self._by_key) != len(self.rows):
            raise NasBenchError("table", "profiled archs must be distinct configs", len(self.rows) - len(self._by_key))

    def untaken(self) -> list[dict[str, Any]]:
        return [self.rows[i] for i in np.flatnonzero(~self.taken)]

    def project(self, config: dict[str, Any]) -> dict[str, Any] | None:
        free = np.flatnonzero(~self.taken)
        if len(free) == 0:
            return None
        exact = self._by_key.get(self.space.key(config))
        if exact is not None and not self.taken[exact]:
            i = exact
        else:
            d = ((self.X[free] - self.space.encode([config])[0]) ** 2).sum(axis=1)
            i = int(free[int(np.argmin(d))])
        self.taken[i] = True
        return dict(self.rows[i])


def nearest_valid(space: DiscreteSpace, config: dict[str, Any], is_valid: Callable[[dict[str, Any]], bool],
                  radius: int = 3) -> dict[str, Any]:
    """``config`` if valid, else the valid config nearest to it (Euclidean in the [0, 1] encoding) among those that
    change at most ``radius`` dimensions, tried nearest first (ties in a fixed order, so the repair is
    deterministic). Returns ``config`` unchanged when none is valid (it then evaluates as invalid)."""
    if is_valid(config):
        return config
    here = space.positions(config)
    scale = np.maximum(space.sizes - 1, 1)
    for r in range(1, radius + 1):
        candidates = []
        for dims in itertools.combinations(range(len(space.names)), r):
            for values in itertools.product(*(range(space.sizes[j]) for j in dims)):
                if all(here[j] != v for j, v in zip(dims, values)):
                    pos = here.copy()
                    pos[list(dims)] = values
                    candidates.append(pos)
        if not candidates:
            continue
        positions = np.stack(candidates)
        distance = (((positions - here) / scale) ** 2).sum(axis=1)
        for i in np.argsort(distance, kind="stable"):
            candidate = dict(config, **space.from_positions(positions[i]))
            if is_valid(candidate):
                return candidate
    return config


class _Observations:
    """Completed evaluations (minimised metric vectors) and every config suggested so far."""

    def __init__(self, space: DiscreteSpace) -> None:
        self.space = space
        self.configs: list[dict[str, Any]] = []
        self.Y: list[list[float]] = []
        self.seen: set[tuple] = set()

    def add(self, config: dict[str, Any], metrics: Sequence[float]) -> None:
        self.configs.append({n: config[n] for n in self.space.names})
        self.Y.append([float(v) for v in metrics])
        self.seen.add(self.space.key(config))

    def matrix(self) -> np.ndarray:
        return np.asarray(self.Y, dtype=float).reshape(len(self.Y), -1)


def _fresh(space: DiscreteSpace, seen: set[tuple], make, tries: int = 50) -> dict[str, Any]:
    """First config from ``make()`` not yet seen, or the last one tried (tiny spaces run out of new configs)."""
    config = make()
    for _ in range(tries - 1):
        if space.key(config) not in seen:
            break
        config = make()
    return config
