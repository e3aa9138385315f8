"""The optimizer comparison's tables: ``runs`` (one row per method and seed) and ``run_traces`` (its curve)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from nasbench.store.connect import connect_read_only

__all__ = ["RUN_COLUMNS", "TRACE_COLUMNS", "write_run", "done_runs", "runs_by_id", "load_runs"]

RUN_COLUMNS = ["run_id", "space", "supernet_id", "mode", "method", "seed", "objectives", "max_evals",
               "max_sim_time_s", "workers", "n_evals", "sim_time_s", "wall_time_s", "hv", "hv_norm", "igd",
               "front_share", "config", "created_at"]
TRACE_COLUMNS = ["run_id", "eval", "sim_time_s", "arch_id", "objectives", "hv", "hv_norm", "igd", "front_share"]


def write_run(store: Any, run: Sequence[Any], traces: Sequence[Sequence[Any]]) -> None:
    """One run's row and its trace, in one transaction of ``store`` (a :class:`nasbench.store.Store`)."""
    import pandas as pd

    runs = pd.DataFrame([run], columns=RUN_COLUMNS)
    trace = pd.DataFrame(traces, columns=TRACE_COLUMNS)
    with store.transaction() as con:
        con.register("_new_run", runs)
        con.register("_new_traces", trace)
        con.execute(f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) SELECT * FROM _new_run")
        con.execute(f"INSERT INTO run_traces ({', '.join(TRACE_COLUMNS)}) SELECT * FROM _new_traces")
        con.unregister("_new_run")
        con.unregister("_new_traces")


def done_runs(store: Any, run_ids: Sequence[str]) -> set[str]:
    """Those of ``run_ids`` already stored."""
    rows = store.con.execute("SELECT run_id FROM runs WHERE run_id IN (SELECT unnest(?))", [list(run_ids)]).fetchall()
    return {r[0] for r in rows}


def runs_by_id(store: Any, run_ids: Sequence[str]) -> Any:
    """The ``runs`` rows of ``run_ids`` as a DataFrame, by method and seed."""
    return store.query("SELECT * FROM runs WHERE run_id IN (SELECT unnest(?)) ORDER BY method, seed", [list(run_ids)])


def load_runs(db: str | Path, space: str, objectives: Sequence[str], mode: str | None = None,
              supernet_id: str | None = None, run_ids: Sequence[str] | None = None) -> tuple[Any, Any]:
    """``runs`` and ``run_traces`` rows of one space and objective set (read-only), as DataFrames; ``run_ids``
    keeps one comparison's runs (a DB may hold several with other budgets)."""
    con = connect_read_only(db)
    try:
        where = "r.space = ? AND r.objectives = ?" + (" AND r.mode = ?" if mode else "") \
            + (" AND r.supernet_id = ?" if supernet_id else "") \
            + (" AND r.run_id IN (SELECT unnest(?))" if run_ids is not None else "")
        params = [space, ",".join(objectives)] + ([mode] if mode else []) + ([supernet_id] if supernet_id else []) \
            + ([list(run_ids)] if run_ids is not None else [])
        runs = con.execute(f"SELECT * FROM runs r WHERE {where} ORDER BY method, seed", params).df()
        traces = con.execute(f"SELECT t.* FROM run_traces t JOIN runs r USING (run_id) WHERE {where} "
                             "ORDER BY t.run_id, t.eval", params).df()
    finally:
        con.close()
    return runs, traces
