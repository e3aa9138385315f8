"""Measured values by arch and supernet, as the report and the CLI read them, in one place (bound parameters
only).

Values are read as :mod:`nasbench.store.readings` names and derives them: ``latency_ms`` is the drift-cancelled
latency, ``latency_wall_ms`` the wall clock the profiler stores as ``latency_ms``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from nasbench.store.connect import connect_read_only
from nasbench.store.queries import main_supernet as recorded
from nasbench.store.readings import READINGS
from nasbench.store.schema import WEIGHT_FREE_ID

__all__ = ["metric_values", "supernet_rows", "run_scores", "run_dates", "latest_rows", "architectures", "arch_params",
           "space_names", "surrogate_cards", "coverage", "baseline_rows", "latency_spread", "reference_drift", "paired_values",
           "main_supernet"]


def _query(db: str | Path, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple]]:
    """The column names and every row of one query on ``db``, opened read-only and closed before the caller shapes
    the rows: no read keeps a DB open (a build may be writing it next)."""
    con = connect_read_only(db)
    try:
        cur = con.execute(sql, list(params))
        return [d[0] for d in cur.description], cur.fetchall()
    finally:
        con.close()


def _records(db: str | Path, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
    """One query's rows as ``{column: value}``."""
    names, rows = _query(db, sql, params)
    return [dict(zip(names, row)) for row in rows]


def metric_values(db: str | Path, space: str, metric: str, arch_ids: Sequence[str] | None = None,
                  task: str = "") -> dict[tuple[str, str], dict[str, Any]]:
    """``{(supernet_id, arch_id): {value, dtype, seq_len, extra}}`` of one metric (and task) of a space."""
    sql = (f"SELECT supernet_id, arch_id, value, dtype, seq_len, extra FROM ({READINGS}) AS r "
           "WHERE space = ? AND metric = ? AND task = ?")
    params: list[Any] = [space, metric, task]
    if arch_ids is not None:
        sql += " AND list_contains(?, arch_id)"
        params.append(list(arch_ids))
    _, rows = _query(db, sql + " ORDER BY supernet_id, arch_id", params)
    return {(s, a): {"value": v, "dtype": d, "seq_len": n, "extra": e} for s, a, v, d, n, e in rows}


def supernet_rows(db: str | Path, space: str) -> list[dict[str, Any]]:
    """The space's ``supernets`` rows (id, strategy, kd, peft, steps, tokens, wall time, config), by id."""
    return _records(db, "SELECT id, strategy, kd, peft, steps, tokens, wall_time_s, checkpoint, config "
                        "FROM supernets WHERE space = ? ORDER BY id", [space])


#: Per (mode, objectives, supernet) group, the runs on the newest table they were made on: a rerun after the table's
#: values changed (``runs.config.table``, the fingerprint of the true table) supersedes the runs before it, and the
#: two are never pooled. Noisy runs (``config.noise``) are a group of their own.
_NEWEST_RUNS = (
    "WITH r AS (SELECT *, coalesce(json_extract_string(config, '$.table'), '') AS fp, "
    "coalesce(json_extract(config, '$.noise')::BOOLEAN, false) AS noisy FROM runs WHERE space = ?), "
    "newest AS (SELECT mode, objectives, supernet_id, noisy, arg_max(fp, created_at) AS fp FROM r GROUP BY ALL) "
    "SELECT r.* FROM r JOIN newest n ON n.mode = r.mode AND n.objectives = r.objectives AND n.supernet_id IS NOT "
    "DISTINCT FROM r.supernet_id AND n.noisy = r.noisy AND n.fp = r.fp")


def run_scores(runs_db: str | Path, space: str) -> dict[tuple[str, str, str], dict[str, dict[int, dict[int, float]]]]:
    """``{(mode, objectives, supernet): {method: {seed: {evaluations: score}}}}`` of the space's optimizer runs, at
    the evaluation counts the runs of a group share (powers of two and the last); the score is ``hv_norm`` where the
    true front is known (table mode), else ``hv``. Only the runs on each group's newest table count, and noisy runs
    (``nasbench compare --noise``) are left out: their readings are another question."""
    _, rows = _query(
        runs_db, "SELECT r.mode, r.objectives, r.supernet_id, r.method, r.seed, t.eval, coalesce(t.hv_norm, t.hv) "
        f"FROM ({_NEWEST_RUNS}) r JOIN run_traces t USING (run_id) WHERE NOT r.noisy AND coalesce(t.hv_norm, t.hv) "
        "IS NOT NULL AND (t.eval = r.n_evals OR (t.eval & (t.eval - 1)) = 0) ORDER BY 1, 2, 3, 4, 5, 6", [space])
    out: dict[tuple[str, str, str], dict[str, dict[int, dict[int, float]]]] = {}
    for mode, objectives, supernet, method, seed, evaluation, score in rows:
        group = out.setdefault((mode, objectives, supernet), {})
        group.setdefault(method, {}).setdefault(seed, {})[int(evaluation)] = float(score)
    return out


