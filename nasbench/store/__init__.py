"""The DuckDB store: one file holds spaces, supernets, architectures and measurements.

The schema is versioned (table ``meta``), created on first open and migrated when an older DB is opened for writing
(:mod:`nasbench.store.migrate`). Every write runs in a transaction and binds its values as parameters; identifiers in
the generated wide views come from the project's own metric names and are quoted. Duplicate measurements (same
identifying columns) are skipped, so a restarted job adds no duplicates. Rows of weight-free metrics (latency,
memory, FLOPs) are stored under the neutral supernet id ``''`` whichever supernet they were measured on; the archs
of pruning baselines go to ``baseline_archs``, not ``architectures``.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import duckdb

from nasbench.errors import StoreError
from nasbench.space import DIMENSIONS, SearchSpace, arch_id, canonical_json
from nasbench.store._values import (arch_params, architectures, baseline_rows, coverage, latency_spread, latest_rows,
                                    main_supernet, metric_values, paired_values, reference_drift, run_dates,
                                    run_scores, space_names, supernet_rows, surrogate_cards)
from nasbench.store.connect import SAFE_CONFIG, connect_read_only, open_db
from nasbench.store.ids import arch_ids
from nasbench.store.migrate import migrate, normalize, record_baseline_archs
from nasbench.store.schema import (DEFAULT_DB, MAIN_SUPERNET_KEY, SCHEMA_VERSION, WEIGHT_FREE_ID, Measurement, _json,
                                   _literal, _now, is_baseline, stored_supernet, view_name)
from nasbench.store.views import refresh_view

__all__ = ["SCHEMA_VERSION", "DEFAULT_DB", "SAFE_CONFIG", "WEIGHT_FREE_ID", "Measurement", "Store",
           "connect_read_only", "open_db", "view_name", "arch_ids", "is_baseline",
           # measured values by arch and supernet, as the report and the CLI read them
           "metric_values", "supernet_rows", "run_scores", "run_dates", "latest_rows", "architectures", "arch_params",
           "space_names", "surrogate_cards", "coverage", "baseline_rows", "latency_spread", "reference_drift",
           "paired_values", "main_supernet"]


class Store:
    """A read-write handle on one DuckDB file. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path = DEFAULT_DB) -> None:
        self.path = Path(path)
        self.con = open_db(self.path, read_only=False, create=True)
        try:
            self._migrate()
        except BaseException:
            self.con.close()
            raise

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    # -- schema ---------------------------------------------------------------------------------------------------
    def _migrate(self) -> None:
        has_meta = self.con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'").fetchone()[0]
        if has_meta:
            row = self.con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            found = int(row[0]) if row else 0
            if found == SCHEMA_VERSION:  # newer or malformed versions were refused by open_db
                return
        with self.transaction():
            migrate(self.con)
        for space in self._spaces():
            self.refresh_view(space)

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All statements inside commit together or not at all."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    # -- writes ---------------------------------------------------------------------------------------------------
    def add_space(self, space: SearchSpace) -> None:
        """Record the space (merged YAML and its hash) and create its wide view; idempotent."""
        with self.transaction() as con:
            con.execute("INSERT INTO spaces VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        [space.name, space.version, space.hash, space.yaml_text, space.path, _now()])
        self.refresh_view(space.name)

    def add_architectures(self, space: SearchSpace, archs: Iterable[Mapping[str, Any]]) -> list[str]:
        """Insert archs (canonicalised; already stored ones are skipped); returns their arch_ids in order."""
        with self.transaction() as con:
            return _insert_architectures(con, space, archs)

    def add_measurements(self, space: str, measurements: Sequence[Measurement], replace: bool = False) -> int:
        """Insert measurements in one transaction, skipping ones already stored; returns how many were new.
        ``replace``: a stored row with the same key (a re-measurement) is deleted first, in the same transaction."""
        before = self.count_measurements(space)
        with self.transaction() as con:
            if replace:
                _delete_measurements(con, space, measurements)
            _insert_measurements(con, space, measurements)
            if any(is_baseline(m.supernet_id) for m in measurements):
                record_baseline_archs(con)
        self.refresh_view(space)
        return self.count_measurements(space) - before

    def add_results(self, space: SearchSpace, arch: Mapping[str, Any], measurements: Sequence[Measurement],
                    replace: bool = False) -> None:
        """An arch and its measurements in one transaction: a job killed mid-arch leaves nothing of that arch.
        ``replace``: a stored row with the same key (a re-measurement) is deleted first, in the same transaction."""
        baseline = [m.supernet_id for m in measurements if is_baseline(m.supernet_id)]
        with self.transaction() as con:
            if len(baseline) < len(measurements) or not measurements:
                _insert_architectures(con, space, [arch])
            for supernet_id in sorted(set(baseline)):  # a baseline's model: its arch is listed apart
                _insert_architectures(con, space, [arch], baseline=supernet_id)
            if replace:
                _delete_measurements(con, space.name, measurements)
            _insert_measurements(con, space.name, measurements)
        self.refresh_view(space.name)

    def merge(self, sources: Sequence[str | Path]) -> dict[str, int]:
        """Copy every row of other DuckDB files into this one, skipping rows already here (same keys).

        Sources of any known schema merge (an older one's rows take the current layout: weight-free rows under the
        neutral supernet id, baseline archs apart, :func:`nasbench.store.migrate.normalize`). Returns the number of
        new rows per table. Sources are attached read-only and never changed.
        """
        tables = ("spaces", "supernets", "architectures", "measurements", "surrogate_cards", "runs", "run_traces",
                  "baseline_archs", "latency_models", "latency_ops")
        before = {t: self.con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
        for i, source in enumerate(sources):
            source = Path(source)
            if source.exists() and source.resolve() == self.path.resolve():
                raise StoreError(str(source), "cannot merge a database into itself", str(source))
            open_db(source).close()  # a nasbench DB of a known schema, not held by a writer
            alias = f"merge_source_{i}"
            self.con.execute(f"ATTACH {_literal(str(source))} AS {alias} (READ_ONLY)")
            try:
                version = self.con.execute(f"SELECT value FROM {alias}.meta WHERE key = 'schema_version'").fetchone()
                if version is None or not 1 <= int(version[0]) <= SCHEMA_VERSION:
                    raise StoreError(str(source), f"schema version must be 1..{SCHEMA_VERSION}",
                                     None if version is None else version[0])
                present = {r[0] for r in self.con.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_catalog = ?", [alias]).fetchall()}
                with self.transaction() as con:
                    for table in (t for t in tables if t in present):
                        columns = ", ".join(r[0] for r in con.execute(f"DESCRIBE {table}").fetchall())
                        con.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {alias}.{table} "
                                    "ON CONFLICT DO NOTHING")
                    normalize(con)
            finally:
                self.con.execute(f"DETACH {alias}")
        for space in self._spaces():
            self.refresh_view(space)
        return {t: self.con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] - before[t] for t in tables}

    def add_supernet(self, supernet: str, space: str, base_model: str, **fields: Any) -> None:
        """Insert or update one row of ``supernets`` (a training run updates steps, tokens, wall time, checkpoint)."""
        allowed = {"strategy", "kd", "peft", "data_hash", "steps", "tokens", "wall_time_s", "checkpoint", "config"}
        unknown = sorted(set(fields) - allowed)
        if unknown:
            raise StoreError("supernets", f"unknown column; allowed: {', '.join(sorted(allowed))}", unknown[0])
        if "config" in fields and not isinstance(fields["config"], str):
            fields["config"] = json.dumps(fields["config"], sort_keys=True)
        columns = ["id", "space", "base_model", *fields, "created_at"]
        values = [supernet, space, base_model, *fields.values(), _now()]
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:-1])
        with self.transaction() as con:
            con.execute(f"INSERT INTO supernets ({', '.join(columns)}) VALUES ({', '.join('?' * len(values))}) "
                        f"ON CONFLICT (id) DO UPDATE SET {updates}", values)

    def add_cards(self, cards: Iterable[Any]) -> None:
        """Insert or replace surrogate fidelity cards (one per space, supernet, metric)."""
        columns = ["space", "supernet_id", "metric", "model", "transform", "n_train", "n_test", "kendall_tau",
                   "spearman_rho", "r2", "mae", "coverage_90", "loso_kendall_tau", "loso_n", "cv", "data_hash"]
        with self.transaction() as con:
            for card in cards:
                values = [getattr(card, c) for c in columns]
                values[columns.index("cv")] = json.dumps(card.cv, sort_keys=True)
                con.execute(f"INSERT OR REPLACE INTO surrogate_cards ({', '.join(columns)}, created_at) "
                            f"VALUES ({', '.join('?' * len(columns))}, ?)", [*values, _now()])

    def add_latency_model(self, model: Mapping[str, Any],
                          ops: Sequence[tuple[str, str, str, float, float | None]]) -> None:
        """Store an op-level latency model and its op timings in one transaction, replacing one with the same space,
        device, hardware, dtype and threads (:func:`nasbench.store.latency.write_latency_model`)."""
        from nasbench.store.latency import write_latency_model

        with self.transaction() as con:
            write_latency_model(con, model, ops)

    # -- reads ----------------------------------------------------------------------------------------------------
    def count_measurements(self, space: str) -> int:
        return self.con.execute("SELECT count(*) FROM measurements WHERE space = ?", [space]).fetchone()[0]

    def has_measurement(self, space: str, arch: str, supernet: str, metric: str, task: str = "",
                        device: str = "", since: str | None = None) -> bool:
        """True when (arch, supernet, metric, task, device) is stored (measured at or after ``since``, an ISO UTC
        time, when given): what a resumed job skips. A weight-free metric is stored once for every supernet."""
        supernet = stored_supernet(supernet, metric)
        return self.con.execute(
            "SELECT count(*) FROM measurements WHERE space = ? AND arch_id = ? AND supernet_id = ? AND metric = ? "
            "AND task = ? AND device = ? AND (CAST(? AS TIMESTAMP) IS NULL OR created_at >= CAST(? AS TIMESTAMP))",
            [space, arch, supernet, metric, task, device, since, since]).fetchone()[0] > 0

    def has_supernet(self, supernet: str) -> bool:
        return self.con.execute("SELECT count(*) FROM supernets WHERE id = ?", [supernet]).fetchone()[0] > 0

    def values_by_supernet(self, space: str, arch: str, metric: str, task: str = "") -> dict[str, float]:
        """supernet_id -> stored value of (arch, metric, task): what a resumed study reuses."""
        rows = self.con.execute("SELECT supernet_id, value FROM measurements WHERE space = ? AND arch_id = ? AND "
                                "metric = ? AND task = ?", [space, arch, metric, task]).fetchall()
        return dict(rows)

    def card_hashes(self, space: str, supernet: str) -> dict[str, str]:
        """metric -> data_hash of the stored surrogate cards of (space, supernet)."""
        return {r[0]: r[1] for r in self.con.execute(
            "SELECT metric, data_hash FROM surrogate_cards WHERE space = ? AND supernet_id = ?",
            [space, supernet]).fetchall()}

    def architectures(self, space: str) -> list[dict[str, Any]]:
        """Every stored arch of a space, as canonical dicts, in arch_id order."""
        rows = self.con.execute("SELECT arch FROM architectures WHERE space = ? ORDER BY arch_id", [space]).fetchall()
        return [json.loads(r[0]) for r in rows]

    def query(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run a parameterized query; returns a pandas DataFrame."""
        return self.con.execute(sql, list(params)).df()

    def main_supernet(self, space: str) -> str | None:
        """The space's main supernet as recorded in ``meta`` (None: none recorded)."""
        from nasbench.store.queries import main_supernet

        return main_supernet(self.con, space)

    def set_main_supernet(self, space: str, supernet: str) -> None:
        """Record ``supernet`` as the main supernet of ``space``: the default of queries, fronts, comparisons,
        exports and the publication. It must be a supernet of the space with perplexity or accuracy rows here."""
        from nasbench.store.queries import measured_supernets

        known = [s for s in measured_supernets(self.con, space) if not is_baseline(s)]
        if supernet not in known:
            raise StoreError("supernet", f"must be a supernet measured in {self.path} for space {space!r} (one of "
                                         f"{', '.join(known) or 'none'})", supernet)
        with self.transaction() as con:
            con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [MAIN_SUPERNET_KEY + space, supernet])

    def _spaces(self) -> list[str]:
        return [r[0] for r in self.con.execute(
            "SELECT DISTINCT space FROM architectures UNION SELECT DISTINCT space FROM baseline_archs "
            "ORDER BY 1").fetchall()]

    # -- views ----------------------------------------------------------------------------------------------------
    def refresh_view(self, space: str) -> None:
        """(Re)create ``wide_<space>`` (:func:`nasbench.store.views.refresh_view`)."""
        refresh_view(self.con, space)


