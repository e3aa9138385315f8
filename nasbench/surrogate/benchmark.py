"""``Benchmark``: the measured table of one (space, supernet) plus cached surrogates for every arch nobody profiled.

``Benchmark.open(db, space, supernet)`` reads the measurements once (the DB is opened read-only and closed again;
``supernet`` defaults to the main supernet the DB records); ``query`` answers a batch of archs with table lookups
where the arch was measured and surrogate predictions for the rest (``interval=True``: with their calibrated 90%
bounds), and every timed metric (the latencies) with its spread; ``noise=True`` draws readings instead of returning
medians; ``blackbox`` wraps the same answers as a Syne Tune blackbox for its simulator.

A reading of a timed metric (:data:`nasbench.metrics.TIMED`) is modelled as log-normal with the value as its median
and the spread as its interquartile range: the IQR of the measurement's timed repeats where the DB stores one (a
drift-cancelled ``latency_ms`` has its ``latency_rel`` row's, scaled), else the surrogate's calibrated predictive
spread at that arch (an unmeasured arch, or ``decode_wall_ms_per_token``, whose rows store none). Latencies are
positive and their noise multiplicative, and for a predicted value this is exactly the surrogate's predictive
distribution.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from nasbench.errors import IllegalSubNetworkError, NasBenchError, check_choice, one_of
from nasbench.metrics import DERIVED, METRICS, STORED_AS, TIMED, hp_column, hp_name, metric_column
from nasbench.space import DIMENSIONS, SearchSpace, arch_id, load_space, parse_space
from nasbench.store import arch_ids, connect_read_only
from nasbench.store.queries import default_supernet, space_names, space_yaml
from nasbench.surrogate._cache import DEFAULT_CACHE, load_cached, save_cached
from nasbench.surrogate._data import (
    EXACT_METRICS,
    LOG_METRICS,
    WEIGHT_FREE_METRICS,
    MeasuredTable,
    read_table,
    supernets_of,
)
from nasbench.surrogate._fit import MIN_ROWS, FidelityCard, Surrogate, fit_surrogate
from nasbench.surrogate._regressors import CANDIDATES
from nasbench.surrogate.modes import MODES, SOURCES

__all__ = ["Benchmark", "MODES", "SOURCES"]

_SOURCE_DTYPE = pd.CategoricalDtype(list(SOURCES))
SPREAD = "_spread"
"""Suffix of a timed metric's spread column in a query's answer: ``metric_latency_ms_spread``."""
_Z_QUARTILE = 0.6744897501960817
"""Standard-normal quantile of 0.75: a normal's interquartile range is 2 x 0.674 standard deviations."""
_SMALL = 64
"""Batches up to this size take the per-arch path (Python hashing, dict lookups): DuckDB's per-statement overhead
would dominate them."""


