"""Default locations and the fingerprint of a set of files, on the ground floor so that building the CLI's parser
imports no database driver (the GPU machine has no duckdb) and no torch."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

__all__ = ["DEFAULT_DB", "PACKED_SUPERNETS", "files_digest"]

#: The local scratch benchmark DB of ``profile``, ``sql``, ``baseline`` ... when no ``--db`` is given.
DEFAULT_DB = "results/nasbench.duckdb"
#: Where packed supernets live, ``<dir>/<id>/``: a supernet id names one of them.
PACKED_SUPERNETS = Path("results/supernets")


def files_digest(paths: Iterable[str | Path]) -> str:
    """16 hex digits of SHA-256 over the files' names and bytes, in the given order."""
    h = hashlib.sha256()
    for path in paths:
        path = Path(path)
        h.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]