def _insert_architectures(con: duckdb.DuckDBPyConnection, space: SearchSpace, archs: Iterable[Mapping[str, Any]],
                          baseline: str | None = None) -> list[str]:
    """Into ``architectures``, or, for the model of the baseline ``baseline``, into ``baseline_archs``."""
    rows, ids = [], []
    for arch in archs:
        arch = space.canonical(arch)
        aid = arch_id(arch)
        ids.append(aid)
        scalars = [None if isinstance(arch[d], list) else arch[d] for d in DIMENSIONS]
        per_layer = {d: arch[d] for d in DIMENSIONS if isinstance(arch[d], list)}
        values = [*scalars, json.dumps(per_layer) if per_layer else None, canonical_json(arch), space.params(arch),
                  _now()]
        rows.append([aid, space.name, *values] if baseline is None else [space.name, baseline, aid, True, *values])
    if rows:
        marks = ", ".join("?" * len(rows[0]))
        table = "architectures" if baseline is None else "baseline_archs"
        con.executemany(f"INSERT INTO {table} VALUES ({marks}) ON CONFLICT DO NOTHING", rows)
    return ids


def _delete_measurements(con: duckdb.DuckDBPyConnection, space: str, measurements: Sequence[Measurement]) -> None:
    """The stored rows with the keys of ``measurements`` (the measurements table's unique key)."""
    keys = [[space, m.arch_id, stored_supernet(m.supernet_id, m.metric), m.metric, m.task, m.device, m.dtype, m.batch,
             m.seq_len] for m in measurements]
    if keys:
        con.executemany("DELETE FROM measurements WHERE space = ? AND arch_id = ? AND supernet_id = ? AND metric = ? "
                        "AND task = ? AND device = ? AND dtype = ? AND batch = ? AND seq_len = ?", keys)


def _insert_measurements(con: duckdb.DuckDBPyConnection, space: str, measurements: Sequence[Measurement]) -> None:
    rows = [[space, m.arch_id, stored_supernet(m.supernet_id, m.metric), m.metric, m.task, m.device, m.dtype, m.batch,
             m.seq_len, m.value, m.unit, m.spread, m.n_repeats, m.cost_s, _json(m.software), _json(m.extra), _now()]
            for m in measurements]
    if rows:
        con.executemany(
            "INSERT INTO measurements (space, arch_id, supernet_id, metric, task, device, dtype, batch, seq_len, "
            "value, unit, spread, n_repeats, cost_s, software, extra, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", rows)
