"""Publish a benchmark DB where users already look: Parquet tables, a Croissant-style card, Syne Tune's layout.

``publish(db, out)`` writes, deterministically (the same DB gives the same bytes, so a rebuilt DB is just
republished)::

    out/
      croissant.json                 the card: schema (units, directions), provenance, licences, citation, sha256s
      README.md                      the same, for people and dataset hubs (YAML front matter)
      spaces.parquet  supernets.parquet  architectures.parquet  measurements.parquet  surrogate_cards.parquet
      wide/<space>/<supernet>.parquet          the DB's wide view, one file per (space, supernet)
      syne_tune/<space>/                       Syne Tune's blackbox-repository layout (blackbox_tabular.serialize):
        configspace.json  fidelityspace.json  hyperparameters.parquet  objectives_evaluations.npy
        fidelities_values.npy  metadata.json

The Syne Tune blackbox has one task per supernet, one row per arch of the space (``metadata.json`` lists their
``arch_ids`` in row order), one seed and one dummy fidelity (``step`` = 1), and objectives ``metric_<metric>[_<task>]``
plus ``metric_cost_s`` (the seconds that row's values took to measure: the simulator's elapsed time). Missing
values are NaN. Latency, memory and energy are measured on the dense model of a shape, so a supernet without its own
rows borrows them (as the surrogates do); ``params`` and ``flops`` are exact. Load it with
``syne_tune.blackbox_repository.blackbox_tabular.deserialize(out / "syne_tune" / space)``.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import warnings
from pathlib import Path
from typing import Any, Iterable

import duckdb
import numpy as np

from nasbench.cards import metric_direction
from nasbench.errors import NasBenchError, StoreError
from nasbench.metrics import COST, METRIC_PREFIX, WEIGHT_FREE, metric_column, metric_name, unit
from nasbench.space import SearchSpace, parse_space
from nasbench.store import SCHEMA_VERSION, connect_read_only, view_name
from nasbench.store.publish_card import FIDELITY, build_card, column_name, readme_text

__all__ = ["CARD_FILE", "publish", "arch_measurements"]

CARD_FILE = "croissant.json"
# Shape-only metrics (measured on the dense model of an arch) and exact ones, from the metric registry.
_BORROWED = (*WEIGHT_FREE, "flops")

_TABLES = {  # table -> deterministic row order
    "spaces": "name, hash",
    "supernets": "id",
    "architectures": "space, arch_id",
    "measurements": "space, arch_id, supernet_id, metric, task, device, dtype, batch, seq_len",
    "surrogate_cards": "space, supernet_id, metric",
}
_DESCRIPTIONS = {
    "spaces": "Search spaces: the merged YAML each arch was sampled from and its hash.",
    "supernets": "Weight sources: the pretrained model, importance-sorted and fine-tuned supernets (strategy, KD, "
                 "PEFT, steps, tokens, wall time, config).",
    "architectures": "Every arch of the benchmark: one column per dimension, the canonical arch JSON, exact params.",
    "measurements": "One row per measured value with its unit and protocol (device, dtype, batch, seq_len, repeats, "
                    "cost_s, software versions, extra settings).",
    "surrogate_cards": "Fidelity cards of the surrogates fitted on this table (held-out Kendall tau, R2, coverage).",
}



def publish(db: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the published benchmark of ``db`` to ``out`` (replacing an earlier publication there); returns a
    summary ``{"out", "files", "bytes", "spaces", "archs", "measurements"}``."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / CARD_FILE).is_file())):
        raise NasBenchError("--out", f"must be a new or empty directory or an earlier publication (with {CARD_FILE})",
                            str(out))
    con = connect_read_only(db)
    try:
        _check_schema(con, db)
        spaces = _spaces(con, db)
        if not spaces:
            raise StoreError(str(db), "has no architectures to publish", 0)
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        files: list[dict[str, Any]] = []
        for table, order in _TABLES.items():
            files.append(_write_table(con, f"SELECT * FROM {table} ORDER BY {order}", out / f"{table}.parquet",
                                      table, _DESCRIPTIONS[table]))
        blackboxes = []
        for space in spaces.values():
            for supernet in _supernets(con, space.name):
                files.append(_write_wide(con, space.name, supernet, out))
            blackboxes.append(_write_blackbox(con, space, out / "syne_tune" / _safe(space.name)))
        card = build_card(con, db, spaces, files, blackboxes)
    finally:
        con.close()
    (out / CARD_FILE).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "README.md").write_text(readme_text(card), encoding="utf-8")
    written = sorted(p for p in out.rglob("*") if p.is_file())
    return {"out": str(out), "files": len(written), "bytes": sum(p.stat().st_size for p in written),
            "spaces": sorted(spaces), "archs": sum(b["archs"] for b in blackboxes),
            "measurements": next(f["rows"] for f in files if f["name"] == "measurements")}


def arch_measurements(db: str | Path, space: str, arch: str, supernet_id: str) -> list[dict[str, Any]]:
    """The rows of ``measurements`` that describe ``arch`` on ``supernet_id``: its own rows, plus latency, memory,
    energy and flops of the same shape measured on another supernet where it has none. Ordered by metric, task."""
    con = connect_read_only(db)
    try:
        _check_schema(con, db)
        rows = con.execute(
            "SELECT metric, task, value, unit, supernet_id, device, dtype, batch, seq_len, spread, n_repeats, "
            "cost_s, software, extra FROM measurements WHERE space = ? AND arch_id = ? AND (supernet_id = ? OR "
            f"metric IN ({', '.join('?' * len(_BORROWED))})) "
            "ORDER BY metric, task, supernet_id <> ?, device, dtype, batch, seq_len, created_at DESC",
            [space, arch, supernet_id, *_BORROWED, supernet_id]).fetchall()
        columns = [d[0] for d in con.description]
    finally:
        con.close()
    records = [dict(zip(columns, r)) for r in rows]
    own = {(r["metric"], r["task"]) for r in records if r["supernet_id"] == supernet_id}
    keep, seen = [], set()
    for r in records:
        key = (r["metric"], r["task"], r["device"], r["dtype"], r["batch"], r["seq_len"])
        if (r["supernet_id"] != supernet_id and (r["metric"], r["task"]) in own) or key in seen:
            continue
        seen.add(key)
        r["software"] = json.loads(r["software"]) if r["software"] else {}
        r["extra"] = json.loads(r["extra"]) if r["extra"] else {}
        keep.append(r)
    return keep


# ---------------------------------------------------------------------------------------------------- reading
def _check_schema(con: duckdb.DuckDBPyConnection, db: str | Path) -> None:
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except duckdb.Error:
        raise StoreError(str(db), "not a nasbench benchmark (no meta table)", str(db)) from None
    version = int(row[0]) if row else 0
    if version != SCHEMA_VERSION:
        raise StoreError(str(db), f"publish reads schema {SCHEMA_VERSION}; open the DB with this nasbench once to "
                                  "migrate it", version)


def _spaces(con: duckdb.DuckDBPyConnection, db: str | Path) -> dict[str, SearchSpace]:
    """The newest stored version of every space that has architectures, by name."""
    rows = con.execute(
        "SELECT name, yaml FROM spaces WHERE name IN (SELECT DISTINCT space FROM architectures) "
        "QUALIFY row_number() OVER (PARTITION BY name ORDER BY created_at DESC, hash) = 1 ORDER BY name").fetchall()
    return {name: parse_space(text, f"{db}:spaces/{name}") for name, text in rows}


def _supernets(con: duckdb.DuckDBPyConnection, space: str) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT DISTINCT supernet_id FROM measurements WHERE space = ? ORDER BY 1", [space]).fetchall()]


def _values(con: duckdb.DuckDBPyConnection, space: str, supernet: str) -> tuple[dict[str, dict[str, float]],
                                                                                dict[str, float]]:
    """arch_id -> {objective: value} and arch_id -> summed cost_s, for one supernet (latest value per objective;
    own rows before borrowed shape metrics)."""
    rows = con.execute(
        "SELECT arch_id, metric, task, value, cost_s FROM measurements WHERE space = ? AND (supernet_id = ? OR "
        f"metric IN ({', '.join('?' * len(_BORROWED))})) "
        "ORDER BY arch_id, metric, task, supernet_id <> ?, created_at DESC, device, dtype, batch, seq_len, supernet_id",
        [space, supernet, *_BORROWED, supernet]).fetchall()
    values: dict[str, dict[str, float]] = {}
    costs: dict[str, float] = {}
    for aid, metric, task, value, cost in rows:
        name = column_name(metric, task)
        mine = values.setdefault(aid, {})
        if name in mine:
            continue
        mine[name] = math.nan if value is None else float(value)
        if cost is not None:
            costs[aid] = costs.get(aid, 0.0) + float(cost)
    return values, costs


# ---------------------------------------------------------------------------------------------------- writing
def _write_table(con: duckdb.DuckDBPyConnection, sql: str, path: Path, name: str, description: str,
                 params: Iterable[Any] = ()) -> dict[str, Any]:
    import pyarrow.parquet as pq

    result = con.execute(sql, list(params))
    with warnings.catch_warnings():  # DuckDB 2 notes an extra copy of the rows: these tables are small
        warnings.simplefilter("ignore", UserWarning)
        table = (result.to_arrow_table if hasattr(result, "to_arrow_table") else result.fetch_arrow_table)()
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
    return {"name": name, "path": path, "rows": table.num_rows, "description": description,
            "columns": [(f.name, str(f.type)) for f in table.schema]}


def _write_wide(con: duckdb.DuckDBPyConnection, space: str, supernet: str, out: Path) -> dict[str, Any]:
    view = view_name(space)
    exists = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [view]).fetchone()[0]
    if not exists:
        raise StoreError(view, "the DB has no wide view of this space; open it once with nasbench to create it",
                         space)
    columns = [r[0] for r in con.execute(f'DESCRIBE "{view}"').fetchall()]
    filled = con.execute("SELECT " + ", ".join(f'count("{c}")' for c in columns) + f' FROM "{view}" '
                         "WHERE supernet_id = ?", [supernet]).fetchone()
    keep = [c for c, n in zip(columns, filled) if n or not c.startswith(METRIC_PREFIX)]  # drop all-NULL metric columns
    sql = "SELECT " + ", ".join(f'"{c}"' for c in keep) + f' FROM "{view}" WHERE supernet_id = ? ORDER BY arch_id'
    return _write_table(con, sql, out / "wide" / _safe(space) / f"{_safe(supernet)}.parquet",
                        f"wide/{space}/{supernet}",
                        f"The wide view of space {space} on supernet {supernet}: one row per measured arch, "
                        "hp_<dimension> and metric_<metric>[_<task>] columns (latest value of each).", [supernet])


def _write_blackbox(con: duckdb.DuckDBPyConnection, space: SearchSpace, path: Path) -> dict[str, Any]:
    import pandas as pd
    from syne_tune.blackbox_repository.serialize import serialize_configspace, serialize_metadata
    from syne_tune.config_space import randint

    config_space = space.to_syne_tune()
    archs = [(aid, json.loads(text)) for aid, text in con.execute(
        "SELECT arch_id, arch FROM architectures WHERE space = ? ORDER BY arch_id", [space.name]).fetchall()]
    hyper = pd.DataFrame([_config(space, arch, config_space) for _, arch in archs], columns=list(config_space))
    params = dict(con.execute("SELECT arch_id, params FROM architectures WHERE space = ?", [space.name]).fetchall())
    supernets = _supernets(con, space.name)
    per_supernet = {s: _values(con, space.name, s) for s in supernets}
    names = sorted({n for values, _ in per_supernet.values() for row in values.values() for n in row} | {"params"})
    objectives = [metric_column(n) for n in names] + [COST]
    evaluations = np.full((len(supernets), len(archs), 1, 1, len(objectives)), np.nan, dtype=np.float64)
    for t, supernet in enumerate(supernets):
        values, costs = per_supernet[supernet]
        for i, (aid, _) in enumerate(archs):
            row = {**values.get(aid, {}), "params": float(params[aid])}
            evaluations[t, i, 0, 0, :-1] = [row.get(n, math.nan) for n in names]
            evaluations[t, i, 0, 0, -1] = costs.get(aid, math.nan)
    path.mkdir(parents=True, exist_ok=True)
    serialize_configspace(path=str(path), configuration_space=config_space,
                          fidelity_space={FIDELITY: randint(1, 1)})
    hyper.to_parquet(path / "hyperparameters.parquet", index=False, engine="pyarrow", compression="gzip")
    with open(path / "objectives_evaluations.npy", "wb") as f:
        np.save(f, evaluations, allow_pickle=False)
    with open(path / "fidelities_values.npy", "wb") as f:
        np.save(f, np.array([1], dtype=np.int64), allow_pickle=False)
    directions = {o: metric_direction(o) for o in objectives}
    serialize_metadata(path=path, metadata={
        "objectives_names": objectives, "task_names": supernets,
        "metric_elapsed_time": COST, "metric_default": "metric_ppl" if "ppl" in names else objectives[0],
        "objectives_directions": directions,
        "objectives_units": {o: unit(metric_name(o)) for o in objectives},
        "space": space.name, "space_hash": space.hash, "arch_ids": [aid for aid, _ in archs],
        "note": "NaN: not measured. Shape metrics (latency, memory, energy, flops) are borrowed from another "
                "supernet where a supernet has none; metric_cost_s sums the seconds of that row's values.",
    })
    return {"space": space.name, "path": path, "archs": len(archs), "tasks": supernets, "objectives": objectives,
            "directions": directions}


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


# ------------------------------------------------------------------------------------------------------- card
def _safe(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z._-]+", "_", name)
