"""Multi-objective searchers restored on Syne Tune 0.16, and the scheduler that drives all of them.

Syne Tune 0.16 kept random search, MOREA and EHVI but dropped NSGA-II, multi-objective local search and the two
scalarised BO baselines (RSBO, LSBO) that HW-GPT-Bench compares. They come back here as
``syne_tune.optimizer.schedulers.searchers.BaseSearcher`` subclasses, so they plug into ``Tuner`` like the shipped
ones. Every searcher sees *minimised* metric values: :class:`MultiObjectiveScheduler` flips the sign of maximised
metrics per metric (0.16's ``SingleFidelityScheduler`` only has one ``do_minimize`` flag for all of them).

Table mode: a benchmark table holds only the profiled archs, a scattered subset of the space. The scheduler keeps
the searchers in the real dimension space (so mutation, crossover, neighbourhoods and GP inputs stay meaningful) and
projects every suggestion onto the nearest profiled arch that has not been suggested yet (see :class:`TableIndex`).
When every row has been suggested the scheduler returns ``None`` and the Tuner stops: a table of N archs supports at
most N distinct evaluations.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Sequence

import numpy as np
from syne_tune.optimizer.schedulers.searchers.searcher import BaseSearcher

from nasbench.errors import NasBenchError
from nasbench.optimize.discrete import DiscreteSpace, TableIndex, _fresh, _Observations, nearest_valid
from nasbench.optimize.scheduler import MultiObjectiveScheduler
from nasbench.pareto import crowding_distance, non_dominated_ranks


__all__ = [
    "DiscreteSpace",
    "TableIndex",
    "MultiObjectiveScheduler",
    "NSGA2Searcher",
    "LocalSearcher",
    "ScalarizedBOSearcher",
    "nearest_valid",
]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------- NSGA-II
class NSGA2Searcher(BaseSearcher):
    """NSGA-II (Deb et al., 2002) as an asynchronous ask/tell searcher.

    The first ``population_size`` suggestions are random. Afterwards each suggestion is an offspring of the current
    parent population: two binary tournaments on (non-domination rank, crowding distance), uniform crossover with
    probability ``crossover_prob``, then each dimension resampled with probability ``1/d``; offspring already seen
    are redrawn. Whenever ``population_size`` new results have arrived, parents and offspring are merged and the best
    ``population_size`` by rank, then crowding distance, survive (elitist environmental selection). Results arrive
    one at a time, so it works with any number of workers.
    """

    def __init__(self, config_space: dict[str, Any], population_size: int = 20, crossover_prob: float = 0.9,
                 points_to_evaluate: list[dict] | None = None, random_seed: int | None = None) -> None:
        super().__init__(config_space, points_to_evaluate=points_to_evaluate, random_seed=random_seed)
        if population_size < 2:
            raise NasBenchError("population_size", "NSGA-II needs a population of at least 2", population_size)
        self.space = DiscreteSpace(config_space)
        self.population_size = population_size
        self.crossover_prob = crossover_prob
        self.rng = np.random.RandomState(self.random_seed)
        self.obs = _Observations(self.space)
        self.suggested: set[tuple] = set()
        self.parents: list[int] = []  # indices into obs
        self.offspring: list[int] = []
        self._rank = np.zeros(0, dtype=int)
        self._crowd = np.zeros(0)

    def suggest(self, **kwargs: Any) -> dict[str, Any] | None:
        config = self._next_points_to_evaluate()
        if config is None:
            if len(self.parents) < self.population_size:
                config = _fresh(self.space, self.suggested, lambda: self.space.sample(self.rng))
            else:
                config = _fresh(self.space, self.suggested, self._make_child)
        self.suggested.add(self.space.key(config))
        return config

    def _tournament(self) -> int:
        a, b = self.rng.randint(len(self.parents), size=2)
        if (self._rank[a], -self._crowd[a]) <= (self._rank[b], -self._crowd[b]):
            return self.parents[a]
        return self.parents[b]

    def _make_child(self) -> dict[str, Any]:
        p1 = self.space.positions(self.obs.configs[self._tournament()])
        p2 = self.space.positions(self.obs.configs[self._tournament()])
        if self.rng.rand() < self.crossover_prob:
            take = self.rng.rand(len(p1)) < 0.5
            p1 = np.where(take, p2, p1)
        return self.space.mutate(self.space.from_positions(p1), self.rng, 1.0 / len(p1))

    def on_trial_complete(self, trial_id: int, config: dict[str, Any], metrics: list[float]) -> None:
        self.obs.add(config, metrics)
        i = len(self.obs.Y) - 1
        if len(self.parents) < self.population_size:
            self.parents.append(i)
            if len(self.parents) == self.population_size:
                self._select(self.parents)
            return
        self.offspring.append(i)
        if len(self.offspring) >= self.population_size:
            self._select(self.parents + self.offspring)
            self.offspring = []

    def _select(self, pool: list[int]) -> None:
        Y = self.obs.matrix()[pool]
        ranks = non_dominated_ranks(Y, True)
        crowd = np.zeros(len(pool))
        for r in np.unique(ranks):
            members = np.flatnonzero(ranks == r)
            crowd[members] = crowding_distance(Y[members])
        order = np.lexsort((-crowd, ranks))[: self.population_size]
        self.parents = [pool[k] for k in order]
        self._rank, self._crowd = ranks[order], crowd[order]


# ----------------------------------------------------------------------------------------------- local search
class LocalSearcher(BaseSearcher):
    """Multi-objective local search, as HW-GPT-Bench runs it (Syne Tune's former ``LocalSearch``).

    Start from one random config. Each suggestion picks a random member of the current non-dominated set of all
    observations and returns one of its unseen one-step neighbours (one dimension moved to the adjacent value), at
    random. Members whose neighbourhood is exhausted are skipped; when every front member is exhausted (a Pareto
    local optimum) it restarts from a random unseen config. Before the first result arrives (several workers) it
    samples at random.
    """

    def __init__(self, config_space: dict[str, Any], points_to_evaluate: list[dict] | None = None,
                 random_seed: int | None = None) -> None:
        super().__init__(config_space, points_to_evaluate=points_to_evaluate, random_seed=random_seed)
        self.space = DiscreteSpace(config_space)
        self.rng = np.random.RandomState(self.random_seed)
        self.obs = _Observations(self.space)
        self.suggested: set[tuple] = set()
        self.front: list[int] = []  # indices into obs of the current non-dominated set

    def suggest(self, **kwargs: Any) -> dict[str, Any] | None:
        config = self._next_points_to_evaluate()
        if config is None:
            config = self._from_front() if self.obs.Y else None
            if config is None:
                config = _fresh(self.space, self.suggested, lambda: self.space.sample(self.rng))
        self.suggested.add(self.space.key(config))
        return config

    def _from_front(self) -> dict[str, Any] | None:
        for i in self.rng.permutation(self.front):
            fresh = [c for c in self.space.neighbours(self.obs.configs[i]) if self.space.key(c) not in self.suggested]
            if fresh:
                return fresh[self.rng.randint(len(fresh))]
        return None

    def on_trial_complete(self, trial_id: int, config: dict[str, Any], metrics: list[float]) -> None:
        self.obs.add(config, metrics)
        # Keep the non-dominated set incrementally: recomputing it from all observations per suggestion is
        # quadratic and dominated a 1,000-evaluation run.
        y = np.asarray(metrics, dtype=float)
        F = np.asarray([self.obs.Y[i] for i in self.front], dtype=float).reshape(len(self.front), len(y))
        if ((F <= y).all(axis=1) & (F < y).any(axis=1)).any():
            return
        beaten = (y <= F).all(axis=1) & (y < F).any(axis=1)
        self.front = [i for i, b in zip(self.front, beaten) if not b] + [len(self.obs.Y) - 1]


# ---------------------------------------------------------------------------------------------- scalarised BO
class ScalarizedBOSearcher(BaseSearcher):
    """Bayesian optimisation on a scalarisation of the objectives: RSBO (``"random"``) and LSBO (``"linear"``).

    ``"random"`` is ParEGO (Knowles, 2006): for every suggestion draw weights uniformly from the simplex and model
    the augmented Chebyshev scalarisation ``max_j w_j f_j + rho * sum_j w_j f_j`` of the objectives normalised to
    [0, 1] by the observed min/max. ``"linear"`` keeps fixed weights (uniform unless given) on the weighted sum, as
    Syne Tune's former ``MOLinearScalarizationBayesOpt``; it converges to one point of the convex hull of the front,
    which is the baseline's known weakness. Both fit one GP (scikit-learn, Matern 5/2 with ARD on the [0, 1]
    encoding, plus a noise term) to the scalar and pick the candidate of largest expected improvement. Candidates
    are the unevaluated table rows in table mode, else ``num_candidates`` random configs plus mutations of the best
    observed ones. As in ParEGO, the GP sees at most ``11 d + 24`` observations (half the best under the current
    weights, half random); its kernel hyperparameters are re-fitted every ``refit_every`` suggestions and reused in
    between (the cost that keeps a 1,000-evaluation run cheap).
    """

    def __init__(self, config_space: dict[str, Any], scalarization: str = "random",
                 weights: Sequence[float] | None = None, num_init_random: int | None = None,
                 num_candidates: int = 256, refit_every: int = 20, rho: float = 0.05,
                 candidates: Sequence[dict[str, Any]] | None = None,
                 points_to_evaluate: list[dict] | None = None, random_seed: int | None = None) -> None:
        super().__init__(config_space, points_to_evaluate=points_to_evaluate, random_seed=random_seed)
        if scalarization not in ("random", "linear"):
            raise NasBenchError("scalarization", "must be 'random' or 'linear'", scalarization)
        self.space = DiscreteSpace(config_space)
        self.scalarization = scalarization
        self.weights = None if weights is None else np.asarray(weights, dtype=float)
        d = len(self.space.names)
        self.num_init_random = num_init_random if num_init_random is not None else 2 * d + 2
        self.max_gp_points = 11 * d + 24
        self.num_candidates = num_candidates
        self.refit_every = max(1, refit_every)
        self.rho = rho
        self.candidates = None if candidates is None else [{n: c[n] for n in self.space.names} for c in candidates]
        self.rng = np.random.RandomState(self.random_seed)
        self.obs = _Observations(self.space)
        self.suggested: set[tuple] = set()
        self._kernel = None
        self._fits = 0

    def suggest(self, **kwargs: Any) -> dict[str, Any] | None:
        config = self._next_points_to_evaluate()
        if config is None:
            if len(self.obs.Y) < self.num_init_random:
                config = self._random()
            else:
                config = self._bo_step()
        if config is not None:
            self.suggested.add(self.space.key(config))
        return config

    def _random(self) -> dict[str, Any] | None:
        if self.candidates is not None:
            free = [c for c in self.candidates if self.space.key(c) not in self.suggested]
            return free[self.rng.randint(len(free))] if free else None
        return _fresh(self.space, self.suggested, lambda: self.space.sample(self.rng))

    def _scalarize(self, Y: np.ndarray) -> np.ndarray:
        lo, hi = Y.min(axis=0), Y.max(axis=0)
        F = (Y - lo) / np.where(hi > lo, hi - lo, 1.0)
        m = Y.shape[1]
        if self.scalarization == "linear":
            w = self.weights if self.weights is not None else np.full(m, 1.0 / m)
            return F @ w
        w = self.rng.dirichlet(np.ones(m))
        return (F * w).max(axis=1) + self.rho * (F @ w)

    def _candidate_pool(self, X_best: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.candidates is not None:
            return [c for c in self.candidates if self.space.key(c) not in self.suggested]
        pool = self.space.sample_many(self.rng, self.num_candidates // 2)
        for _ in range(self.num_candidates - len(pool)):
            parent = X_best[self.rng.randint(len(X_best))]
            pool.append(self.space.mutate(parent, self.rng, 1.0 / len(self.space.names)))
        unique = {self.space.key(c): c for c in pool if self.space.key(c) not in self.suggested}
        return list(unique.values())

    def _bo_step(self) -> dict[str, Any] | None:
        from scipy.stats import norm
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        s = self._scalarize(self.obs.matrix())
        n = len(s)
        idx = np.arange(n)
        if n > self.max_gp_points:
            half = self.max_gp_points // 2
            best = np.argsort(s, kind="stable")[:half]
            rest = np.setdiff1d(idx, best)
            idx = np.concatenate([best, self.rng.choice(rest, self.max_gp_points - half, replace=False)])
        X = self.space.encode([self.obs.configs[i] for i in idx])
        y = s[idx]
        d = X.shape[1]
        refit = self._kernel is None or self._fits % self.refit_every == 0
        self._fits += 1
        if refit:
            kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(np.full(d, 0.5), (1e-2, 1e2), nu=2.5) \
                + WhiteKernel(1e-3, (1e-8, 1e-1))
            gp = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=0,
                                          random_state=self.rng.randint(2**31 - 1))
        else:
            gp = GaussianProcessRegressor(self._kernel, normalize_y=True, optimizer=None)
        with warnings.catch_warnings():
            # A length scale at its bound just means that dimension barely matters to the scalarisation.
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp.fit(X, y)
        self._kernel = gp.kernel_
        pool = self._candidate_pool([self.obs.configs[i] for i in idx[np.argsort(y, kind="stable")[:5]]])
        if not pool:
            return None
        mu, sd = gp.predict(self.space.encode(pool), return_std=True)
        sd = np.maximum(sd, 1e-9)
        z = (y.min() - mu) / sd
        ei = (y.min() - mu) * norm.cdf(z) + sd * norm.pdf(z)
        return pool[int(np.argmax(ei))]

    def on_trial_complete(self, trial_id: int, config: dict[str, Any], metrics: list[float]) -> None:
        self.obs.add(config, metrics)
