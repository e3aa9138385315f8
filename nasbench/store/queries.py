"""Read queries the later stages ask of a benchmark DB (surrogates, optimizer comparisons, ``nasbench sql``): each
statement is here, parameters bound, on connections opened by :func:`nasbench.store.open_db`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import duckdb

from nasbench.errors import NasBenchError
from nasbench.metrics import EXACT, WEIGHT_FREE
from nasbench.store.connect import connect_read_only
from nasbench.store.readings import READINGS
from nasbench.store.schema import MAIN_SUPERNET_KEY, WEIGHT_FREE_ID, is_baseline, view_name

__all__ = ["supernets_with", "measured_supernets", "main_supernet", "default_supernet", "measured_rows",
           "archs_by_id", "space_yaml", "space_names", "wide_rows", "read_only_query", "duckdb_message",
           "supernet_summary", "READ_ONLY_STATEMENTS"]

READ_ONLY_STATEMENTS = {"SELECT", "EXPLAIN", "PRAGMA"}


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


def supernets_with(con: duckdb.DuckDBPyConnection, space: str, skip: Sequence[str]) -> list[str]:
    """Supernets with measurements of ``space``'s archs other than the metrics in ``skip``, sorted (a model outside
    the space, such as a SliceGPT baseline, has rows but no arch of the space: it is not a supernet to learn)."""
    rows = con.execute(f"SELECT DISTINCT supernet_id FROM measurements WHERE space = ? AND metric NOT IN "
                       f"({_marks(skip)}) AND arch_id IN (SELECT arch_id FROM architectures WHERE space = ?) "
                       f"ORDER BY 1", [space, *skip, space]).fetchall()
    return [r[0] for r in rows]


def measured_supernets(con: duckdb.DuckDBPyConnection, space: str) -> list[str]:
    """The supernets of ``space`` with perplexity or accuracy rows (weight-dependent ones) on its archs, sorted;
    baselines included where they measured archs of the space."""
    return supernets_with(con, space, (*WEIGHT_FREE, *EXACT))


def main_supernet(con: duckdb.DuckDBPyConnection, space: str) -> str | None:
    """The main supernet ``meta`` records for ``space`` (None: none recorded, or a DB older than schema 3)."""
    try:
        row = con.execute("SELECT value FROM meta WHERE key = ?", [MAIN_SUPERNET_KEY + space]).fetchone()
    except duckdb.Error:
        return None
    return None if row is None else row[0]


def default_supernet(con: duckdb.DuckDBPyConnection, db: str | Path, space: str, supernet: str | None) -> str:
    """``supernet`` checked against the supernets measured in ``db`` for ``space``; None -> the main supernet the DB
    records, else the only one. An unknown id, or a choice left open, names the ids that exist."""
    available = measured_supernets(con, space)
    if not available:
        raise NasBenchError(str(db), f"holds no perplexity or accuracy measurements of space {space!r}", space)
    if supernet is None:
        supernet = main_supernet(con, space)
        if supernet is None and len(available) == 1:
            supernet = available[0]
        if supernet is None:
            raise NasBenchError("supernet", f"{db} holds several supernets for {space} and records no main one; "
                                            f"choose one of {', '.join(available)} (or record the main one: "
                                            f"nasbench supernets --db {db} --set-main ID)", None, show_got=False)
    if supernet not in available:
        raise NasBenchError("supernet", f"must be one of {', '.join(available)} (supernets measured in {db} for "
                                        f"{space})", supernet)
    return supernet


def measured_rows(con: duckdb.DuckDBPyConnection, space: str, supernet: str, device: str | None,
                  shared: Sequence[str], exact: Sequence[str]) -> Any:
    """Set values of ``space`` (arch_id, supernet_id, metric, task, value, spread, cost_s, created_at) as a
    DataFrame, read as :mod:`nasbench.store.readings` names and derives them (the drift-cancelled ``latency_ms``, the
    wall clock as ``latency_wall_ms``): the supernet's own, plus the weight-free rows of the ``shared`` metrics
    (stored under the neutral id; a DB of schema 2 or older keeps them under the supernet that measured them, so any
    supernet's but a baseline's count); never the ``exact`` ones; ``device`` keeps rows measured there (and rows
    without a device)."""
    return con.execute(
        f"SELECT arch_id, supernet_id, metric, task, value, spread, cost_s, created_at FROM ({READINGS}) AS r "
        "WHERE space = ? AND value IS NOT NULL AND (? IS NULL OR device = ? OR device = '') "
        f"AND (supernet_id = ? OR (metric IN ({_marks(shared)}) AND NOT starts_with(supernet_id, 'baseline-'))) "
        f"AND metric NOT IN ({_marks(exact)}) "
        "AND arch_id IN (SELECT arch_id FROM architectures WHERE space = ?)",  # the space's archs only
        [space, device, device, supernet, *shared, *exact, space]).df()


def archs_by_id(con: duckdb.DuckDBPyConnection, space: str, ids: Sequence[str]) -> dict[str, Any]:
    """arch_id -> stored canonical arch, for those of ``ids`` stored in ``space``."""
    return {r[0]: json.loads(r[1]) for r in con.execute(
        "SELECT arch_id, arch FROM architectures WHERE space = ? AND arch_id IN (SELECT unnest(?))",
        [space, list(ids)]).fetchall()}


def space_yaml(con: duckdb.DuckDBPyConnection, name: str) -> str | None:
    """The newest recorded YAML of the space ``name`` (None when the DB has none)."""
    row = con.execute("SELECT yaml FROM spaces WHERE name = ? ORDER BY created_at DESC LIMIT 1", [name]).fetchone()
    return None if row is None else row[0]


def space_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute("SELECT DISTINCT name FROM spaces ORDER BY 1").fetchall()]


def wide_rows(db: str | Path, space: str) -> Any:
    """Every row of ``wide_<space>`` (read-only) ordered by arch_id and supernet_id; an error when the DB has no view
    of the space."""
    con = connect_read_only(db)
    try:
        return con.execute(f'SELECT * FROM "{view_name(space)}" ORDER BY arch_id, supernet_id').df()
    except Exception as exc:  # duckdb's catalog error for a space without a view
        raise NasBenchError("space", f"no measured rows in {db}", space) from exc
    finally:
        con.close()


def read_only_query(db: str | Path, query: str) -> Any:
    """``nasbench sql``: exactly one SELECT, EXPLAIN or PRAGMA statement on a read-only connection; a DataFrame."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise NasBenchError("QUERY", "not valid SQL", str(exc).splitlines()[0]) from None
    if not statements:
        raise NasBenchError("QUERY", "is empty: give one SELECT, EXPLAIN or PRAGMA statement", query)
    for statement in statements:
        kind = statement.type.name
        if kind not in READ_ONLY_STATEMENTS:
            raise NasBenchError("QUERY", "nasbench sql is read-only: only SELECT, EXPLAIN and PRAGMA statements run",
                                kind)
    if len(statements) > 1:
        raise NasBenchError("QUERY", "give exactly one statement", len(statements))
    con = connect_read_only(db)
    try:
        return con.execute(query).df()
    except duckdb.Error as exc:
        # DuckDB's whole message (its hints included) is the rule: the `got` excerpt would cut the hints off
        raise NasBenchError("QUERY", f"query failed: {duckdb_message(exc)}", None, show_got=False) from None
    finally:
        con.close()


