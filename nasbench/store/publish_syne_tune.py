"""The publication's Syne Tune blackboxes: one per (supernet, objective set), each without a missing value.

``syne_tune/<space>/`` holds::

    valid_configs.parquet            every valid arch of the space (its configspace columns + params, flops)
    <supernet>/<set>/                Syne Tune's blackbox-repository layout (blackbox_tabular.serialize):
      configspace.json  fidelityspace.json  hyperparameters.parquet  objectives_evaluations.npy
      fidelities_values.npy  metadata.json

An objective set is the archs its defining metrics were measured on, with the space's weight-free objectives
(``latency_ms``): ``ppl`` (every arch with perplexity: ppl, latency, memory, params, FLOPs, ...) and ``acc`` (the
archs with accuracy on every task of the supernet's protocol, with the same columns plus accuracies). Each blackbox
keeps the columns measured on all of its archs, so nothing is NaN, and ``metric_cost_s``, the seconds measuring that
row's objectives took (the simulator's elapsed time: the ``acc`` set's includes the accuracy pass, the ``ppl`` set's
does not). A set measured on fewer than :data:`MIN_ARCHS` archs is left out.

Syne Tune draws each dimension independently; most draws are not archs of the space (or, for a table, not measured).
``metadata.json`` says so under ``constraints``: a config is an arch of the space exactly when it is a row of
``valid_configs.parquet``, and the blackbox answers exactly its own rows (``BlackboxTabular.all_configurations()``).
``examples/syne_tune_moo.py`` applies that check.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from nasbench.cards import metric_direction
from nasbench.errors import NasBenchError
from nasbench.metrics import COST, DERIVED, METRIC_PREFIX, SHARED, metric_column, metric_name, unit
from nasbench.space import DIMENSIONS, SearchSpace
from nasbench.store.publish_card import FIDELITY
from nasbench.store.readings import READINGS
from nasbench.store.schema import WEIGHT_FREE_ID, is_baseline, view_name

__all__ = ["MIN_ARCHS", "VALID_CONFIGS", "write_blackboxes"]

MIN_ARCHS = 10
"""An objective set measured on fewer archs is not published as a blackbox (it stays in the tables)."""
VALID_CONFIGS = "valid_configs.parquet"
_MAX_ENUMERATED = 2_000_000
"""Spaces with more dimension combinations than this get no valid_configs file (the rules still hold)."""


def write_blackboxes(con: duckdb.DuckDBPyConnection, space: SearchSpace, root: Path,
                     main: str | None) -> list[dict[str, Any]]:
    """Every blackbox of ``space`` under ``root`` (``syne_tune/<space>``); one summary dict per blackbox."""
    root.mkdir(parents=True, exist_ok=True)
    valid = _write_valid_configs(space, root / VALID_CONFIGS)
    archs = {aid: json.loads(text) for aid, text in con.execute(
        "SELECT arch_id, arch FROM architectures WHERE space = ?", [space.name]).fetchall()}
    out = []
    for supernet in _supernets(con, space.name):
        frame, costs = _rows(con, space, supernet)
        tasks = sorted(c.removeprefix("metric_acc_") for c in frame.columns
                       if c.startswith("metric_acc_") and c not in ("metric_acc_avg", "metric_acc_chance_avg")
                       and not c.startswith("metric_acc_norm_"))
        # the space's weight-free objectives (latency_ms) belong to every set: an arch without them is left out
        shared = [metric_column(o.name) for o in space.objectives if o.name in SHARED and o.name != "params"
                  and metric_column(o.name) in frame.columns and frame[metric_column(o.name)].notna().any()]
        sets = {"ppl": ["metric_ppl"], "acc": [f"metric_acc_{t}" for t in tasks]}
        for name, defining in sets.items():
            if not defining or any(c not in frame.columns for c in defining):
                continue
            rows = frame[frame[defining + shared].notna().all(axis=1)].reset_index(drop=True)
            if len(rows) < MIN_ARCHS:
                continue
            path = root / _safe(supernet) / name
            out.append(_write_one(space, supernet, name, rows, costs, path, root, valid, supernet == main, archs))
    return out


def _supernets(con: duckdb.DuckDBPyConnection, space: str) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT DISTINCT supernet_id FROM measurements WHERE space = ? AND supernet_id <> ? AND metric IN "
        "('ppl', 'acc') ORDER BY 1", [space, WEIGHT_FREE_ID]).fetchall() if not is_baseline(r[0])]


def _rows(con: duckdb.DuckDBPyConnection, space: SearchSpace, supernet: str) -> tuple[Any, dict[str, Any]]:
    """The supernet's rows of the wide view (the space's archs only, by arch_id) and, per cost unit (a metric, or an
    accuracy task whose metrics one evaluation gives), arch_id -> seconds."""
    frame = con.execute(f'SELECT * FROM "{view_name(space.name)}" WHERE supernet_id = ? AND arch_id IN '
                        "(SELECT arch_id FROM architectures WHERE space = ?) ORDER BY arch_id",
                        [supernet, space.name]).df()
    costs: dict[str, Any] = {}
    # the metrics as readings name them; latency_ms is derived from the latency_rel row, one measurement whose
    # seconds count once: both go under the unit latency_rel
    for unit_name, aid, seconds in con.execute(
            "SELECT CASE WHEN task <> '' THEN 'task:' || task ELSE metric END, arch_id, "
            f"arg_max(cost_s, created_at) FROM ({READINGS}) AS r WHERE space = ? AND (supernet_id = ? OR "
            "supernet_id = ?) AND cost_s IS NOT NULL GROUP BY ALL", [space.name, supernet, WEIGHT_FREE_ID]).fetchall():
        costs.setdefault(DERIVED.get(unit_name, unit_name), {})[aid] = float(seconds)
    return frame, costs


def _write_one(space: SearchSpace, supernet: str, name: str, rows: Any, costs: dict[str, Any], path: Path,
               root: Path, valid: int | None, main: bool, archs: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd
    from syne_tune.blackbox_repository.serialize import serialize_configspace, serialize_metadata
    from syne_tune.config_space import randint

    config_space = space.to_syne_tune()
    metrics = [c for c in rows.columns if c.startswith(METRIC_PREFIX) and rows[c].notna().all()
               and (name == "acc" or not metric_name(c).startswith(("acc_", "mc2", "target_ppl")))]
    first = "metric_ppl" if name == "ppl" else "metric_acc_avg"
    metrics = [first, *sorted(m for m in metrics if m != first)] if first in metrics else sorted(metrics)
    measured_by = {DERIVED.get(metric_name(m), metric_name(m)) for m in metrics}  # latency_ms: latency_rel's row
    units = sorted({u for u in costs if (u.startswith("task:") and name == "acc" and f"metric_acc_{u[5:]}" in rows)
                    or (not u.startswith("task:") and u in measured_by)})
    ids = list(rows["arch_id"])
    elapsed = np.array([sum(costs[u].get(a, 0.0) for u in units) for a in ids])
    objectives = [*metrics, COST]
    values = np.column_stack([rows[metrics].to_numpy(dtype=np.float64), elapsed])
    evaluations = values[None, :, None, None, :]  # tasks x archs x seeds x fidelities x objectives
    hyper = pd.DataFrame([_config(space, archs[a], config_space) for a in ids], columns=list(config_space))
    path.mkdir(parents=True, exist_ok=True)
    serialize_configspace(path=str(path), configuration_space=config_space, fidelity_space={FIDELITY: randint(1, 1)})
    hyper.to_parquet(path / "hyperparameters.parquet", index=False, engine="pyarrow", compression="gzip")
    with open(path / "objectives_evaluations.npy", "wb") as f:
        np.save(f, evaluations, allow_pickle=False)
    with open(path / "fidelities_values.npy", "wb") as f:
        np.save(f, np.array([1], dtype=np.int64), allow_pickle=False)
    directions = {o: metric_direction(o) for o in objectives}
    measured = [u.removeprefix("task:") + (" (accuracy pass)" if u.startswith("task:") else "") for u in units]
    c = space.constraints
    serialize_metadata(path=path, metadata={
        "objectives_names": objectives, "task_names": [supernet],
        "metric_elapsed_time": COST, "metric_default": first,
        "objectives_directions": directions,
        "objectives_units": {o: unit(metric_name(o)) for o in objectives},
        "space": space.name, "space_hash": space.hash, "supernet_id": supernet, "main_supernet": main,
        "objective_set": name, "arch_ids": ids,
        "elapsed_time": f"{COST}: seconds measuring this row's objectives took ({', '.join(measured)}); "
                        "Syne Tune's elapsed_time_attr",
        "constraints": {
            "valid_configs": None if valid is None else path_to(root / VALID_CONFIGS, path),
            "valid_archs": valid,
            "rule": "Syne Tune draws each dimension independently, so most configs of configspace.json are not "
                    "archs of the space: a config is one exactly when its values are a row of valid_configs.parquet "
                    "(structural rules of the model family, min_params/max_params), and this table answers exactly "
                    "its own rows (BlackboxTabular.all_configurations()); propose only those, or wrap it with "
                    "add_surrogate and propose valid configs only",
            "min_params": c.min_params, "max_params": c.max_params},
        "weight_free": sorted(metric_column(m) for m in SHARED if metric_column(m) in objectives),
        "note": "Weight-free objectives (latency, memory, FLOPs) are measured once per arch on the dense model of "
                "its shape and shared by every supernet; params and flops are exact. metric_latency_ms is the "
                "drift-cancelled prefill latency (latency_rel x the full model's median wall clock); "
                "metric_latency_wall_ms is the wall clock, which keeps the machine's drift between archs.",
    })
    return {"space": space.name, "supernet_id": supernet, "set": name, "path": path, "archs": len(ids),
            "objectives": objectives, "directions": directions, "main": main}


def path_to(target: Path, start: Path) -> str:
    """``target`` relative to the directory ``start`` (``../../valid_configs.parquet``)."""
    import os

    return Path(os.path.relpath(target, start)).as_posix()


def _write_valid_configs(space: SearchSpace, path: Path) -> int | None:
    """Every valid arch of a scalar space as its configspace row, with params and flops; the count (None: a
    per-layer or too large space, no file)."""
    import pandas as pd

    if space.per_layer or space.cardinality() > _MAX_ENUMERATED:
        return None
    x = np.array(list(itertools.product(*(space.dimensions[d].candidates() for d in DIMENSIONS))), dtype=np.int64)
    x = x[space.valid_mask(x)]
    if space.model_family.kv_follows_heads:
        x[:, DIMENSIONS.index("n_kv_groups")] = x[:, DIMENSIONS.index("n_heads")]
    x = np.unique(x, axis=0)  # sorted rows: the same bytes on every run
    frame = pd.DataFrame(x, columns=list(DIMENSIONS))[list(space.to_syne_tune())]
    frame["params"] = space.params_matrix(x)
    frame["flops"] = space.flops_matrix(x)
    frame.to_parquet(path, index=False, engine="pyarrow", compression="zstd")
    return int(len(frame))


def _config(space: SearchSpace, arch: dict[str, Any], config_space: dict[str, Any]) -> list[int]:
    """An arch as a row of Syne Tune's config space (per-layer entries past n_layers repeat the last layer)."""
    row = []
    for key in config_space:
        if key in arch and not isinstance(arch[key], list):
            row.append(int(arch[key]))
            continue
        name, _, index = key.rpartition("_")
        if name in arch and isinstance(arch[name], list) and index.isdigit():
            values = arch[name]
            row.append(int(values[min(int(index), len(values) - 1)]))
        elif key in arch:
            row.append(int(arch[key][0]))
        else:
            raise NasBenchError(f"architectures/{space.name}", "arch lacks a dimension of the config space", key)
    return row


def _safe(name: str) -> str:
    """A file name for an id (``baseline-magnitude-2:4`` -> ``baseline-magnitude-2_4``)."""
    return re.sub(r"[^0-9A-Za-z._-]+", "_", name)
