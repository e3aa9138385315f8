"""Bringing a DB to the current schema, and the rules every write and merge keeps.

Schema 6 (from 5) changes no table: the recreated views read the drift-cancelled ``decode_ms_per_token`` and call
the decode wall clock ``decode_wall_ms_per_token``.
Schema 5 (from 4) changes no table: the wide views, recreated whenever a DB is brought to a new schema, read the
drift-cancelled ``latency_ms`` and call the stored wall clock ``latency_wall_ms`` (:mod:`nasbench.store.readings`).
Schema 4 (from 3) only adds the empty tables of op-level latency models (``latency_models``, ``latency_ops``).
Schema 3 (from 1 or 2, applied when :class:`nasbench.store.Store` opens a DB or merges one in):

* **One home for weight-free rows.** A value that does not depend on weights (latency, memory, FLOPs, ...:
  :data:`nasbench.metrics.SHARED`) is stored once per arch and protocol under the neutral supernet id ``''``
  (:data:`~nasbench.store.schema.WEIGHT_FREE_ID`), whichever supernet's weights were loaded when it was measured;
  where several supernets measured the same key, the latest row stays. A pruning baseline keeps its own rows.
* **Baseline archs apart.** The archs of pruning baselines (supernet ids ``baseline-*``) are listed in
  ``baseline_archs``; an arch that only a baseline measured leaves ``architectures``, so that ``architectures``
  holds the space's archs and ``measurements JOIN architectures`` joins those only.

Each step is idempotent: :func:`normalize` runs again after every merge, so old-format shard DBs merge into the
current layout.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from nasbench.metrics import SHARED
from nasbench.space import DIMENSIONS
from nasbench.store.schema import SCHEMA, SCHEMA_VERSION, WEIGHT_FREE_ID, _ident, _literal, _now

__all__ = ["migrate", "normalize", "share_weight_free_rows", "record_baseline_archs", "compact"]

_MEASUREMENT_COLUMNS = ("space, arch_id, supernet_id, metric, task, device, dtype, batch, seq_len, value, unit, "
                        "spread, n_repeats, cost_s, software, extra, created_at")
_BASELINE = "starts_with({}, 'baseline-')"


def migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Create what the current schema adds, apply :func:`normalize` and record the schema version (inside the
    caller's transaction)."""
    con.execute(SCHEMA)
    normalize(con)
    con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])


def normalize(con: duckdb.DuckDBPyConnection) -> None:
    """Baseline archs recorded (and moved out of ``architectures``), weight-free rows under the neutral id."""
    record_baseline_archs(con)
    share_weight_free_rows(con)


def share_weight_free_rows(con: duckdb.DuckDBPyConnection) -> int:
    """Move every supernet's rows of the shared metrics to the neutral id (the latest row of each key stays; a row
    already stored under the neutral id is kept); returns how many rows moved."""
    marks = ", ".join("?" * len(SHARED))
    where = (f"metric IN ({marks}) AND supernet_id <> ? AND NOT {_BASELINE.format('supernet_id')}")
    params = [*SHARED, WEIGHT_FREE_ID]
    moved = con.execute(f"SELECT count(*) FROM measurements WHERE {where}", params).fetchone()[0]
    if not moved:
        return 0
    columns = _MEASUREMENT_COLUMNS.replace("supernet_id", "? AS supernet_id")
    con.execute(
        f"INSERT INTO measurements ({_MEASUREMENT_COLUMNS}) SELECT {columns} FROM measurements WHERE {where} "
        "QUALIFY row_number() OVER (PARTITION BY space, arch_id, metric, task, device, dtype, batch, seq_len "
        "ORDER BY created_at DESC, supernet_id) = 1 ON CONFLICT DO NOTHING", [WEIGHT_FREE_ID, *params])
    con.execute(f"DELETE FROM measurements WHERE {where}", params)
    return int(moved)


def record_baseline_archs(con: duckdb.DuckDBPyConnection) -> None:
    """List every arch a baseline measured in ``baseline_archs`` (the space's dimensions where the arch is one of the
    space's, else the arch its rows record in ``extra.arch``), then drop from ``architectures`` the archs that only
    baselines measured."""
    dims = ", ".join(f"coalesce(a.{d}, TRY_CAST(json_extract(b.arch, '$.{d}') AS INTEGER))" for d in DIMENSIONS)
    con.execute(f"""
INSERT INTO baseline_archs
SELECT b.space, b.supernet_id, b.arch_id, a.arch_id IS NOT NULL, {dims}, a.per_layer, coalesce(a.arch, b.arch),
    coalesce(a.params, b.params), ?
FROM (SELECT space, supernet_id, arch_id,
             any_value(CAST(json_extract(extra, '$.arch') AS VARCHAR))
                 FILTER (WHERE json_extract(extra, '$.arch') IS NOT NULL) AS arch,
             CAST(max(value) FILTER (WHERE metric = 'params') AS BIGINT) AS params
      FROM measurements WHERE {_BASELINE.format('supernet_id')} GROUP BY ALL) AS b
LEFT JOIN architectures a ON a.space = b.space AND a.arch_id = b.arch_id
ON CONFLICT DO NOTHING""", [_now()])
    con.execute(f"""
DELETE FROM architectures a
WHERE EXISTS (SELECT 1 FROM baseline_archs b WHERE b.space = a.space AND b.arch_id = a.arch_id)
  AND NOT EXISTS (SELECT 1 FROM measurements m WHERE m.space = a.space AND m.arch_id = a.arch_id
                  AND NOT {_BASELINE.format('m.supernet_id')})""")


def compact(path: str | Path) -> tuple[int, int]:
    """Rewrite the DuckDB file ``path`` without the space its deleted and moved rows left (DuckDB does not give
    it back): every table, constraint and view copied into a new file that then replaces it. The file must not be
    open elsewhere. Returns (bytes before, bytes after)."""
    import os

    path = Path(path)
    tmp = path.with_name(path.name + ".compact")
    tmp.unlink(missing_ok=True)
    before = path.stat().st_size
    con = duckdb.connect(str(tmp))
    try:
        con.execute(f"ATTACH {_literal(str(path))} AS source (READ_ONLY)")
        target = con.execute("SELECT current_database()").fetchone()[0]
        con.execute(f"COPY FROM DATABASE source TO {_ident(target)}")
        con.execute("DETACH source")
    except BaseException:
        con.close()
        tmp.unlink(missing_ok=True)
        raise
    con.close()
    os.replace(tmp, path)
    return before, path.stat().st_size