def run_dates(runs_db: str | Path, space: str) -> dict[tuple[str, str, str], tuple[Any, Any]]:
    """``{(mode, objectives, supernet): (first, last)}``: when the noise-free runs :func:`run_scores` counts were
    made (``runs.created_at``)."""
    _, rows = _query(runs_db, f"SELECT mode, objectives, supernet_id, min(created_at), max(created_at) FROM "
                              f"({_NEWEST_RUNS}) WHERE NOT noisy GROUP BY ALL", [space])
    return {(mode, objectives, supernet): (first, last) for mode, objectives, supernet, first, last in rows}


def latest_rows(db: str | Path, space: str, supernet: str, metrics: Sequence[str]) -> dict[str, Any]:
    """``{metric: newest created_at}`` of the rows ``supernet`` reads of each metric (its own and the weight-free
    ones), as readers name them (:mod:`nasbench.store.readings`)."""
    if not metrics:
        return {}
    _, rows = _query(db, f"SELECT metric, max(created_at) FROM ({READINGS}) WHERE space = ? AND metric IN "
                         f"({', '.join('?' * len(metrics))}) AND supernet_id IN (?, ?) GROUP BY metric",
                     [space, *metrics, supernet, WEIGHT_FREE_ID])
    return dict(rows)


def _archs_sql(columns: str) -> str:
    """The space's archs and the baselines' archs of the space (schema 3 keeps those in ``baseline_archs``; an older
    DB has them in ``architectures``), one row each."""
    return (f"SELECT {columns} FROM architectures WHERE space = ? UNION SELECT {columns} FROM baseline_archs "
            "WHERE space = ? AND in_space")


def architectures(db: str | Path, space: str) -> dict[str, dict[str, Any]]:
    """``{arch_id: arch}`` of the space's stored architectures, the baselines' archs of the space included."""
    import json

    _, rows = _query(db, *_with_baselines(db, "arch_id, arch", space))
    return {aid: json.loads(arch) for aid, arch in rows}


def arch_params(db: str | Path, space: str) -> dict[str, int]:
    """``{arch_id: params}`` of the space's stored architectures, the baselines' archs of the space included."""
    _, rows = _query(db, *_with_baselines(db, "arch_id, params", space))
    return {aid: int(params) for aid, params in rows}


