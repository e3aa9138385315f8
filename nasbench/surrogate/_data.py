"""What a surrogate learns from: the measured rows of one (space, supernet), one column per metric.

Metric names are the wide view's column names without ``metric_``: ``ppl``, ``latency_ms`` (the drift-cancelled
latency; ``latency_wall_ms`` is the wall clock, :mod:`nasbench.store.readings`), ``memory_mb``, ``acc_arc_easy``,
``acc_norm_piqa``, ... plus ``acc_avg`` (the mean ``acc`` over the tasks this supernet was evaluated
on; an arch counts only with all of them) and ``acc_chance_avg`` (the same tasks' mean ``(acc - chance) / (1 -
chance)``). ``params`` and ``flops`` are exact functions of the arch and are computed
from the space, never learned.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from nasbench.errors import NasBenchError
from nasbench.metrics import CHANCE, EXACT, LOG_FIT, WEIGHT_FREE, is_maximized
from nasbench.space import SearchSpace
from nasbench.store.queries import archs_by_id, measured_rows, supernets_with

__all__ = ["EXACT_METRICS", "LOG_METRICS", "WEIGHT_FREE_METRICS", "MeasuredTable", "is_maximized", "read_table",
           "supernets_of"]

# From the metric registry: EXACT_METRICS are computed from the arch by the space's formulas (flops at seq_len 512, as
# the profiler stores them); WEIGHT_FREE_METRICS are measured on the dense extracted model, the same for every
# supernet, so a supernet without its own rows borrows them from the others; LOG_METRICS are modelled as log(value)
# (perplexities of untrained sub-networks run from 1e1 to 1e34).
EXACT_METRICS = EXACT
WEIGHT_FREE_METRICS = WEIGHT_FREE
LOG_METRICS = LOG_FIT


@dataclass
class MeasuredTable:
    """Measured values of one (space, supernet): rows are archs (index ``arch_id``), columns are metrics."""

    space: str
    supernet_id: str
    archs: dict[str, dict[str, Any]]
    """arch_id -> canonical arch."""
    values: pd.DataFrame
    costs: pd.DataFrame
    """Seconds each value took to measure (NaN where not recorded)."""
    avg_tasks: tuple[str, ...]
    """The tasks ``acc_avg`` averages."""
    spreads: pd.DataFrame | None = None
    """The interquartile range of each value over its timed repeats, in its units (NaN where none was stored: every
    untimed metric, and ``decode_wall_ms_per_token``); same index and columns as ``values``."""

    @property
    def metrics(self) -> list[str]:
        return list(self.values.columns)

    def column(self, metric: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(arch_ids, values, costs) of the archs that have ``metric``."""
        values = self.values[metric].dropna()
        return list(values.index), values.to_numpy(dtype=np.float64), \
            self.costs.loc[values.index, metric].to_numpy(dtype=np.float64)

    def data_hash(self, metric: str) -> str:
        """Hash of what a surrogate of ``metric`` is fitted on: the arch ids, values and costs, in arch_id order."""
        ids, values, costs = self.column(metric)
        order = np.argsort(ids)
        payload = json.dumps({"ids": [ids[i] for i in order], "values": values[order].tolist(),
                              "costs": np.nan_to_num(costs[order], nan=-1.0).tolist(),
                              "avg_tasks": list(self.avg_tasks) if metric in ("acc_avg", "acc_chance_avg") else []})
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def supernets_of(con: duckdb.DuckDBPyConnection, space: str) -> list[str]:
    """Supernets with weight-dependent measurements (ppl, accuracy) in ``space``, sorted."""
    return supernets_with(con, space, (*WEIGHT_FREE_METRICS, *EXACT_METRICS))


def read_table(con: duckdb.DuckDBPyConnection, space: SearchSpace, supernet: str,
               device: str | None = None) -> MeasuredTable:
    """The latest value of every (arch, metric, task) of ``supernet``; weight-free metrics fall back to other
    supernets' rows; ``device`` keeps only rows measured there."""
    rows = measured_rows(con, space.name, supernet, device, WEIGHT_FREE_METRICS, EXACT_METRICS)
    if rows.empty:
        raise NasBenchError("supernet", f"no measurements of space {space.name!r} for this supernet"
                                          + ("" if device is None else f" on device {device!r}"), supernet)
    rows["own"] = rows["supernet_id"] == supernet
    rows["name"] = np.where(rows["task"] == "", rows["metric"], rows["metric"] + "_" + rows["task"])
    # own rows first, then the newest: the one kept per (arch, metric)
    rows = rows.sort_values(["own", "created_at"], ascending=False).drop_duplicates(["arch_id", "name"])
    values = rows.pivot(index="arch_id", columns="name", values="value")
    costs = rows.pivot(index="arch_id", columns="name", values="cost_s").reindex_like(values)
    spreads = rows.pivot(index="arch_id", columns="name", values="spread").reindex_like(values).astype(np.float64)
    acc = rows[(rows["metric"] == "acc") & rows["own"]]
    avg_tasks = tuple(sorted(acc["task"].unique()))
    if avg_tasks:
        cols = [f"acc_{t}" for t in avg_tasks]
        complete = values[cols].notna().all(axis=1)
        values["acc_avg"] = values[cols].mean(axis=1).where(complete)
        costs["acc_avg"] = costs[cols].sum(axis=1, min_count=1).where(complete)
        if all(t in CHANCE for t in avg_tasks):  # the wide view's acc_chance_avg, over the same complete tasks
            above = pd.concat([(values[f"acc_{t}"] - CHANCE[t]) / (1.0 - CHANCE[t]) for t in avg_tasks], axis=1)
            values["acc_chance_avg"] = above.mean(axis=1).where(complete)
            costs["acc_chance_avg"] = costs["acc_avg"]
    ids = list(values.index)
    archs = archs_by_id(con, space.name, ids)
    missing = [i for i in ids if i not in archs]
    if missing:
        raise NasBenchError("measurements", "every measured arch_id needs its row in architectures", missing[0])
    spreads = spreads.reindex_like(values)  # the averages have no spread of their own
    return MeasuredTable(space.name, supernet, archs, values.sort_index(axis=1), costs.sort_index(axis=1),
                         avg_tasks, spreads.sort_index(axis=1))
