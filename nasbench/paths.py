"""Default locations, on the ground floor so that building the CLI's parser imports no database driver (the GPU
machine has no duckdb)."""

from __future__ import annotations

__all__ = ["DEFAULT_DB"]

#: The local scratch benchmark DB of ``profile``, ``sql``, ``baseline`` ... when no ``--db`` is given.
DEFAULT_DB = "results/nasbench.duckdb"