def _with_baselines(db: str | Path, columns: str, space: str) -> tuple[str, list[Any]]:
    _, rows = _query(db, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'baseline_archs'")
    if rows[0][0]:
        return _archs_sql(columns), [space, space]
    return f"SELECT {columns} FROM architectures WHERE space = ?", [space]


def main_supernet(db: str | Path, space: str) -> str | None:
    """The space's main supernet as the DB records it (``meta``; None where none is recorded): the supernet the
    benchmark's defaults and its report lead with."""
    con = connect_read_only(db)
    try:
        return recorded(con, space)
    finally:
        con.close()


def space_names(db: str | Path) -> list[str]:
    """The names of the spaces a DB holds measurements of, sorted."""
    _, rows = _query(db, "SELECT DISTINCT space FROM measurements ORDER BY 1")
    return [r[0] for r in rows]


def baseline_rows(db: str | Path, space: str, device: str | None = None) -> list[dict[str, Any]]:
    """Every baseline model of a space (supernet ids ``baseline-*``), one dict per (supernet, arch): ``supernet_id``,
    ``arch_id``, ``method`` (the id without ``baseline-``), ``values`` and ``extra`` by metric name (``acc_<task>``
    for task metrics; the latest row of each, taken on ``device`` when given; device-free rows such as ``params``
    always count)."""
    import json

    sql = (f"SELECT supernet_id, arch_id, metric, task, value, extra FROM ({READINGS}) AS r WHERE space = ? AND "
           "starts_with(supernet_id, 'baseline-')")
    params: list[Any] = [space]
    if device is not None:
        sql += " AND device IN ('', ?)"
        params.append(device)
    _, rows = _query(db, sql + " ORDER BY supernet_id, arch_id, created_at", params)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for sid, aid, metric, task, value, extra in rows:
        entry = out.setdefault((sid, aid), {"supernet_id": sid, "arch_id": aid, "method": sid.removeprefix("baseline-"),
                                            "values": {}, "extra": {}})
        name = f"{metric}_{task}" if task else metric
        entry["values"][name] = float(value) if value is not None else None
        entry["extra"][name] = json.loads(extra) if extra else {}
    return list(out.values())


def surrogate_cards(db: str | Path, space: str) -> list[dict[str, Any]]:
    """The space's ``surrogate_cards`` rows (supernet, metric, model, held-out Kendall tau, R2, coverage, ...)."""
    return _records(db, "SELECT supernet_id, metric, model, transform, n_train, n_test, kendall_tau, spearman_rho, "
                        "r2, coverage_90, loso_kendall_tau FROM surrogate_cards WHERE space = ? "
                        "ORDER BY supernet_id, metric", [space])


def coverage(db: str | Path, space: str) -> list[dict[str, Any]]:
    """Per (supernet, metric, task, device, dtype): archs measured, rows, the distinct provenance strings
    (``software``) and the summed ``cost_s``; what the benchmark holds, for its datasheet."""
    return _records(
        db, "SELECT supernet_id, metric, task, device, dtype, count(DISTINCT arch_id) AS archs, count(*) AS n_rows, "
        "list(DISTINCT software ORDER BY software) FILTER (WHERE software IS NOT NULL) AS software, "
        f"sum(cost_s) AS cost_s FROM ({READINGS}) AS r WHERE space = ? GROUP BY ALL ORDER BY ALL", [space])


def latency_spread(db: str | Path, space: str, supernet: str,
                   metric: str = "latency_wall_ms") -> dict[str, float] | None:
    """Median and 90th percentile of the coefficient of variation of ``metric``'s rows over their timed repeats
    (``extra.cv``), and how many rows have one: how noisy the machine was while it measured."""
    _, rows = _query(
        db, "SELECT median(cv), quantile_cont(cv, 0.9), count(cv) FROM (SELECT TRY_CAST(json_extract(extra, '$.cv') "
        f"AS DOUBLE) AS cv FROM ({READINGS}) AS r WHERE space = ? AND supernet_id = ? AND metric = ?)",
        [space, supernet, metric])
    row = rows[0] if rows else None
    return None if not row or not row[2] else {"median": row[0], "p90": row[1], "rows": row[2]}


def reference_drift(db: str | Path, space: str) -> dict[str, float] | None:
    """How the machine's speed moved during the ``latency_rel`` rows: the full model's prefill time, re-timed beside
    every arch (``extra.reference_ms``): median, 5th and 95th percentile, coefficient of variation, rows."""
    _, rows = _query(
        db, "SELECT median(r), quantile_cont(r, 0.05), quantile_cont(r, 0.95), stddev_samp(r) / avg(r), count(r) "
        "FROM (SELECT TRY_CAST(json_extract(extra, '$.reference_ms') AS DOUBLE) AS r FROM measurements "
        "WHERE space = ? AND metric = 'latency_rel')", [space])
    row = rows[0] if rows else None
    return None if not row or not row[4] or row[4] < 2 else dict(zip(("median", "p5", "p95", "cv", "rows"), row))


def paired_values(db: str | Path, other: str | Path, space: str, metric: str,
                  field: str | None = None) -> list[tuple[str, float, float]]:
    """``(arch_id, value in db, value in other)`` of every row of ``metric`` the two DBs both hold under the same
    key (supernet, arch, task, device, dtype, batch, seq_len): two measurements of the same thing. A derived metric
    (the drift-cancelled ``latency_ms``) is each DB's own derivation, with its own reference median. With ``field``,
    the rows' numeric ``extra.<field>`` instead of their values (the pairs' ``cv`` of a ``latency_rel`` row), where
    both rows have it."""
    if field is not None and not field.isidentifier():  # it becomes part of the SQL text
        raise ValueError(f"field must be a plain JSON key, got {field!r}")
    value = "value" if field is None else f"TRY_CAST(json_extract(extra, '$.{field}') AS DOUBLE)"
    sql = (f"SELECT supernet_id, arch_id, task, device, dtype, batch, seq_len, {value} FROM ({READINGS}) AS r "
           f"WHERE space = ? AND metric = ? AND value IS NOT NULL AND {value} IS NOT NULL")
    mine = {tuple(r[:-1]): float(r[-1]) for r in _query(db, sql, [space, metric])[1]}
    theirs = {tuple(r[:-1]): float(r[-1]) for r in _query(other, sql, [space, metric])[1]}
    return sorted((key[1], value, theirs[key]) for key, value in mine.items() if key in theirs)
