"""The DuckDB store: one file holds spaces, supernets, architectures and measurements.

The schema is versioned (table ``meta``) and created on first open. Every write runs in a transaction and binds its
values as parameters; identifiers in the generated wide views come from the project's own metric names and are
quoted. Duplicate measurements (same identifying columns) are skipped, so a restarted job adds no duplicates.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import duckdb

from nasbench.errors import StoreError
from nasbench.space import DIMENSIONS, SearchSpace, arch_id, canonical_json

__all__ = ["SCHEMA_VERSION", "DEFAULT_DB", "SAFE_CONFIG", "Measurement", "Store", "connect_read_only", "open_db",
           "view_name"]

SCHEMA_VERSION = 2
DEFAULT_DB = "results/nasbench.duckdb"

_DIMENSION_COLUMNS = ",\n    ".join(f"{d} INTEGER" for d in DIMENSIONS)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS spaces (
    name VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    hash VARCHAR NOT NULL,
    yaml VARCHAR NOT NULL,
    path VARCHAR,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (name, hash)
);
CREATE TABLE IF NOT EXISTS supernets (
    id VARCHAR PRIMARY KEY,
    space VARCHAR NOT NULL,
    base_model VARCHAR NOT NULL,
    strategy VARCHAR,
    kd VARCHAR,
    peft VARCHAR,
    data_hash VARCHAR,
    steps INTEGER,
    tokens BIGINT,
    wall_time_s DOUBLE,
    checkpoint VARCHAR,
    config VARCHAR,
    created_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS architectures (
    arch_id VARCHAR NOT NULL,
    space VARCHAR NOT NULL,
    {_DIMENSION_COLUMNS},
    per_layer VARCHAR,
    arch VARCHAR NOT NULL,
    params BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (space, arch_id)
);
CREATE TABLE IF NOT EXISTS measurements (
    space VARCHAR NOT NULL,
    arch_id VARCHAR NOT NULL,
    supernet_id VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    task VARCHAR NOT NULL DEFAULT '',
    device VARCHAR NOT NULL DEFAULT '',
    dtype VARCHAR NOT NULL DEFAULT '',
    batch INTEGER NOT NULL DEFAULT 0,
    seq_len INTEGER NOT NULL DEFAULT 0,
    value DOUBLE,
    unit VARCHAR NOT NULL,
    spread DOUBLE,
    n_repeats INTEGER,
    cost_s DOUBLE,
    software VARCHAR,
    extra VARCHAR,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (space, arch_id, supernet_id, metric, task, device, dtype, batch, seq_len)
);
-- schema 2: surrogate fidelity cards and optimizer comparisons
CREATE TABLE IF NOT EXISTS surrogate_cards (
    space VARCHAR NOT NULL,
    supernet_id VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    transform VARCHAR NOT NULL,
    n_train INTEGER NOT NULL,
    n_test INTEGER NOT NULL,
    kendall_tau DOUBLE,
    spearman_rho DOUBLE,
    r2 DOUBLE,
    mae DOUBLE,
    coverage_90 DOUBLE,
    loso_kendall_tau DOUBLE,
    loso_n INTEGER,
    cv VARCHAR,
    data_hash VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (space, supernet_id, metric)
);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    space VARCHAR NOT NULL,
    supernet_id VARCHAR,
    mode VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    seed INTEGER NOT NULL,
    objectives VARCHAR NOT NULL,
    max_evals INTEGER,
    max_sim_time_s DOUBLE,
    workers INTEGER,
    n_evals INTEGER,
    sim_time_s DOUBLE,
    wall_time_s DOUBLE,
    hv DOUBLE,
    hv_norm DOUBLE,
    igd DOUBLE,
    front_share DOUBLE,
    config VARCHAR,
    created_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS run_traces (
    run_id VARCHAR NOT NULL,
    eval INTEGER NOT NULL,
    sim_time_s DOUBLE NOT NULL,
    arch_id VARCHAR,
    objectives VARCHAR,
    hv DOUBLE,
    hv_norm DOUBLE,
    igd DOUBLE,
    front_share DOUBLE,
    PRIMARY KEY (run_id, eval)
);
"""