#: Lines of a DuckDB error that help fix the query (kept in the one-line error); the rest (``LINE 1: ...`` and its
#: caret) points into the query the user just typed.
_HINTS = ("Candidate bindings", "Did you mean", "Candidate tables", "Candidate functions", "HINT")


def duckdb_message(exc: Exception) -> str:
    """DuckDB's error as one line: its first line and its hint lines (``Candidate bindings: ...``, ``Did you mean
    ...``), joined by ``; ``."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    hints = [line for line in lines[1:] if line.startswith(_HINTS)]
    return "; ".join([lines[0], *hints])


def supernet_summary(db: str | Path, space: str | None = None) -> Any:
    """One row per supernet of ``db`` (of ``space`` when given) with perplexity or accuracy rows: space, id, kind
    (``supernet`` or ``baseline``), strategy, steps, tokens, archs with ppl, archs with accuracy, and ``main`` (the
    main supernet ``meta`` records); a DataFrame, main first, then supernets, then baselines, by id."""
    con = connect_read_only(db)
    try:
        frame = con.execute(
            "SELECT m.space, m.supernet_id AS id, any_value(s.strategy) AS strategy, any_value(s.steps) AS steps, "
            "any_value(s.tokens) AS tokens, count(DISTINCT m.arch_id) FILTER (WHERE m.metric = 'ppl') AS ppl_archs, "
            "count(DISTINCT m.arch_id) FILTER (WHERE m.metric = 'acc') AS acc_archs FROM measurements m "
            "LEFT JOIN supernets s ON s.id = m.supernet_id WHERE m.supernet_id <> ? AND (? IS NULL OR m.space = ?) "
            "AND m.metric IN ('ppl', 'acc') GROUP BY ALL ORDER BY m.space, id", [WEIGHT_FREE_ID, space, space]).df()
        frame["main"] = [main_supernet(con, s) == i for s, i in zip(frame["space"], frame["id"])]
    finally:
        con.close()
    frame.insert(2, "kind", ["baseline" if is_baseline(i) else "supernet" for i in frame["id"]])
    return frame.sort_values(["space", "main", "kind", "id"], ascending=[True, False, False, True]).reset_index(
        drop=True)
