"""Opening a benchmark DB: the one way in, with one-line errors for every kind of wrong file, and read-only
connections that cannot touch any other file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from nasbench.errors import StoreError
from nasbench.store.schema import SCHEMA_VERSION

__all__ = ["SAFE_CONFIG", "open_db", "connect_read_only"]

_DUCKDB_MAGIC = b"DUCK"
_SQLITE_MAGIC = b"SQLite format 3\x00"
#: Settings of every read-only connection: DuckDB may read the DB file and nothing else on the machine (no COPY TO,
#: read_csv/read_text/glob, ATTACH of other files, IMPORT/EXPORT DATABASE, extension installs), and SQL cannot turn
#: them back on (``lock_configuration``).
SAFE_CONFIG: dict[str, Any] = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
    "allow_persistent_secrets": False,
    "lock_configuration": True,
}


def open_db(path: str | Path, *, read_only: bool = True, create: bool = False) -> duckdb.DuckDBPyConnection:
    """The one way the project opens a benchmark DB: the file must be a nasbench DuckDB file of a known schema.

    Every problem is a :class:`StoreError` naming it: a missing, zero-byte, SQLite, non-DuckDB, corrupt or truncated
    file, a DuckDB file without nasbench's ``meta`` table (an unrelated DB), a schema version this nasbench does not
    know, or a file another process holds open for writing (DuckDB allows one writer and no concurrent readers
    across processes: readers get "in use by a writer" and may retry once it is done). Read-only connections cannot
    touch any other file (:data:`SAFE_CONFIG`). ``create``: a missing file (or a DuckDB file with no tables) becomes
    a new nasbench DB; the caller then creates the schema.
    """
    path = Path(path)
    where = str(path)
    if not path.exists():
        if not create or read_only:
            raise StoreError(where, "database file not found", where)
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        if not path.is_file():
            raise StoreError(where, "not a regular file (a nasbench database is one DuckDB file)", where)
        try:
            with open(path, "rb") as f:
                head = f.read(16)
        except OSError as exc:
            raise StoreError(where, "cannot read the database file", exc.strerror or str(exc)) from None
        if not head:
            raise StoreError(where, "empty file (0 bytes), not a nasbench database", 0)
        if head.startswith(_SQLITE_MAGIC):
            raise StoreError(where, "an SQLite database, not a nasbench (DuckDB) database", "SQLite format 3")
        if head[8:12] != _DUCKDB_MAGIC:
            raise StoreError(where, "not a DuckDB database file (no DuckDB header)", head[:12])
    try:
        con = duckdb.connect(where, read_only=read_only, config=dict(SAFE_CONFIG) if read_only else {})
    except duckdb.Error as exc:
        raise _open_error(where, exc) from None
    try:
        _check_schema(con, where, allow_empty=create and not read_only)
    except BaseException:
        con.close()
        raise
    return con


def _open_error(where: str, exc: Exception) -> StoreError:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "lock" in first.lower():
        return StoreError(where, "in use by a writer (another process has it open for writing; DuckDB lets no "
                                 "other process read meanwhile): retry when that job has finished",
                          first, show_got=False)
    return StoreError(where, "cannot open as a DuckDB database (corrupt, truncated or from another DuckDB version)",
                      first)


def _check_schema(con: duckdb.DuckDBPyConnection, where: str, allow_empty: bool) -> None:
    try:
        tables = {r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database()").fetchall()}
        if "meta" not in tables:
            if allow_empty and not tables:
                return
            listed = ", ".join(sorted(tables)[:5]) or "no tables"
            raise StoreError(where, "not a nasbench database (it has no meta table)", listed)
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except duckdb.Error as exc:
        raise _open_error(where, exc) from None
    found = None if row is None else str(row[0])
    if found is None or not found.isdigit() or not 1 <= int(found) <= 10**6:
        raise StoreError(where, "not a nasbench database (meta holds no valid schema_version)", found)
    if int(found) > SCHEMA_VERSION:
        raise StoreError(where, f"written by a newer nasbench (schema {found}); this one reads schema <= "
                                f"{SCHEMA_VERSION}", int(found))


def connect_read_only(path: str | Path) -> duckdb.DuckDBPyConnection:
    """Open an existing nasbench DB read-only (:func:`open_db`): writes fail and no other file can be touched."""
    return open_db(path, read_only=True)