@dataclass(frozen=True)
class Measurement:
    """One measured value. The identifying columns are everything up to ``seq_len``."""

    arch_id: str
    supernet_id: str
    metric: str
    value: float | None
    """``None`` only where a value cannot exist on this machine (e.g. energy without NVML); never invented."""
    unit: str
    task: str = ""
    device: str = ""
    dtype: str = ""
    batch: int = 0
    seq_len: int = 0
    spread: float | None = None
    """Interquartile range over repeats, where repeats were taken."""
    n_repeats: int | None = None
    cost_s: float | None = None
    """Seconds this measurement took: the optimizers' simulated time."""
    software: Mapping[str, str] | None = None
    extra: Mapping[str, Any] | None = None


def view_name(space: str) -> str:
    """Name of the wide view of a space: ``wide_`` + the space name with non-alphanumerics as ``_``."""
    return "wide_" + re.sub(r"[^0-9a-zA-Z]+", "_", space).strip("_").lower()


_DUCKDB_MAGIC = b"DUCK"
_SQLITE_MAGIC = b"SQLite format 3\x00"
#: Settings of every read-only connection: DuckDB may read the DB file and nothing else on the machine (no COPY TO,
#: read_csv/read_text/glob, ATTACH of other files, IMPORT/EXPORT DATABASE, extension installs), and SQL cannot turn
#: them back on (``lock_configuration``).
SAFE_CONFIG: dict[str, Any] = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
    "allow_persistent_secrets": False,
    "lock_configuration": True,
}


def open_db(path: str | Path, *, read_only: bool = True, create: bool = False) -> duckdb.DuckDBPyConnection:
    """The one way the project opens a benchmark DB: the file must be a nasbench DuckDB file of a known schema.

    Every problem is a :class:`StoreError` naming it: a missing, zero-byte, SQLite, non-DuckDB, corrupt or truncated
    file, a DuckDB file without nasbench's ``meta`` table (an unrelated DB), a schema version this nasbench does not
    know, or a file another process holds open for writing (DuckDB allows one writer and no concurrent readers
    across processes: readers get "in use by a writer" and may retry once it is done). Read-only connections cannot
    touch any other file (:data:`SAFE_CONFIG`). ``create``: a missing file (or a DuckDB file with no tables) becomes
    a new nasbench DB; the caller then creates the schema.
    """
    path = Path(path)
    where = str(path)
    if not path.exists():
        if not create or read_only:
            raise StoreError(where, "database file not found", where)
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        if not path.is_file():
            raise StoreError(where, "not a regular file (a nasbench database is one DuckDB file)", where)
        try:
            with open(path, "rb") as f:
                head = f.read(16)
        except OSError as exc:
            raise StoreError(where, "cannot read the database file", exc.strerror or str(exc)) from None
        if not head:
            raise StoreError(where, "empty file (0 bytes), not a nasbench database", 0)
        if head.startswith(_SQLITE_MAGIC):
            raise StoreError(where, "an SQLite database, not a nasbench (DuckDB) database", "SQLite format 3")
        if head[8:12] != _DUCKDB_MAGIC:
            raise StoreError(where, "not a DuckDB database file (no DuckDB header)", head[:12])
    try:
        con = duckdb.connect(where, read_only=read_only, config=dict(SAFE_CONFIG) if read_only else {})
    except duckdb.Error as exc:
        raise _open_error(where, exc) from None
    try:
        _check_schema(con, where, allow_empty=create and not read_only)
    except BaseException:
        con.close()
        raise
    return con


