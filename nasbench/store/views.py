"""The wide view of a space: one row per (arch, supernet), ``hp_<dimension>`` and ``metric_<metric>[_<task>]``."""

from __future__ import annotations

import duckdb

from nasbench.metrics import CHANCE, SHARED
from nasbench.space import DIMENSIONS
from nasbench.store.readings import READINGS
from nasbench.store.schema import WEIGHT_FREE_ID, _column, _ident, _literal, view_name

__all__ = ["refresh_view"]


def refresh_view(con: duckdb.DuckDBPyConnection, space: str) -> None:
    """(Re)create ``wide_<space>``: one row per (arch, supernet that measured it), ``hp_<dimension>`` and
    ``metric_<name>`` columns.

    The values are the readings of :mod:`nasbench.store.readings`, not the stored rows: ``metric_latency_ms`` is the
    drift-cancelled latency, ``metric_latency_wall_ms`` the wall clock (a pruning baseline that measured only wall
    clock has its own ``metric_latency_wall_ms``, and a ``metric_latency_ms`` only where its arch is one of the
    space's, from the dense model of that shape). The rows are the space's archs (table ``architectures``) and the
    baselines' archs of the space (``baseline_archs``). ``metric_params`` is the exact analytic count; every other
    metric column holds the latest value of that (metric, task) across devices and settings (query ``measurements``
    to tell those apart). The weight-free metrics (latency, memory, FLOPs: :data:`nasbench.metrics.SHARED`), stored
    once per arch, fill every supernet's row (a baseline's own rows first); an arch no supernet measured has one row
    with supernet_id NULL.
    Where the space has accuracy rows, ``metric_acc_avg`` and ``metric_acc_chance_avg`` average the latest ``acc`` of
    every task the (arch, supernet) has, the second as ``(acc - chance) / (1 - chance)``
    (:data:`nasbench.metrics.CHANCE`), and ``acc_tasks`` names those tasks (compare averages over the same tasks
    only). The averages sum in task order: a parallel ``avg`` adds in any order, and the published parquet files must
    be the same bytes.
    """
    s = _literal(space)
    pairs = con.execute(
        f"SELECT DISTINCT metric, task FROM ({READINGS}) AS r WHERE space = ? AND metric <> 'params' "
        "ORDER BY metric, task", [space]).fetchall()
    columns, shared_columns = [], []
    for metric, task in pairs:
        name = _ident(_column(metric, task))

        def latest(t: str) -> str:
            return f"arg_max({t}.value, {t}.created_at) FILTER (WHERE {t}.metric = {_literal(metric)} AND {t}.task = " \
                   f"{_literal(task)})"

        if metric in SHARED:
            shared_columns.append(f"{latest('w')} AS {name}")
            columns.append(f"coalesce({latest('m')}, any_value(w.{name})) AS {name}")
        else:
            columns.append(f"{latest('m')} AS {name}")
    metric_columns = "".join(f",\n    {c}" for c in columns)
    dims = ", ".join(DIMENSIONS)
    hp = ",\n    ".join(f"a.{d} AS hp_{d}" for d in DIMENSIONS)
    shared = ", ".join(["arch_id", *shared_columns])
    averages, join = "", ""
    if any(metric == "acc" for metric, _ in pairs):
        chance = ", ".join(f"({_literal(task)}, {value!r})" for task, value in sorted(CHANCE.items()))
        averages = (f",\n    any_value(v.acc_avg) AS {_ident(_column('acc_avg', ''))},"
                    f"\n    any_value(v.acc_chance_avg) AS {_ident(_column('acc_chance_avg', ''))},"
                    "\n    any_value(v.acc_tasks) AS acc_tasks")
        join = f"""
LEFT JOIN (
    SELECT arch_id, supernet_id, list_avg(list(value ORDER BY task)) AS acc_avg,
        CASE WHEN count(c.chance) = count(*)
             THEN list_avg(list((value - c.chance) / (1 - c.chance) ORDER BY task)) END AS acc_chance_avg,
        string_agg(task, ',' ORDER BY task) AS acc_tasks
    FROM (SELECT arch_id, supernet_id, task, arg_max(value, created_at) AS value FROM readings
          WHERE space = {s} AND metric = 'acc' GROUP BY ALL) AS latest
    LEFT JOIN (VALUES {chance}) AS c(task, chance) USING (task)
    GROUP BY ALL
) AS v ON v.arch_id = a.arch_id AND v.supernet_id = p.supernet_id"""
    shared_join = ""
    if shared_columns:
        shared_join = f"""
LEFT JOIN (SELECT {shared} FROM readings w WHERE w.space = {s} AND w.supernet_id = {_literal(WEIGHT_FREE_ID)}
           GROUP BY arch_id) AS w ON w.arch_id = a.arch_id"""
    sql = f"""
CREATE OR REPLACE VIEW {_ident(view_name(space))} AS
WITH readings AS (
{READINGS}
), a AS (
    SELECT arch_id, {dims}, per_layer, params FROM architectures WHERE space = {s}
    UNION ALL
    SELECT arch_id, {dims}, per_layer, params FROM baseline_archs WHERE space = {s} AND in_space
        AND arch_id NOT IN (SELECT arch_id FROM architectures WHERE space = {s})
    QUALIFY row_number() OVER (PARTITION BY arch_id ORDER BY supernet_id) = 1
), p AS (
    SELECT DISTINCT arch_id, supernet_id FROM measurements
    WHERE space = {s} AND supernet_id <> {_literal(WEIGHT_FREE_ID)}
)
SELECT {s} AS space, a.arch_id, p.supernet_id,
    {hp},
    a.per_layer AS hp_per_layer,
    a.params AS metric_params{metric_columns}{averages}
FROM a LEFT JOIN p ON p.arch_id = a.arch_id
LEFT JOIN readings m ON m.space = {s} AND m.arch_id = a.arch_id AND m.supernet_id = p.supernet_id{shared_join}{join}
GROUP BY ALL
"""
    con.execute(sql)
