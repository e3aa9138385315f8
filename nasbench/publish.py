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

import hashlib
import json
import math
import re
import shutil
import warnings
from pathlib import Path
from typing import Any, Iterable

import duckdb
import numpy as np

from nasbench.cards import (SEED_CITATION, SEED_PAPER, base_model_info, data_license, metric_direction,
                            task_license)
from nasbench.errors import NasBenchError, StoreError
from nasbench.metrics import COST, WEIGHT_FREE, unit
from nasbench.space import DIMENSIONS, SearchSpace, parse_space
from nasbench.store import SCHEMA_VERSION, connect_read_only, view_name

__all__ = ["CARD_FILE", "publish", "arch_measurements"]

CARD_FILE = "croissant.json"
PROJECT_LICENSE = "Apache-2.0"
FIDELITY = "step"
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
_COLUMN_NOTES = {
    "arch_id": "first 16 hex digits of SHA-256 of the arch's canonical JSON (sorted keys)",
    "supernet_id": "the weights the value was measured on (supernets.id)",
    "params": "exact parameter count of the dense model (unit: params)",
    "value": "the measured value, in `unit`",
    "spread": "interquartile range over repeats, in `unit`",
    "cost_s": "seconds the measurement took (unit: s)",
    "task": "evaluation task of accuracy metrics ('' for others)",
    "software": "library versions (JSON)",
    "extra": "protocol settings and per-value details (JSON), e.g. tokens, limit_items, threads",
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
        card = _card(con, db, spaces, files, blackboxes)
    finally:
        con.close()
    (out / CARD_FILE).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "README.md").write_text(_readme(card), encoding="utf-8")
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
        name = _objective(metric, task)
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
    keep = [c for c, n in zip(columns, filled) if n or not c.startswith("metric_")]  # drop all-NULL metric columns
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
    objectives = [f"metric_{n}" for n in names] + [COST]
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
        "objectives_units": {o: unit(o[len("metric_"):]) for o in objectives},
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
def _card(con: duckdb.DuckDBPyConnection, db: str | Path, spaces: dict[str, SearchSpace],
          files: list[dict[str, Any]], blackboxes: list[dict[str, Any]]) -> dict[str, Any]:
    out = files[0]["path"].parent
    distribution, record_sets = [], []
    for f in files:
        rel = f["path"].relative_to(out).as_posix()
        distribution.append(_file_object(f["path"], rel, "application/x-parquet"))
        record_sets.append({
            "@type": "cr:RecordSet", "@id": f["name"], "name": f["name"], "description": f["description"],
            "cr:rows": f["rows"],
            "field": [_field(f["name"], rel, column, kind) for column, kind in f["columns"]]})
    for bb in blackboxes:
        for p in sorted(bb["path"].iterdir()):
            rel = p.relative_to(out).as_posix()
            kind = {".json": "application/json", ".parquet": "application/x-parquet",
                    ".npy": "application/x-npy"}[p.suffix]
            distribution.append(_file_object(p, rel, kind))

    metrics = con.execute("SELECT metric, task, min(unit) AS unit, count(*) FROM measurements "
                          "GROUP BY metric, task ORDER BY metric, task").fetchall()
    supernets = con.execute("SELECT id, space, base_model, strategy, kd, peft, data_hash, steps, tokens, "
                            "wall_time_s, checkpoint, config FROM supernets ORDER BY id").fetchall()
    tasks = sorted({t for _, t, _, _ in metrics if t})
    name = "nasbench-" + "+".join(spaces)
    card: dict[str, Any] = {
        "@context": _CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": name,
        "description": "A tabular LLM-compression NAS benchmark built with nasbench: sub-networks of "
                       + ", ".join(f"{base_model_info(s.model)[0] or s.model.source} (space {s.name}, "
                                   f"weights {s.model.source})" for s in spaces.values())
                       + " measured for perplexity, accuracy, latency, memory and FLOPs on the weights of several "
                         "supernets (pretrained, importance-sorted, fine-tuned). Two-stage NAS after arXiv "
                       + SEED_PAPER["arxiv"] + ".",
        "license": PROJECT_LICENSE,
        "citeAs": SEED_CITATION,
        "keywords": ["neural architecture search", "LLM compression", "benchmark", "pruning", "Syne Tune"],
        "version": f"schema-{SCHEMA_VERSION}",
        "isAccessibleForFree": True,
        "distribution": distribution,
        "recordSet": record_sets,
        "nasbench": {
            "metrics": [{"metric": m, "task": t, "column": f"metric_{_objective(m, t)}", "unit": u,
                         "direction": metric_direction(m), "rows": n} for m, t, u, n in metrics],
            "dimensions": {s.name: {d: {"kind": s.dimensions[d].kind, "values": list(s.dimensions[d].values),
                                        "reference": getattr(s.reference, d)} for d in DIMENSIONS}
                           for s in spaces.values()},
            "provenance": _provenance(con),
            "supernets": [_supernet_entry(row) for row in supernets],
            "base_models": [_base_model(s) for s in spaces.values()],
            "data_sources": _data_sources(spaces, tasks),
            "license_note": "The tables are nasbench's (" + PROJECT_LICENSE + "). They were measured with the data "
                            "sources listed here, which keep their own licences; fine-tuned supernets were trained on "
                            "non-commercial (CC BY-NC) instruction data where data_sources says so.",
            "syne_tune": [{"space": bb["space"], "path": bb["path"].relative_to(out).as_posix(),
                           "tasks": bb["tasks"], "objectives": bb["objectives"], "fidelity": FIDELITY,
                           "load": "from syne_tune.blackbox_repository.blackbox_tabular import deserialize; "
                                   f"deserialize('{bb['path'].relative_to(out).as_posix()}')"}
                          for bb in blackboxes],
            "protocol": {
                "perplexity": "WikiText-2 raw test tokenized once without special tokens; the first `tokens` "
                              "(measurements.extra) cut into windows of seq_len; every token of a window but its "
                              "first scored; ppl = exp(total NLL / scored tokens).",
                "accuracy": "lm-eval in-process on the sliced supernet with nasbench's local task YAMLs; "
                            "extra.limit_items = first M items per task.",
                "latency_ms": "prefill wall clock on the extracted dense model, median over repeats after warm-up "
                              "(spread = IQR); batch and seq_len per row.",
                "memory_mb": "peak RSS growth on CPU (max_memory_allocated on GPU) on the dense model.",
                "flops": "analytic, per token at seq_len: 2 x matmul weights touched + causal attention.",
                "cost_s": "seconds each measurement took: the simulated time of optimizer comparisons.",
            },
        },
    }
    return card