def _open_error(where: str, exc: Exception) -> StoreError:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "lock" in first.lower():
        return StoreError(where, "in use by a writer (another process has it open for writing; DuckDB lets no "
                                 "other process read meanwhile): retry when that job has finished",
                          first, show_got=False)
    return StoreError(where, "cannot open as a DuckDB database (corrupt, truncated or from another DuckDB version)",
                      first)


def _check_schema(con: duckdb.DuckDBPyConnection, where: str, allow_empty: bool) -> None:
    try:
        tables = {r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database()").fetchall()}
        if "meta" not in tables:
            if allow_empty and not tables:
                return
            listed = ", ".join(sorted(tables)[:5]) or "no tables"
            raise StoreError(where, "not a nasbench database (it has no meta table)", listed)
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except duckdb.Error as exc:
        raise _open_error(where, exc) from None
    found = None if row is None else str(row[0])
    if found is None or not found.isdigit() or not 1 <= int(found) <= 10**6:
        raise StoreError(where, "not a nasbench database (meta holds no valid schema_version)", found)
    if int(found) > SCHEMA_VERSION:
        raise StoreError(where, f"written by a newer nasbench (schema {found}); this one reads schema <= "
                                f"{SCHEMA_VERSION}", int(found))


def connect_read_only(path: str | Path) -> duckdb.DuckDBPyConnection:
    """Open an existing nasbench DB read-only (:func:`open_db`): writes fail and no other file can be touched."""
    return open_db(path, read_only=True)


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
            self.con.execute(_SCHEMA)
            self.con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])

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

    def add_measurements(self, space: str, measurements: Sequence[Measurement]) -> int:
        """Insert measurements in one transaction, skipping ones already stored; returns how many were new."""
        before = self.count_measurements(space)
        with self.transaction() as con:
            _insert_measurements(con, space, measurements)
        self.refresh_view(space)
        return self.count_measurements(space) - before

    def add_results(self, space: SearchSpace, arch: Mapping[str, Any], measurements: Sequence[Measurement]) -> None:
        """An arch and its measurements in one transaction: a job killed mid-arch leaves nothing of that arch."""
        with self.transaction() as con:
            _insert_architectures(con, space, [arch])
            _insert_measurements(con, space.name, measurements)
        self.refresh_view(space.name)

    def merge(self, sources: Sequence[str | Path]) -> dict[str, int]:
        """Copy every row of other DuckDB files into this one, skipping rows already here (same keys).

        Returns the number of new rows per table. Sources are attached read-only.
        """
        tables = ("spaces", "supernets", "architectures", "measurements", "surrogate_cards", "runs", "run_traces")
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
            finally:
                self.con.execute(f"DETACH {alias}")
        for (space,) in self.con.execute("SELECT DISTINCT space FROM architectures").fetchall():
            self.refresh_view(space)
        return {t: self.con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] - before[t] for t in tables}

    def add_supernet(self, supernet_id: str, space: str, base_model: str, **fields: Any) -> None:
        """Insert or update one row of ``supernets`` (a training run updates steps, tokens, wall time, checkpoint)."""
        allowed = {"strategy", "kd", "peft", "data_hash", "steps", "tokens", "wall_time_s", "checkpoint", "config"}
        unknown = sorted(set(fields) - allowed)
        if unknown:
            raise StoreError("supernets", f"unknown column; allowed: {', '.join(sorted(allowed))}", unknown[0])
        if "config" in fields and not isinstance(fields["config"], str):
            fields["config"] = json.dumps(fields["config"], sort_keys=True)
        columns = ["id", "space", "base_model", *fields, "created_at"]
        values = [supernet_id, space, base_model, *fields.values(), _now()]
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

    # -- reads ----------------------------------------------------------------------------------------------------
    def count_measurements(self, space: str) -> int:
        return self.con.execute("SELECT count(*) FROM measurements WHERE space = ?", [space]).fetchone()[0]

    def has_measurement(self, space: str, arch: str, supernet_id: str, metric: str, task: str = "",
                        device: str = "") -> bool:
        """True when (arch, supernet, metric, task, device) is stored: what a resumed job skips."""
        return self.con.execute(
            "SELECT count(*) FROM measurements WHERE space = ? AND arch_id = ? AND supernet_id = ? AND metric = ? "
            "AND task = ? AND device = ?", [space, arch, supernet_id, metric, task, device]).fetchone()[0] > 0

    def architectures(self, space: str) -> list[dict[str, Any]]:
        """Every stored arch of a space, as canonical dicts, in arch_id order."""
        rows = self.con.execute("SELECT arch FROM architectures WHERE space = ? ORDER BY arch_id", [space]).fetchall()
        return [json.loads(r[0]) for r in rows]

    def query(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run a parameterized query; returns a pandas DataFrame."""
        return self.con.execute(sql, list(params)).df()

    # -- views ----------------------------------------------------------------------------------------------------
    def refresh_view(self, space: str) -> None:
        """(Re)create ``wide_<space>``: one row per (arch, supernet) with ``hp_<dimension>`` and ``metric_<name>``.

        ``metric_params`` is the exact analytic count; every other metric column holds the latest stored value of
        that (metric, task) across devices and settings (query ``measurements`` to tell those apart).
        """
        pairs = self.con.execute(
            "SELECT DISTINCT metric, task FROM measurements WHERE space = ? AND metric <> 'params' "
            "ORDER BY metric, task", [space]).fetchall()
        metric_columns = "".join(
            f",\n    arg_max(m.value, m.created_at) FILTER (WHERE m.metric = {_literal(metric)} AND m.task = "
            f"{_literal(task)}) AS {_ident(_column(metric, task))}" for metric, task in pairs)
        hp = ",\n    ".join(f"a.{d} AS hp_{d}" for d in DIMENSIONS)
        sql = f"""
CREATE OR REPLACE VIEW {_ident(view_name(space))} AS
SELECT a.space, a.arch_id, m.supernet_id,
    {hp},
    a.per_layer AS hp_per_layer,
    a.params AS metric_params{metric_columns}
FROM architectures a LEFT JOIN measurements m ON m.space = a.space AND m.arch_id = a.arch_id
WHERE a.space = {_literal(space)}
GROUP BY ALL
"""
        self.con.execute(sql)


def _insert_architectures(con: duckdb.DuckDBPyConnection, space: SearchSpace,
                          archs: Iterable[Mapping[str, Any]]) -> list[str]:
    rows, ids = [], []
    for arch in archs:
        arch = space.canonical(arch)
        aid = arch_id(arch)
        ids.append(aid)
        scalars = [None if isinstance(arch[d], list) else arch[d] for d in DIMENSIONS]
        per_layer = {d: arch[d] for d in DIMENSIONS if isinstance(arch[d], list)}
        rows.append([aid, space.name, *scalars, json.dumps(per_layer) if per_layer else None, canonical_json(arch),
                     space.params(arch), _now()])
    if rows:
        marks = ", ".join("?" * len(rows[0]))
        con.executemany(f"INSERT INTO architectures VALUES ({marks}) ON CONFLICT DO NOTHING", rows)
    return ids


def _insert_measurements(con: duckdb.DuckDBPyConnection, space: str, measurements: Sequence[Measurement]) -> None:
    rows = [[space, m.arch_id, m.supernet_id, m.metric, m.task, m.device, m.dtype, m.batch, m.seq_len, m.value,
             m.unit, m.spread, m.n_repeats, m.cost_s, _json(m.software), _json(m.extra), _now()] for m in measurements]
    if rows:
        con.executemany(
            "INSERT INTO measurements (space, arch_id, supernet_id, metric, task, device, dtype, batch, seq_len, "
            "value, unit, spread, n_repeats, cost_s, software, extra, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", rows)


def _column(metric: str, task: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", f"metric_{metric}" + (f"_{task}" if task else "")).lower()


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _json(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)
