"""Read queries the later stages ask of a benchmark DB (surrogates, optimizer comparisons, ``nasbench sql``): each
statement is here, parameters bound, on connections opened by :func:`nasbench.store.open_db`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import duckdb

from nasbench.errors import NasBenchError
from nasbench.store.connect import connect_read_only
from nasbench.store.schema import view_name

__all__ = ["supernets_with", "measured_rows", "archs_by_id", "space_yaml", "space_names", "wide_rows",
           "read_only_query", "READ_ONLY_STATEMENTS"]

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


def measured_rows(con: duckdb.DuckDBPyConnection, space: str, supernet_id: str, device: str | None,
                  shared: Sequence[str], exact: Sequence[str]) -> Any:
    """Set values of ``space`` (arch_id, supernet_id, metric, task, value, cost_s, created_at) as a DataFrame: the
    supernet's own, plus every supernet's rows of the ``shared`` metrics; never the ``exact`` ones; ``device`` keeps
    rows measured there (and rows without a device)."""
    return con.execute(
        "SELECT arch_id, supernet_id, metric, task, value, cost_s, created_at FROM measurements "
        "WHERE space = ? AND value IS NOT NULL AND (? IS NULL OR device = ? OR device = '') "
        f"AND (supernet_id = ? OR metric IN ({_marks(shared)})) AND metric NOT IN ({_marks(exact)}) "
        "AND arch_id IN (SELECT arch_id FROM architectures WHERE space = ?)",  # the space's archs only
        [space, device, device, supernet_id, *shared, *exact, space]).df()


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
        raise NasBenchError("--space", f"no measured rows in {db}", space) from exc
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
        raise NasBenchError("QUERY", "query failed", str(exc).splitlines()[0]) from None
    finally:
        con.close()
