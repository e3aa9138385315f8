"""Publish a benchmark DB where users already look: Parquet tables, a Croissant-style card, Syne Tune's layout.

``publish(db, out)`` writes, deterministically (the same DB gives the same bytes, so a rebuilt DB is just
republished)::

    out/
      croissant.json                 the card: schema (units, directions), provenance, licences, citation, sha256s
      README.md                      the same, for people and dataset hubs (YAML front matter, one config per table)
      spaces.parquet  supernets.parquet  architectures.parquet  baseline_archs.parquet  measurements.parquet
      surrogate_cards.parquet
      wide/<space>/<supernet>.parquet          the DB's wide view, one file per (space, supernet)
      syne_tune/<space>/                       Syne Tune blackboxes, one per (supernet, objective set), and the
                                               space's valid configs (:mod:`nasbench.store.publish_syne_tune`)

Weight-free values (latency, memory, FLOPs) are stored once per arch (supernet_id ``''`` in ``measurements``) and
appear in every supernet's wide file and blackbox. Every file speaks the readers' names
(:mod:`nasbench.store.readings`): ``measurements.parquet`` holds the stored rows with the wall clock as
``latency_wall_ms`` (``decode_wall_ms_per_token``) and, per ``latency_rel`` (``decode_rel``) row, the derived
drift-cancelled ``latency_ms`` (``decode_ms_per_token``; ``extra.reference_median_ms`` says by what it was scaled). The card and every blackbox's ``metadata.json`` name the
main supernet the DB records (``nasbench supernets``). Load a blackbox with
``syne_tune.blackbox_repository.blackbox_tabular.deserialize(out / "syne_tune" / space / supernet / "ppl")``.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any, Iterable

import duckdb

from nasbench.errors import NasBenchError, StoreError
from nasbench.metrics import METRIC_PREFIX, SHARED
from nasbench.space import SearchSpace, parse_space
from nasbench.store import SCHEMA_VERSION, connect_read_only, view_name
from nasbench.store.schema import PUBLISHED_LAYOUT
from nasbench.store.publish_card import build_card, readme_text
from nasbench.store.publish_syne_tune import _safe, write_blackboxes
from nasbench.store.queries import main_supernet
from nasbench.store.readings import READINGS
from nasbench.store.schema import WEIGHT_FREE_ID

__all__ = ["CARD_FILE", "publish", "arch_measurements"]

CARD_FILE = "croissant.json"

_TABLES = {  # table -> deterministic row order
    "spaces": "name, hash",
    "supernets": "id",
    "architectures": "space, arch_id",
    "baseline_archs": "space, supernet_id, arch_id",
    "measurements": "space, arch_id, supernet_id, metric, task, device, dtype, batch, seq_len",
    "surrogate_cards": "space, supernet_id, metric",
}
_DESCRIPTIONS = {
    "spaces": "Search spaces: the merged YAML each arch was sampled from and its hash.",
    "supernets": "Weight sources: the pretrained model, importance-sorted and fine-tuned supernets (strategy, KD, "
                 "PEFT, steps, tokens, wall time, config).",
    "architectures": "Every arch of the space's benchmark: one column per dimension, the canonical arch JSON, exact "
                     "params (join measurements on (space, arch_id)).",
    "baseline_archs": "The archs of the pruning baselines (supernet_id baseline-*): the space's dimensions where the "
                      "arch is one of the space's (in_space), else the arch their rows record.",
    "measurements": "One row per measured value with its unit and protocol (device, dtype, batch, seq_len, repeats, "
                    "cost_s, software versions, extra settings); supernet_id '' for weight-free values (latency, "
                    "memory, FLOPs: one row per arch, shared by every supernet). latency_wall_ms is the prefill wall "
                    "clock; latency_ms, the drift-cancelled prefill, is derived from each latency_rel row (its value "
                    "and spread times extra.reference_median_ms, the median wall clock of the full model re-timed "
                    "beside every arch); decode_ms_per_token from each decode_rel row the same way "
                    "(decode_wall_ms_per_token is the decode wall clock).",
    "surrogate_cards": "Fidelity cards of the surrogates fitted on this table (held-out Kendall tau, R2, coverage).",
}



def publish(db: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the published benchmark of ``db`` to ``out`` (replacing an earlier publication there); returns a
    summary ``{"out", "files", "bytes", "spaces", "archs", "measurements"}``."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / CARD_FILE).is_file())):
        raise NasBenchError("out", f"must be a new or empty directory or an earlier publication (with {CARD_FILE})",
                            str(out))
    con = connect_read_only(db)
    try:
        version = _check_schema(con, db)
        spaces = _spaces(con, db)
        if not spaces:
            raise StoreError(str(db), "has no architectures to publish", 0)
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        files: list[dict[str, Any]] = []
        for table, order in _TABLES.items():
            source = f"({READINGS}) AS r" if table == "measurements" else table
            files.append(_write_table(con, f"SELECT * FROM {source} ORDER BY {order}", out / f"{table}.parquet",
                                      table, _DESCRIPTIONS[table]))
        blackboxes, mains = [], {name: main_supernet(con, name) for name in spaces}
        for space in spaces.values():
            for supernet in _supernets(con, space.name):
                files.append(_write_wide(con, space.name, supernet, out))
            blackboxes += write_blackboxes(con, space, out / "syne_tune" / _safe(space.name), mains[space.name])
        card = build_card(con, db, spaces, files, blackboxes, mains, version)
    finally:
        con.close()
    # indented down to its records only, one record per line: the card lists every column of every file and every
    # supernet's config, so full indentation made up 45% of its 1.5 MB (any JSON viewer indents it again)
    (out / CARD_FILE).write_text(_lines(card) + "\n", encoding="utf-8")
    (out / "README.md").write_text(readme_text(card), encoding="utf-8")
    written = sorted(p for p in out.rglob("*") if p.is_file())
    return {"out": str(out), "files": len(written), "bytes": sum(p.stat().st_size for p in written),
            "spaces": sorted(spaces), "archs": next(f["rows"] for f in files if f["name"] == "architectures"),
            "measurements": next(f["rows"] for f in files if f["name"] == "measurements"),
            "blackboxes": [f"{b['path'].relative_to(out).as_posix()} ({b['archs']} archs)" for b in blackboxes]}


def arch_measurements(db: str | Path, space: str, arch: str, supernet: str) -> list[dict[str, Any]]:
    """The rows of ``measurements`` that describe ``arch`` on ``supernet``, read as :mod:`nasbench.store.readings`
    names and derives them (the drift-cancelled ``latency_ms``, the wall clock as ``latency_wall_ms``): its own rows
    and the arch's weight-free rows (latency, memory, FLOPs: stored once, under ``''``; a DB older than schema 3 keeps
    them under the supernet that measured them, used where ``supernet`` has none). Ordered by metric, task."""
    con = connect_read_only(db)
    try:
        rows = con.execute(
            "SELECT metric, task, value, unit, supernet_id, device, dtype, batch, seq_len, spread, n_repeats, "
            f"cost_s, software, extra FROM ({READINGS}) AS r WHERE space = ? AND arch_id = ? AND (supernet_id = ? OR "
            f"(metric IN ({', '.join('?' * len(SHARED))}) AND NOT starts_with(supernet_id, 'baseline-'))) "
            "ORDER BY metric, task, supernet_id <> ?, supernet_id <> ?, device, dtype, batch, seq_len, "
            "created_at DESC", [space, arch, supernet, *SHARED, supernet, WEIGHT_FREE_ID]).fetchall()
        columns = [d[0] for d in con.description]
    finally:
        con.close()
    records = [dict(zip(columns, r)) for r in rows]
    keep, seen = [], set()
    for r in records:
        key = (r["metric"], r["task"], r["device"], r["dtype"], r["batch"], r["seq_len"])
        if key in seen:
            continue
        seen.add(key)
        r["software"] = json.loads(r["software"]) if r["software"] else {}
        r["extra"] = json.loads(r["extra"]) if r["extra"] else {}
        keep.append(r)
    return keep


# ---------------------------------------------------------------------------------------------------- reading
def _check_schema(con: duckdb.DuckDBPyConnection, db: str | Path) -> int:
    """The DB's schema version: one whose published tables and wide views have the current layout (schemas 5 and 6
    recreated the views with the drift-cancelled prefill and decode latencies)."""
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except duckdb.Error:
        raise StoreError(str(db), "not a nasbench benchmark (no meta table)", str(db)) from None
    version = int(row[0]) if row else 0
    if not PUBLISHED_LAYOUT <= version <= SCHEMA_VERSION:
        raise StoreError(str(db), f"publish reads schema {PUBLISHED_LAYOUT}..{SCHEMA_VERSION}; migrate the DB first "
                                  f"(nasbench migrate {db})", version)
    return version


def _spaces(con: duckdb.DuckDBPyConnection, db: str | Path) -> dict[str, SearchSpace]:
    """The newest stored version of every space that has architectures, by name."""
    rows = con.execute(
        "SELECT name, yaml FROM spaces WHERE name IN (SELECT DISTINCT space FROM architectures) "
        "QUALIFY row_number() OVER (PARTITION BY name ORDER BY created_at DESC, hash) = 1 ORDER BY name").fetchall()
    return {name: parse_space(text, f"{db}:spaces/{name}") for name, text in rows}


def _supernets(con: duckdb.DuckDBPyConnection, space: str) -> list[str]:
    """Every supernet (and baseline) with rows of ``space``; the neutral id of weight-free rows is none."""
    return [r[0] for r in con.execute(
        "SELECT DISTINCT supernet_id FROM measurements WHERE space = ? AND supernet_id <> ? ORDER BY 1",
        [space, WEIGHT_FREE_ID]).fetchall()]


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
                        "hp_<dimension> and metric_<metric>[_<task>] columns (latest value of each; weight-free "
                        "metrics shared by every supernet).", [supernet])


def _lines(card: dict[str, Any], depth: int = 3) -> str:
    """The card as JSON, its containers broken into one item per line down to ``depth`` levels, compact below (a
    record set's fields, a supernet or a provenance row on one line each)."""
    def dump(v: Any, level: int) -> str:
        pad = "  " * level
        if level >= depth or not isinstance(v, (dict, list)) or not v:
            return json.dumps(v, ensure_ascii=False)
        if isinstance(v, dict):
            items = [f"{pad}  {json.dumps(k, ensure_ascii=False)}: {dump(x, level + 1)}" for k, x in v.items()]
            return "{\n" + ",\n".join(items) + f"\n{pad}}}"
        return "[\n" + ",\n".join(f"{pad}  {dump(x, level + 1)}" for x in v) + f"\n{pad}]"

    return dump(card, 0)
