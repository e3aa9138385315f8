"""What a comparison runs and how it is scored: :class:`CompareSettings` (everything in a run id) and :class:`Truth`
(the quality space shared by all methods and seeds, and in table mode the true front of the measured table)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nasbench.errors import NasBenchError
from nasbench.metrics import COST, LOG_SCALE, hp_column, metric_column
from nasbench.optimize.methods import METHODS
from nasbench.pareto import hypervolume, non_dominated_mask, objective_directions

__all__ = ["COST_METRIC", "REF_POINT", "CompareSettings", "Truth", "make_truth", "measured_table"]

COST_METRIC = COST
"""The blackbox column holding each evaluation's simulated elapsed seconds (the registry's ``cost_s`` column)."""
REF_POINT = 1.1
"""Hypervolume reference point in every normalised objective (0 = best measured, 1 = worst measured)."""


@dataclass(frozen=True)
class CompareSettings:
    """What a comparison runs: everything that goes into a run id."""

    space: str
    """Space name (as in the DB)."""
    objectives: tuple[str, ...]
    """Metric names without ``metric_`` (``("ppl", "latency_ms")``); directions follow the metric."""
    methods: tuple[str, ...] = tuple(METHODS)
    seeds: tuple[int, ...] = tuple(range(10))
    max_evals: int = 1000
    """Evaluations per run (a table of N archs allows at most N: the run then ends early)."""
    max_sim_time_s: float | None = None
    """Simulated-time budget per run, seconds; None: evaluations only."""
    workers: int = 1
    """Simulated parallel workers."""
    mode: str = "table"
    """``table``: only profiled archs; ``surrogate``: the whole space."""
    supernet_id: str | None = None
    method_max_evals: tuple[tuple[str, int], ...] = ()
    """Per-method caps below ``max_evals`` (EHVI's GP refits make 1,000 evaluations too slow)."""
    method_options: tuple[tuple[str, str], ...] = ()
    """Per-method searcher options as JSON text, e.g. ``(("nsga2", '{"population_size": 50}'),)``."""
    noise: bool = False
    """Searchers see noisy readings (each evaluation's latencies drawn from their spread, seeded by the run's seed and
    the evaluation number: ``BenchmarkBlackbox(noise=True)``); the traces still score every evaluated arch by its
    noise-free values, so methods are compared on what they found, not on lucky readings."""

    def __post_init__(self) -> None:
        if self.mode not in ("table", "surrogate"):
            raise NasBenchError("mode", "must be 'table' or 'surrogate'", self.mode)
        if len(self.objectives) < 2:
            raise NasBenchError("objectives", "need at least two objectives", list(self.objectives))
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise NasBenchError("methods", f"unknown method; known: {', '.join(METHODS)}", unknown)
        if self.max_evals < 1:
            raise NasBenchError("max_evals", "must be at least 1", self.max_evals)
        if self.workers < 1:
            raise NasBenchError("workers", "must be at least 1", self.workers)
        if self.max_sim_time_s is not None and self.max_sim_time_s <= 0:
            raise NasBenchError("max_sim_time_s", "must be positive", self.max_sim_time_s)

    @property
    def metrics(self) -> list[str]:
        return [metric_column(o) for o in self.objectives]

    @property
    def minimize(self) -> list[bool]:
        return objective_directions(self.objectives)

    def evals_for(self, method: str) -> int:
        return min(self.max_evals, dict(self.method_max_evals).get(method, self.max_evals))

    def options_for(self, method: str) -> dict[str, Any]:
        return json.loads(dict(self.method_options).get(method, "{}"))


@dataclass
class Truth:
    """The shared quality space and, in table mode, the true front.

    Quality space: each objective minimised (maximised ones negated), perplexity as ln(ppl) (the cross-entropy:
    sub-network perplexities span 1e1..1e30, so linear scaling would flatten every front but one point), then
    scaled so the true front's ideal point is 0 and its nadir 1.
    """

    lower: np.ndarray
    """Per objective, in transformed minimisation units: maps to 0."""
    upper: np.ndarray
    """Maps to 1."""
    minimize: tuple[bool, ...]
    log_scale: tuple[bool, ...]
    front: np.ndarray | None = None
    """True front in the quality space (table mode)."""
    front_ids: frozenset[str] = frozenset()
    hv: float | None = None
    """HV of the true front (table mode)."""
    fingerprint: str = ""
    rows: list[dict[str, Any]] | None = None
    """Table mode: the profiled archs as configs (dimension name -> value)."""
    arch_ids: dict[tuple, str] = field(default_factory=dict)
    """Table mode: config key -> arch_id."""

    def transform(self, Y: Any) -> np.ndarray:
        """Metric values -> minimised, log-scaled values (before the [ideal, nadir] scaling)."""
        return _transform(Y, self.minimize, self.log_scale)

    def normalize(self, Y: Any) -> np.ndarray:
        span = np.where(self.upper > self.lower, self.upper - self.lower, 1.0)
        return (self.transform(Y) - self.lower) / span


def _transform(Y: Any, minimize: Sequence[bool], log_scale: Sequence[bool]) -> np.ndarray:
    Y = np.array(Y, dtype=float, ndmin=2)
    logged = np.asarray(log_scale, dtype=bool)
    if logged.any():
        if (Y[:, logged] <= 0).any():
            raise NasBenchError("objectives", "log-scaled metrics (ppl) must be positive",
                                Y[:, logged][(Y[:, logged] <= 0).any(axis=1)][:3].tolist())
        Y[:, logged] = np.log(Y[:, logged])
    return Y * np.where(np.asarray(minimize, dtype=bool), 1.0, -1.0)


def _dimension_column(table: Any, name: str) -> str:
    for column in (name, hp_column(name)):
        if column in table.columns:
            return column
    raise NasBenchError("true table", f"no column for dimension {name!r} (nor hp_{name})", list(table.columns))


def make_truth(settings: CompareSettings, config_space: dict[str, Any], true_table: Any = None,
               bounds: tuple[Sequence[float], Sequence[float]] | None = None) -> Truth:
    """The quality space and (table mode) the true front, from the true table.

    ``true_table``: DataFrame with ``arch_id``, the ``metric_<objective>`` columns and the dimension columns (plain
    or ``hp_``-prefixed); its front's ideal and nadir become 0 and 1. ``bounds``: (best, worst) per objective in
    the metrics' own units, overriding the table's (needed in surrogate mode when no table is given).
    """
    from syne_tune.config_space import Domain

    metrics, minimize = settings.metrics, tuple(settings.minimize)
    log_scale = tuple(o in LOG_SCALE for o in settings.objectives)
    if true_table is None and (settings.mode == "table" or bounds is None):
        raise NasBenchError("true table", f"{settings.mode} mode needs the measured table"
                            + ("" if settings.mode == "table" else " or explicit bounds"), None, show_got=False)
    truth = Truth(lower=np.zeros(len(metrics)), upper=np.ones(len(metrics)), minimize=minimize, log_scale=log_scale)
    table = None
    if true_table is not None:
        missing = [c for c in metrics + ["arch_id"] if c not in true_table.columns]
        if missing:
            raise NasBenchError("true table", "missing columns", missing)
        table = true_table.dropna(subset=metrics).reset_index(drop=True)
        if table.empty:
            raise NasBenchError("true table", "no row has every objective measured", metrics)
        T = truth.transform(table[metrics].to_numpy(dtype=float))
        mask = non_dominated_mask(T, True)
        truth.lower, truth.upper = T[mask].min(axis=0), T[mask].max(axis=0)
        truth.fingerprint = hashlib.sha256(table[["arch_id"] + metrics].to_csv(index=False).encode()).hexdigest()[:16]
    if bounds is not None:
        B = truth.transform(np.asarray(bounds, dtype=float))
        if B.shape != (2, len(metrics)):
            raise NasBenchError("bounds", f"need (best, worst) with {len(metrics)} values each", bounds)
        truth.lower, truth.upper = B.min(axis=0), B.max(axis=0)
    if settings.mode == "table":
        names = [k for k, v in config_space.items() if isinstance(v, Domain)]
        cols = {n: _dimension_column(table, n) for n in names}
        truth.rows = [{n: int(r[cols[n]]) for n in names} for _, r in table.iterrows()]
        truth.arch_ids = {tuple(row[n] for n in names): str(a) for row, a in zip(truth.rows, table["arch_id"])}
        F = truth.normalize(table[metrics].to_numpy(dtype=float))
        mask = non_dominated_mask(F, True)
        truth.front = F[mask]
        truth.front_ids = frozenset(table["arch_id"][mask].astype(str))
        truth.hv = hypervolume(truth.front, np.full(len(metrics), REF_POINT), True)
    return truth


def measured_table(db: str | Path, space: str, supernet: str | None = None) -> Any:
    """The measured rows of ``wide_<space>`` (read-only): the true table for table mode and for the bounds.

    With several supernets in the view, ``supernet`` picks one (else the DB must hold exactly one).
    """
    from nasbench.store.queries import wide_rows

    df = wide_rows(db, space)
    if supernet is not None:
        df = df[df["supernet_id"] == supernet]
    elif df["supernet_id"].nunique() > 1:
        raise NasBenchError("supernet_id", "the DB holds several supernets for this space; pick one",
                            sorted(df["supernet_id"].unique()))
    if df.empty:
        raise NasBenchError("space", f"no measured rows in {db}", (space, supernet))
    return df.reset_index(drop=True)