_CONTEXT = {
    "@language": "en", "@vocab": "https://schema.org/", "sc": "https://schema.org/",
    "cr": "http://mlcommons.org/croissant/", "dct": "http://purl.org/dc/terms/",
    "citeAs": "cr:citeAs", "column": "cr:column", "conformsTo": "dct:conformsTo", "data": {"@id": "cr:data",
                                                                                            "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"}, "extract": "cr:extract", "field": "cr:field",
    "fileObject": "cr:fileObject", "recordSet": "cr:recordSet", "source": "cr:source",
    "nasbench": "cr:nasbench",
}


def _file_object(path: Path, rel: str, kind: str) -> dict[str, Any]:
    return {"@type": "cr:FileObject", "@id": rel, "name": rel, "contentUrl": rel, "encodingFormat": kind,
            "contentSize": f"{path.stat().st_size} B", "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def _field(record: str, rel: str, column: str, kind: str) -> dict[str, Any]:
    data_type = ("sc:Integer" if kind.startswith(("int", "uint")) else "sc:Float" if kind.startswith(("double",
                 "float")) else "sc:DateTime" if kind.startswith("timestamp") else "sc:Boolean" if kind == "bool"
                 else "sc:Text")
    entry: dict[str, Any] = {"@type": "cr:Field", "@id": f"{record}/{column}", "name": column, "dataType": data_type,
                             "source": {"fileObject": {"@id": rel}, "extract": {"column": column}}}
    if column.startswith("metric_"):
        bare = column[len("metric_"):]
        entry["description"] = f"{bare}: {unit(bare)}, {metric_direction(bare)} (latest value per arch)"
    elif column.startswith("hp_"):
        entry["description"] = f"dimension {column[3:]} of the arch"
    elif column in DIMENSIONS:
        entry["description"] = f"dimension {column} of the arch (NULL when per-layer; see per_layer)"
    elif column in _COLUMN_NOTES:
        entry["description"] = _COLUMN_NOTES[column]
    return entry


def _provenance(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Per (supernet, metric, task, device, dtype, batch, seq_len): rows, software versions and the settings in
    ``extra`` that are the same on every row (tokens, limit_items, threads, timer, a recorded CPU, ...)."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for key in con.execute("SELECT supernet_id, metric, task, device, dtype, batch, seq_len, software, extra "
                           "FROM measurements ORDER BY ALL").fetchall():
        ident, software, extra = key[:7], key[7], key[8]
        g = groups.setdefault(ident, {"rows": 0, "software": set(), "settings": None})
        g["rows"] += 1
        if software:
            g["software"].add(software)
        settings = json.loads(extra) if extra else {}
        g["settings"] = settings if g["settings"] is None else {k: v for k, v in g["settings"].items()
                                                               if settings.get(k) == v}
    out = []
    for (supernet, metric, task, device, dtype, batch, seq_len), g in groups.items():
        out.append({"supernet_id": supernet, "metric": metric, "task": task, "device": device, "dtype": dtype,
                    "batch": batch, "seq_len": seq_len, "rows": g["rows"],
                    "software": [json.loads(s) for s in sorted(g["software"])], "settings": g["settings"] or {}})
    return out


def _supernet_entry(row: tuple[Any, ...]) -> dict[str, Any]:
    keys = ("id", "space", "base_model", "strategy", "kd", "peft", "data_hash", "steps", "tokens", "wall_time_s",
            "checkpoint", "config")
    entry = dict(zip(keys, row))
    config = json.loads(entry["config"]) if entry["config"] else {}
    entry["config"] = config
    digests = {k: v for k, v in _flatten(config) if "sha256" in k.lower() and isinstance(v, str)}
    entry["artifact_sha256"] = digests or None
    if not digests:
        entry["artifact_note"] = "no artifact sha256 recorded in the supernets table"
    if isinstance(entry["wall_time_s"], float):
        entry["wall_time_s"] = round(entry["wall_time_s"], 3)
    return entry


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [kv for k in sorted(value) for kv in _flatten(value[k], f"{prefix}{k}.")]
    return [(prefix.rstrip("."), value)]


def _base_model(space: SearchSpace) -> dict[str, Any]:
    hub_id, lic = base_model_info(space.model)
    return {"space": space.name, "source": space.model.source, "hub_id": hub_id, "license": lic}


def _data_sources(spaces: dict[str, SearchSpace], tasks: list[str]) -> list[dict[str, Any]]:
    roles = {"perplexity": "perplexity (every ppl value)", "calibration": "importance calibration (sorted supernets)",
             "finetune": "supernet fine-tuning (trained supernets)"}
    out, seen = [], set()
    for space in spaces.values():
        for key, role in roles.items():
            source = space.data.get(key)
            for i, path in enumerate(source.paths if source else ()):
                if (role, path) in seen:
                    continue
                seen.add((role, path))
                lic = data_license(path)
                out.append({"role": role, "path": path, "hf": source.hf[i] if i < len(source.hf) else None,
                            "dataset": lic.dataset, "license": lic.license, "non_commercial": lic.non_commercial,
                            "note": lic.note})
    for task in tasks:
        path, lic = task_license(task)
        out.append({"role": f"evaluation: {task}", "path": path, "hf": None, "dataset": lic.dataset,
                    "license": lic.license, "non_commercial": lic.non_commercial, "note": lic.note})
    return out


def _readme(card: dict[str, Any]) -> str:
    import yaml

    nb = card["nasbench"]
    front = {"license": card["license"].lower(), "pretty_name": card["name"],
             "tags": ["neural-architecture-search", "llm-compression", "benchmark", "tabular"],
             "configs": [{"config_name": rs["name"].replace("/", "--"),
                          "data_files": next(f["contentUrl"] for f in card["distribution"]
                                             if f["@id"] == rs["field"][0]["source"]["fileObject"]["@id"])}
                         for rs in card["recordSet"]]}
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "", f"# {card['name']}", "",
             card["description"], "", "Files: the Parquet tables below, `croissant.json` (schema, units, directions, "
             "provenance, licences, sha256 of every file) and Syne Tune blackboxes under `syne_tune/`.", "",
             "| table | rows | what |", "|---|---|---|"]
    lines += [f"| `{rs['name']}` | {rs['cr:rows']} | {rs['description']} |" for rs in card["recordSet"]]
    lines += ["", "## Metrics", "", "| column | unit | direction | rows |", "|---|---|---|---|"]
    lines += [f"| `{m['column']}` | {m['unit']} | {m['direction']} | {m['rows']} |" for m in nb["metrics"]]
    lines += ["", "## Load", "", "```python", "import pandas as pd, duckdb",
              'pd.read_parquet("measurements.parquet")',
              "duckdb.sql(\"SELECT * FROM 'architectures.parquet' JOIN 'measurements.parquet' "
              "USING (space, arch_id)\")",
              "from syne_tune.blackbox_repository.blackbox_tabular import deserialize"]
    lines += [f'deserialize("{bb["path"]}")  # one task per supernet' for bb in nb["syne_tune"]]
    lines += ["```", "", "## Data sources and licences", "", "| role | file | dataset | licence |",
              "|---|---|---|---|"]
    lines += [f"| {d['role']} | `{d['path']}` | {d['dataset']} | {d['license']}"
              f"{' (non-commercial)' if d['non_commercial'] else ''} |" for d in nb["data_sources"]]
    lines += ["", nb["license_note"], "", "## Citation", "", "```bibtex", card["citeAs"], "```", ""]
    return "\n".join(lines)


def _objective(metric: str, task: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", metric + (f"_{task}" if task else "")).lower()


def _safe(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z._-]+", "_", name)
