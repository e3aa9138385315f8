"""Op-level latency models in the DB (schema 4): ``latency_models`` holds one row per space, device, hardware, dtype
and threads (what the ops were timed with, the fitted overhead as JSON), ``latency_ops`` its op timings (a shape as
``576x192``). Plain rows in and out: :mod:`nasbench.profile.latency_model` turns them into its table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import duckdb

from nasbench.store.connect import connect_read_only
from nasbench.store.readings import READINGS
from nasbench.store.schema import WEIGHT_FREE_ID, _now

__all__ = ["MODEL_KEY", "write_latency_model", "read_latency_model", "measured_latencies"]

#: The columns that name one latency model (and its ops' rows).
MODEL_KEY = ("space", "device", "hardware", "dtype", "threads")
_MODEL_COLUMNS = (*MODEL_KEY, "family", "cpu", "cpu_flags", "gpu", "seq_len", "context", "vocab_size", "rounds",
                  "overhead", "fitted_n", "software")


def write_latency_model(con: duckdb.DuckDBPyConnection, model: Mapping[str, Any],
                        ops: Sequence[tuple[str, str, str, float, float | None]]) -> None:
    """Store one model (``model``: :data:`_MODEL_COLUMNS`; ``overhead``, ``fitted_n``, ``software`` as mappings) and
    its ``ops`` (phase, op, shape, ms, spread), replacing a model with the same key; inside the caller's
    transaction."""
    key = [model[c] for c in MODEL_KEY]
    where = " AND ".join(f"{c} = ?" for c in MODEL_KEY)
    con.execute(f"DELETE FROM latency_ops WHERE {where}", key)
    con.execute(f"DELETE FROM latency_models WHERE {where}", key)
    values = [json.dumps(model[c], sort_keys=True) if c in ("overhead", "fitted_n", "software") else model[c]
              for c in _MODEL_COLUMNS]
    con.execute(f"INSERT INTO latency_models ({', '.join(_MODEL_COLUMNS)}, created_at) "
                f"VALUES ({', '.join('?' * len(_MODEL_COLUMNS))}, ?)", [*values, _now()])
    if ops:
        con.executemany(f"INSERT INTO latency_ops ({', '.join(MODEL_KEY)}, phase, op, shape, ms, spread) "
                        f"VALUES ({', '.join('?' * (len(MODEL_KEY) + 5))})", [[*key, *row] for row in ops])


def read_latency_model(db: str | Path, space: str, device: str, dtype: str | None = None,
                       ) -> tuple[dict[str, Any], list[tuple[str, str, str, float, float | None]]] | None:
    """The latest stored model of ``space`` on ``device`` (in ``dtype`` when given) and its ops, or None (none
    stored, or a DB older than schema 4)."""
    con = connect_read_only(db)
    try:
        if not con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'latency_models' "
                           "AND table_catalog = current_database()").fetchone()[0]:
            return None
        cur = con.execute(f"SELECT {', '.join(_MODEL_COLUMNS)}, created_at FROM latency_models WHERE space = ? AND "
                          "device = ? AND (CAST(? AS VARCHAR) IS NULL OR dtype = ?) ORDER BY created_at DESC LIMIT 1",
                          [space, device, dtype, dtype])
        row = cur.fetchone()
        if row is None:
            return None
        model = dict(zip([d[0] for d in cur.description], row))
        for column in ("overhead", "fitted_n", "software"):
            model[column] = json.loads(model[column]) if model[column] else {}
        where = " AND ".join(f"{c} = ?" for c in MODEL_KEY)
        ops = con.execute(f"SELECT phase, op, shape, ms, spread FROM latency_ops WHERE {where} ORDER BY phase, op, "
                          "shape", [model[c] for c in MODEL_KEY]).fetchall()
    finally:
        con.close()
    return model, ops


def measured_latencies(db: str | Path, space: str, metric: str, device: str, dtype: str,
                       seq_len: int) -> list[tuple[dict[str, Any], float, dict[str, Any]]]:
    """(arch, value, extra) of every arch of ``space`` with a weight-free ``metric`` row measured on ``device`` in
    ``dtype`` at ``seq_len`` tokens (baselines' models left out), in arch_id order; ``metric`` as
    :mod:`nasbench.store.readings` names it (``latency_ms`` drift-cancelled, ``latency_wall_ms`` the wall clock)."""
    con = connect_read_only(db)
    try:
        rows = con.execute(
            f"SELECT a.arch, m.value, m.extra FROM ({READINGS}) AS m JOIN architectures a "
            "ON a.space = m.space AND a.arch_id = m.arch_id WHERE m.space = ? AND m.metric = ? AND m.device = ? "
            "AND m.dtype = ? AND m.seq_len = ? AND m.supernet_id = ? AND m.value IS NOT NULL ORDER BY m.arch_id",
            [space, metric, device, dtype, seq_len, WEIGHT_FREE_ID]).fetchall()
    finally:
        con.close()
    return [(json.loads(arch), float(value), json.loads(extra) if extra else {}) for arch, value, extra in rows]
