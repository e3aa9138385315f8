"""The benchmark as a Syne Tune blackbox, for ``UserBlackboxBackend`` and any Syne Tune scheduler.

One dummy fidelity (``step`` = 1): Syne Tune's simulator needs a fidelity axis; the benchmark has none. Objectives are
``metric_<objective>`` and ``metric_cost_s``, the seconds the evaluation would have taken (the measured cost of the
objectives, predicted for unmeasured archs): use it as the simulator's ``elapsed_time_attr``.

Syne Tune samples every dimension independently, so a config may break a structural rule of the space (2 heads
cannot form 3 kv groups); in table mode, a config may be an arch nobody measured. Neither has a value: evaluating
one raises an error that names the config and the reason (no made-up value ever enters a run). Check configs first
with :meth:`BenchmarkBlackbox.is_valid` (and, in table mode, :meth:`BenchmarkBlackbox.is_measured`): the comparison
runner's scheduler repairs every suggestion to the nearest valid arch
(:func:`nasbench.optimize.searchers.nearest_valid`) and, in table mode, projects it onto the measured archs.

With ``noise=True`` every evaluation is a fresh reading (:meth:`Benchmark.query` with ``noise``: each latency drawn
from its value and spread), seeded by ``(seed, evaluation number)``: the same run sees the same readings, and
evaluating one arch twice gives two readings, as measuring it twice would. :meth:`BenchmarkBlackbox.reseed` starts
a run's sequence; :meth:`BenchmarkBlackbox.expected` is the noise-free value a comparison scores an evaluation by.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from syne_tune.blackbox_repository.blackbox import Blackbox
from syne_tune.config_space import choice

from nasbench.errors import IllegalSubNetworkError, NasBenchError
from nasbench.metrics import COST, hp_column, hp_name, is_maximized, metric_column
from nasbench.space import DIMENSIONS, arch_id

__all__ = ["BenchmarkBlackbox", "COST", "FIDELITY"]

FIDELITY = "step"


class BenchmarkBlackbox(Blackbox):
    """``mode="surrogate"``: every arch of the space; ``mode="table"``: measured archs only (others are invalid)."""

    def __init__(self, benchmark: Any, objectives: list[str], mode: str = "surrogate", noise: bool = False,
                 seed: int = 0) -> None:
        if mode not in ("table", "surrogate"):
            raise NasBenchError("mode", "must be table or surrogate", mode)
        if not objectives:
            raise NasBenchError("objectives", "needs at least one objective", "(empty)")
        for o in objectives:
            if o not in benchmark.metrics or o == "cost_s":
                allowed = ", ".join(m for m in benchmark.metrics if m != "cost_s")
                raise NasBenchError("objectives", benchmark.unknown_rule(o, allowed.split(", ")), o)
        space = benchmark.space
        super().__init__(configuration_space=space.to_syne_tune(), fidelity_space={FIDELITY: choice([1])},
                         objectives_names=[metric_column(o) for o in objectives] + [COST])
        self.benchmark, self.objectives, self.mode, self.noise = benchmark, objectives, mode, noise
        self.seed, self.evaluations = seed, 0
        """With ``noise``: the draws' seed, and how many noisy evaluations this sequence has made."""
        self.minimize = [not is_maximized(o) for o in objectives]
        measured = benchmark.measured()
        keep = measured[[metric_column(o) for o in objectives]].notna().all(axis=1)
        self.table = measured[keep].reset_index(drop=True)
        """The measured archs with every objective: the true front in table mode."""
        self._measured = set(self.table["arch_id"])
        self._cache: dict[tuple[int, ...], np.ndarray] = {}

    @property
    def fidelity_values(self) -> np.ndarray:
        return np.array([1])

    def hyperparameters(self) -> pd.DataFrame:
        """The measured archs as Syne Tune configs (table mode searches only these)."""
        return self.table[[hp_column(d) for d in self.configuration_space]].rename(columns=hp_name)

    def _arch(self, configuration: dict[str, Any]) -> dict[str, Any]:
        """The config as an arch of the space, its constraints (min/max params) included."""
        space = self.benchmark.space
        return space.check(space.from_syne_tune(configuration))

    def is_valid(self, configuration: dict[str, Any]) -> bool:
        try:
            self._arch(configuration)
        except IllegalSubNetworkError:
            return False
        return True

    def is_measured(self, configuration: dict[str, Any]) -> bool:
        """The config is an arch of the space measured with every objective (what table mode answers)."""
        return self.arch_id_of(configuration) in self._measured

    def arch_id_of(self, configuration: dict[str, Any]) -> str | None:
        """arch_id of a config (None when it breaks a rule of the space)."""
        try:
            return arch_id(self._arch(configuration))
        except IllegalSubNetworkError:
            return None

    def reseed(self, seed: int) -> None:
        """Start a new sequence of noisy readings (a run): evaluation k draws with ``(seed, k)``."""
        self.seed, self.evaluations = int(seed), 0

    def expected(self, configuration: dict[str, Any]) -> np.ndarray:
        """What :meth:`evaluate` returns without noise: the measured values (the repeats' median) or the
        surrogates' medians."""
        return self._evaluate(configuration, noise=False, seed=None)

    def evaluate(self, configuration: dict[str, Any], seed: int | None = None) -> np.ndarray:
        """Objective values then cost, in :attr:`objectives_names` order; with ``noise``, a reading drawn with
        ``seed`` (default: the next of this sequence, ``(self.seed, evaluation number)``). A config that is not a
        network of the space raises :class:`IllegalSubNetworkError` (the rule it breaks); in table mode, an arch
        without every objective measured raises :class:`NasBenchError`."""
        if self.noise and seed is None:
            draw = (self.seed, self.evaluations)
            row = self._evaluate(configuration, noise=True, seed=draw)
            self.evaluations += 1
            return row
        return self._evaluate(configuration, noise=self.noise, seed=seed)

    def _evaluate(self, configuration: dict[str, Any], noise: bool, seed: Any) -> np.ndarray:
        key = tuple(int(configuration[k]) for k in self.configuration_space)
        if not noise and key in self._cache:
            return self._cache[key]
        arch = self._arch(configuration)
        frame = self.benchmark.query([arch], [*self.objectives, "cost_s"],
                                     mode="table" if self.mode == "table" else "auto", noise=noise, seed=seed)
        row = frame[[*map(metric_column, self.objectives), COST]].to_numpy(dtype=np.float64)[0]
        if np.isnan(row[:-1]).any():
            raise NasBenchError("configuration", f"arch {arch_id(arch)} is not measured on "
                                                 f"{self.benchmark.supernet_id} (table mode answers the "
                                                 f"{len(self.table)} measured archs only; mode='surrogate' predicts "
                                                 "the others)", dict(configuration))
        if not noise:
            self._cache[key] = row
        return row

    def _objective_function(self, configuration: dict[str, Any], fidelity: dict | None = None,
                            seed: int | None = None) -> Any:
        row = self.evaluate(configuration, seed)
        if fidelity is None:
            return row[None, :]
        return dict(zip(self.objectives_names, row.tolist()))

    def hyperparameter_objectives_values(self, predict_curves: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(X, y) of the measured archs, as Syne Tune's ``add_surrogate`` wants them (fidelity column included)."""
        x = self.hyperparameters()
        x[FIDELITY] = 1
        y = pd.DataFrame(np.column_stack([self.table[[metric_column(o) for o in self.objectives]].to_numpy(),
                                          self._table_costs()]), columns=self.objectives_names)
        return x, y

    def _table_costs(self) -> np.ndarray:
        frame = self.benchmark.query(self.table[[hp_column(d) for d in DIMENSIONS]], [*self.objectives, "cost_s"],
                                     mode="table")
        return frame[COST].to_numpy(dtype=np.float64)

    def objective_directions(self) -> list[str]:
        return ["min" if m else "max" for m in self.minimize]

    def __repr__(self) -> str:
        return (f"BenchmarkBlackbox({self.benchmark.space.name}, {self.benchmark.supernet_id}, mode={self.mode}, "
                f"objectives={self.objectives})")