class Benchmark:
    """Query one (space, supernet) of a benchmark DB. Build it with :meth:`open`."""

    def __init__(self, space: SearchSpace, table: MeasuredTable, others: dict[str, MeasuredTable], db: str,
                 cache: str | Path | None, candidates: tuple[str, ...], seed: int) -> None:
        self.space, self.table, self.others, self.db = space, table, others, db
        self.supernet_id = table.supernet_id
        self.cache, self.candidates, self.seed = cache, candidates, seed
        self._surrogates: dict[str, Surrogate] = {}
        self._scalar = not space.per_layer
        ids = list(table.values.index)
        self._row_of = {a: i for i, a in enumerate(ids)}
        self._ids = pd.Index(ids)
        self._values = table.values.to_numpy(dtype=np.float64)
        self._costs = table.costs.to_numpy(dtype=np.float64)
        self._spreads = (np.full(self._values.shape, np.nan) if table.spreads is None
                         else table.spreads.to_numpy(dtype=np.float64))
        self._col = {m: j for j, m in enumerate(table.values.columns)}
        self._metrics = tuple(sorted({*table.metrics, *EXACT_METRICS, "cost_s"}))
        self._sql = None
        ref = space.reference
        # one int64 key per valid arch: every dimension is bounded by the reference model's value
        self._radix = [ref.embed_dim + 1, ref.n_layers + 1, ref.n_heads + 1, ref.head_size + 1, ref.n_heads + 1,
                       ref.intermediate_size + 1]

    # -- opening ------------------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, db: str | Path, space: SearchSpace | str | Path, supernet: str | None = None, *,
             device: str | None = None, cache: str | Path | None = DEFAULT_CACHE,
             models: Sequence[str] = CANDIDATES, seed: int = 0) -> "Benchmark":
        """Open the benchmark in ``db`` for ``space`` (a SearchSpace, a YAML path, or the name of a space stored in
        the DB) and ``supernet`` (default: the main supernet the DB records for the space, or its only one; an
        unknown id is an error naming those that exist). ``device`` keeps rows measured there. ``cache``: the
        surrogate cache root (None: fit in memory, never write). ``models``: the candidates cross-validation
        chooses from."""
        unknown = [m for m in models if m not in CANDIDATES]
        if unknown or not models:
            raise NasBenchError("models", f"must be a non-empty subset of {', '.join(CANDIDATES)}",
                                ",".join(unknown) or "(empty)")
        con = connect_read_only(db)
        try:
            space = _resolve_space(con, db, space)
            supernet = default_supernet(con, db, space.name, supernet)
            available = supernets_of(con, space.name)
            table = read_table(con, space, supernet, device)
            others = {s: read_table(con, space, s, device) for s in available if s != supernet}
        finally:
            con.close()
        return cls(space, table, others, str(db), cache, tuple(models), seed)

    # -- what it knows --------------------------------------------------------------------------------------------
    @property
    def metrics(self) -> list[str]:
        """Every metric a query may ask for: the measured ones, the exact ones and ``cost_s``."""
        return list(self._metrics)

    def unknown_rule(self, metric: str, known: Sequence[str]) -> str:
        """The rule an unknown metric breaks: the known ones, and for a derived one what it needs."""
        rule = f"must be among {', '.join(known)}"
        if metric in DERIVED:
            source = DERIVED[metric]
            how = METRICS[source].profiled_by + (" with --decode-tokens N" if source == "decode_rel" else "")
            wall = next((name for name, stored in STORED_AS.items() if stored == metric), None)
            rule += (f" ({metric} is derived from {source} rows, which {self.db} lacks for {self.space.name}: "
                     f"profile {how}" + (f"; the wall clock is {wall})" if wall else ")"))
        return rule

    @property
    def default_metrics(self) -> list[str]:
        """The space's objectives that this benchmark has on enough archs for a surrogate (a few accuracy rows do not
        make ``acc_avg`` a default that cannot be fitted)."""
        names = [o.name for o in self.space.objectives]
        enough = [m for m in self.table.metrics if m in EXACT_METRICS or m == "cost_s"
                  or len(self.table.column(m)[0]) >= MIN_ROWS]
        return [m for m in names if m in self.metrics and m in enough] or enough[:3]

    def measured(self) -> pd.DataFrame:
        """The measured table: arch_id, hp_<dimension> and metric_<metric> columns (exact metrics included)."""
        ids = list(self.table.values.index)
        archs = [self.table.archs[i] for i in ids]
        out = pd.DataFrame({"arch_id": ids})
        for name in DIMENSIONS:
            out[hp_column(name)] = [a[name] for a in archs]
        out["metric_params"] = [self.space.params(a) for a in archs]
        out["metric_flops"] = [self.space.flops(a) for a in archs]
        for m in self.table.metrics:
            out[metric_column(m)] = self.table.values[m].to_numpy()
        return out

    # -- surrogates -----------------------------------------------------------------------------------------------
    def surrogate(self, metric: str) -> Surrogate:
        """The fitted surrogate of ``metric`` (from the cache while its data is unchanged; fitted otherwise)."""
        if metric in self._surrogates:
            return self._surrogates[metric]
        if metric in EXACT_METRICS or metric == "cost_s":
            raise NasBenchError("metrics", f"{metric} is computed, not learned: no surrogate", metric)
        if metric not in self.table.metrics:
            raise NasBenchError("metrics", f"{one_of(self.table.metrics)} (measured here)", metric)
        data_hash = self._data_hash(metric)
        ids, y, cost = self.table.column(metric)
        if len(ids) < MIN_ROWS:
            raise NasBenchError(f"metrics {metric}", f"a surrogate needs at least {MIN_ROWS} measured archs",
                                len(ids))
        x = self._encode_ids(ids, self.table)
        surrogate = None if self.cache is None else load_cached(self.cache, self.space.name, self.supernet_id,
                                                                  metric, data_hash, x, y, cost, seed=self.seed)
        if surrogate is None:
            others = self._others(metric)
            surrogate = fit_surrogate(x, y, cost, space=self.space.name,
                                      supernet=self.supernet_id, metric=metric,
                                      transform="log" if metric in LOG_METRICS else "identity", data_hash=data_hash,
                                      others=others, candidates=self.candidates, seed=self.seed)
            if self.cache is not None:
                save_cached(self.cache, surrogate, x)
        self._surrogates[metric] = surrogate
        return surrogate

    def fit(self, metrics: Sequence[str] | None = None) -> list[FidelityCard]:
        """Fit (or load) the surrogates of ``metrics`` (default: the space's objectives) and return their cards."""
        metrics = [m for m in (metrics or self.default_metrics) if m not in (*EXACT_METRICS, "cost_s")]
        return [self.surrogate(m).card for m in metrics]

    def _data_hash(self, metric: str) -> str:
        """The table's hash for ``metric`` plus what else shapes the fit (the candidates, the other supernets)."""
        parts = [self.table.data_hash(metric), ",".join(self.candidates), str(self.seed)]
        if metric not in WEIGHT_FREE_METRICS:  # the others shape only the transfer fit, which a shared metric has not
            parts += [f"{s}:{t.data_hash(metric)}" for s, t in sorted(self.others.items()) if metric in t.metrics]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def _others(self, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
        if metric in WEIGHT_FREE_METRICS:  # shared by every supernet (borrowed rows): leaving one out tells nothing,
            return None  # and a transfer fit on every supernet's copy of the same rows costs minutes
        xs, ys = [], []
        for table in self.others.values():
            if metric in table.metrics:
                ids, y, _ = table.column(metric)
                xs.append(self._encode_ids(ids, table))
                ys.append(y)
        return (np.concatenate(xs), np.concatenate(ys)) if xs else None

    def _encode_ids(self, ids: Sequence[str], table: MeasuredTable) -> np.ndarray:
        return self.space.encode([table.archs[i] for i in ids])

    # -- queries --------------------------------------------------------------------------------------------------
    def query(self, configs: Any, metrics: Sequence[str] | None = None, mode: str = "auto", noise: bool = False,
              seed: int | None = None, interval: bool = False) -> pd.DataFrame:
        """Answer a batch of archs.

        ``configs``: a DataFrame (columns named by dimension, with or without ``hp_``), a list of arch dicts, one arch
        dict, or an n x 6 matrix in :data:`DIMENSIONS` order; fixed dimensions may be left out. ``metrics``: default
        the space's objectives. ``mode``: ``table`` (measured values only: an unmeasured arch gets NaN and source
        ``missing``, never a substitute), ``surrogate`` (predictions for every arch) or ``auto`` (measured where
        available, predicted elsewhere). Every timed metric (the latencies) also gets ``metric_<metric>_spread``, the
        interquartile range of one reading (see the module docstring; NaN where the value is missing, or where the
        DB stores no spread and has too few archs for a surrogate). ``noise``: each value is a reading drawn with
        ``seed`` (an int, or a sequence of ints such as ``(run seed, evaluation)``) instead of the median: a timed
        metric from its value and spread, measured or predicted; another predicted metric from the surrogate's
        predictive distribution; a measured value of an untimed metric (perplexity, accuracy, memory) stays as
        measured. Without ``noise``, the values are the measured ones (the median of the repeats) and the
        surrogates' medians, exactly (a batch of over 64 configs answers each distinct arch once, with one reading).
        ``cost_s`` is the seconds it took (or would take) to measure the other requested metrics. ``interval``: also
        ``metric_<metric>_lower`` and ``metric_<metric>_upper``, the surrogate's calibrated 90% interval where the
        value is predicted (its fidelity card's ``coverage_90`` says how often such intervals held the measured value
        on held-out archs); a measured or exact value is its own bounds, and a missing one has NaN bounds.

        Returns one row per config: ``arch_id``, ``hp_<dimension>``, ``metric_<metric>`` and ``source`` (``table``,
        ``surrogate``, ``mixed``, ``missing`` or ``exact``).
        """
        check_choice("mode", mode, MODES)
        metrics = list(metrics or self.default_metrics)
        for m in metrics:
            if m not in self._metrics:
                raise NasBenchError("metrics", self.unknown_rule(m, self._metrics), m)
        x, ids, inverse = self._prepare(configs)
        rows = self._rows(ids)
        hit = rows >= 0
        rng = np.random.default_rng(seed) if noise else None
        out: dict[str, Any] = {"arch_id": ids}
        for j, name in enumerate(DIMENSIONS):
            out[hp_column(name)] = x[:, j]
        with_cost = "cost_s" in metrics
        learned_from_table: list[np.ndarray] = []
        missing = np.zeros(len(ids), dtype=bool)
        costs: dict[str, np.ndarray] = {}
        for m in metrics:
            if m == "cost_s":
                continue
            if m in EXACT_METRICS:
                out[metric_column(m)] = self._exact(m, x)
                if interval:
                    out[metric_column(m) + "_lower"] = out[metric_column(m) + "_upper"] = out[metric_column(m)]
                continue
            timed = m in TIMED
            values, cost, used = self._metric(m, x, rows, hit, mode, None if timed else rng, with_cost)
            spread = self._spread(m, x, rows, used, values) if timed else None
            if spread is not None and rng is not None:
                values = _reading(values, spread, rng)
            out[metric_column(m)] = values
            if spread is not None:
                out[metric_column(m) + SPREAD] = spread
            if interval:
                lower, upper = values.copy(), values.copy()
                predicted = ~used & ~np.isnan(values)
                if predicted.any():
                    lower[predicted], upper[predicted] = self.surrogate(m).interval(x[predicted])
                out[metric_column(m) + "_lower"], out[metric_column(m) + "_upper"] = lower, upper
            costs.setdefault(_cost_unit(m), cost)
            learned_from_table.append(used)
            missing |= np.isnan(values)
        if with_cost:
            if "acc_avg" in costs:  # the averages' evaluation runs every task they average
                costs = {u: c for u, c in costs.items() if u not in {f"acc_{t}" for t in self.table.avg_tasks}}
            out["metric_cost_s"] = np.sum(list(costs.values()), axis=0) if costs else np.zeros(len(ids))
        code = np.full(len(ids), SOURCES.index("exact"), dtype=np.int8)
        if learned_from_table:
            n_table = np.sum(learned_from_table, axis=0)
            code[:] = np.where(n_table == len(learned_from_table), 0, np.where(n_table == 0, 1, 2))
            code[missing] = SOURCES.index("missing")
        if inverse is not None:
            out = {k: v[inverse] for k, v in out.items()}
            code = code[inverse]
        out["source"] = pd.Categorical.from_codes(code, dtype=_SOURCE_DTYPE)
        return pd.DataFrame(out)

    def _metric(self, m: str, x: np.ndarray, rows: np.ndarray, hit: np.ndarray, mode: str,
                rng: np.random.Generator | None, with_cost: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(rows)
        values, cost = np.full(n, np.nan), np.full(n, np.nan)
        j = self._col.get(m)
        if j is not None and mode != "surrogate":
            values[hit] = self._values[rows[hit], j]
            cost[hit] = self._costs[rows[hit], j]
        used = ~np.isnan(values)
        if mode != "table":
            need = ~used
            if need.any():
                surrogate = self.surrogate(m)
                values[need] = surrogate.predict(x[need], rng)
                if with_cost:
                    cost[need] = surrogate.predict_cost(x[need])
        if with_cost:
            cost[np.isnan(cost)] = 0.0
        return values, cost, used

    def _spread(self, m: str, x: np.ndarray, rows: np.ndarray, used: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The interquartile range of one reading of ``m`` at each arch: the stored repeats' where the value is
        measured and a spread was stored, else the surrogate's calibrated predictive spread (as a share of the
        value: the surrogate's median need not be the measured value); NaN where neither exists."""
        spread = np.full(len(rows), np.nan)
        j = self._col.get(m)
        if j is not None:
            spread[used] = self._spreads[rows[used], j]
        need = np.isnan(spread) & ~np.isnan(values)
        if need.any():
            try:
                surrogate = self.surrogate(m)
            except NasBenchError:  # too few measured archs for a surrogate: the spread stays unknown
                return spread
            _, std = surrogate.predict_dist(x[need])
            if surrogate.transform == "log":
                spread[need] = values[need] * 2.0 * np.sinh(_Z_QUARTILE * std)
            else:
                spread[need] = 2.0 * _Z_QUARTILE * std
        return spread

    def _exact(self, m: str, x: np.ndarray) -> np.ndarray:
        if self._scalar:
            return self.space.params_matrix(x) if m == "params" else self.space.flops_matrix(x)
        raise NasBenchError("metrics", "exact metrics of per-layer spaces are computed per arch", m)

    def _prepare(self, configs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(int matrix of the distinct valid archs, their arch_ids, index of each config's row in them or None when
        the batch is answered row by row). The first invalid config raises its precise error."""
        if not self._scalar:
            archs = [self.space.check(a, f"configs[{i}]") for i, a in enumerate(_as_records(configs))]
            return self.space.encode(archs), np.array([arch_id(a) for a in archs], dtype=object), None
        if not isinstance(configs, (pd.DataFrame, np.ndarray)) and len(records := _as_records(configs)) <= _SMALL:
            archs = [self.space.check(a, f"configs[{i}]") for i, a in enumerate(records)]
            x = self.space.encode(archs).astype(np.int64)
            return x, self._arch_ids(x), None
        x = _as_matrix(configs, self.space)
        ok = self.space.valid_mask(x)
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            arch = {name: _plain(x[i, j]) for j, name in enumerate(DIMENSIONS)}
            self.space.check(arch, f"configs[{i}]")  # raises with the rule that fails
            raise IllegalSubNetworkError(f"configs[{i}]", "is not in the space", arch)
        x = x.astype(np.int64)
        if len(x) <= _SMALL:
            return x, self._arch_ids(x), None
        # optimizers revisit archs and spaces are finite: answer each distinct arch once
        keys = np.zeros(len(x), dtype=np.int64)
        for j in range(len(DIMENSIONS)):
            keys = keys * (self._radix[j]) + x[:, j]
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        x = x[first]
        return x, self._arch_ids(x), inverse

    def _arch_ids(self, x: np.ndarray) -> np.ndarray:
        """arch_id of every row: Python for small batches, DuckDB's sha256 over the canonical JSON for large ones."""
        if self.space.model_family.kv_follows_heads:
            x = x.copy()
            x[:, DIMENSIONS.index("n_kv_groups")] = x[:, DIMENSIONS.index("n_heads")]
        if len(x) <= _SMALL:
            return np.array([arch_id(dict(zip(DIMENSIONS, map(int, r)))) for r in x], dtype=object)
        return arch_ids(x, DIMENSIONS, con=self._duckdb())

    def _rows(self, ids: np.ndarray) -> np.ndarray:
        """Row of each arch_id in the measured table (-1: not measured)."""
        if len(ids) <= _SMALL:
            return np.array([self._row_of.get(a, -1) for a in ids], dtype=np.int64)
        return self._ids.get_indexer(ids)

    def _duckdb(self) -> Any:
        if self._sql is None:
            import duckdb

            self._sql = duckdb.connect(":memory:")
        return self._sql

    # -- Syne Tune ------------------------------------------------------------------------------------------------
    def blackbox(self, objectives: Sequence[str], mode: str = "surrogate", noise: bool = False,
                 seed: int = 0) -> Any:
        """A Syne Tune blackbox over ``objectives`` (see :class:`nasbench.surrogate.blackbox.BenchmarkBlackbox`);
        ``noise``: every evaluation a fresh reading, seeded by ``(seed, evaluation number)``."""
        from nasbench.surrogate.blackbox import BenchmarkBlackbox

        return BenchmarkBlackbox(self, list(objectives), mode, noise, seed)


# ------------------------------------------------------------------------------------------------------- helpers
def _resolve_space(con: Any, db: str | Path, space: SearchSpace | str | Path) -> SearchSpace:
    if isinstance(space, SearchSpace):
        return space
    text = str(space)
    if text.endswith((".yaml", ".yml")) or Path(text).is_file():
        return load_space(text)
    yaml_text = space_yaml(con, text)
    if yaml_text is None:
        names = space_names(con)
        raise NasBenchError("space", f"neither a YAML file nor a space stored in {db} ({', '.join(names) or 'none'})",
                            text)
    return parse_space(yaml_text, f"{db}:spaces/{text}")


def _as_records(configs: Any) -> list[Mapping[str, Any]]:
    if isinstance(configs, pd.DataFrame):
        frame = configs.rename(columns=lambda c: hp_name(c) if isinstance(c, str) else c)
        return frame[[c for c in frame.columns if c in DIMENSIONS]].to_dict("records")
    if isinstance(configs, Mapping):
        return [configs]
    if isinstance(configs, Iterable):
        return list(configs)
    raise NasBenchError("configs", "must be a DataFrame, a list of archs or one arch", type(configs).__name__)


def _as_matrix(configs: Any, space: SearchSpace) -> np.ndarray:
    """n x 6 float matrix in DIMENSIONS order; fixed dimensions filled in; n_kv_groups = n_heads where kv groups
    follow heads."""
    if isinstance(configs, np.ndarray):
        x = np.asarray(configs, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(DIMENSIONS):
            raise NasBenchError("configs", f"a matrix needs {len(DIMENSIONS)} columns ({', '.join(DIMENSIONS)})",
                                x.shape)
        return x
    columns: dict[str, Any]
    if isinstance(configs, pd.DataFrame):
        columns = {hp_name(str(c)): configs[c].to_numpy() for c in configs.columns}
        n = len(configs)
    else:
        records = _as_records(configs)
        n = len(records)
        for i, r in enumerate(records):
            if not isinstance(r, Mapping):
                raise IllegalSubNetworkError(f"configs[{i}]", "an arch is a JSON object of dimensions", r)
            unknown = [k for k in r if k not in DIMENSIONS]
            if unknown:
                raise IllegalSubNetworkError(f"configs[{i}].{unknown[0]}",
                                             f"unknown dimension; known: {', '.join(DIMENSIONS)}", r[unknown[0]])
        present = {k for r in records for k in r}
        columns = {name: [r.get(name) for r in records] for name in DIMENSIONS if name in present}
    x = np.empty((n, len(DIMENSIONS)))
    for j, name in enumerate(DIMENSIONS):
        dim = space.dimensions[name]
        if name in columns:
            x[:, j] = _numeric(columns[name], name)
        elif name == "n_kv_groups" and space.model_family.kv_follows_heads:
            pass  # filled below from n_heads
        elif dim.kind == "fixed":
            x[:, j] = dim.values[0]
        else:
            raise IllegalSubNetworkError(f"configs.{name}", "missing dimension", None, show_got=False)
    if space.model_family.kv_follows_heads:
        x[:, DIMENSIONS.index("n_kv_groups")] = x[:, DIMENSIONS.index("n_heads")]
    return x


def _numeric(values: Any, name: str) -> np.ndarray:
    """Integers as float64; a non-number (or a bool) names its position."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iuf":
        return arr.astype(np.float64)
    out = np.empty(len(arr))
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise IllegalSubNetworkError(f"configs[{i}].{name}", "must be an integer", v)
        out[i] = v
    return out


def _plain(v: float) -> Any:
    return int(v) if float(v).is_integer() else float(v)


def _reading(values: np.ndarray, spread: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One noisy reading per value: log-normal with the value as its median and ``spread`` as its interquartile
    range (a NaN or zero spread, or a missing value, leaves the value as it is). One standard-normal draw per value,
    in order, whether or not it is used, so a reading depends only on the seed and its position."""
    z = rng.standard_normal(len(values))
    ok = np.isfinite(spread) & (spread > 0) & np.isfinite(values) & (values > 0)
    out = values.copy()
    sigma = np.arcsinh(spread[ok] / (2.0 * values[ok])) / _Z_QUARTILE
    out[ok] = values[ok] * np.exp(sigma * z[ok])
    return out


def _cost_unit(metric: str) -> str:
    """acc and acc_norm of a task come from one evaluation, both averages from the evaluation of all their tasks, and
    the drift-cancelled latency_ms from the latency_rel measurement: their costs count once."""
    if metric in DERIVED:
        return DERIVED[metric]
    if metric == "acc_chance_avg":
        return "acc_avg"
    return "acc_" + metric[len("acc_norm_"):] if metric.startswith("acc_norm_") else metric


def print_cards(cards: Sequence[FidelityCard], file: Any = None) -> None:
    """The cards as an aligned text table (R2 and MAE on the model's scale: log for log metrics)."""
    file = sys.stdout if file is None else file
    header = ["space", "supernet", "metric", "model", "scale", "n_train", "n_test", "tau", "rho", "R2", "MAE",
              "cov90", "loso_tau"]
    rows = [[c.space, c.supernet_id, c.metric, c.model, c.transform, str(c.n_train), str(c.n_test),
             f"{c.kendall_tau:.3f}", f"{c.spearman_rho:.3f}", f"{c.r2:.3f}", f"{c.mae:.3g}", f"{c.coverage_90:.2f}",
             "-" if c.loso_kendall_tau is None else f"{c.loso_kendall_tau:.3f}"] for c in cards]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip(), file=file)

