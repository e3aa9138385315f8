"""Profiling rows as JSON lines, for machines without DuckDB (a GPU machine with only the training wheels), and
their import into a benchmark DB.

:class:`JsonlStore` answers the calls :func:`nasbench.profile.profile` makes on a
:class:`nasbench.store.Store` (``add_space``, ``add_supernet``, ``has_supernet``, ``has_measurement``,
``count_measurements``, ``add_results``) and appends one line per call instead: each arch's rows are one line,
flushed and fsynced, so a killed run keeps every arch it finished (a torn last line is skipped on import).
:func:`import_rows` replays the lines on a real store through the same methods, in the same order, so the DB ends up
with the rows ``nasbench profile`` would have written there (only ``created_at`` is the import's time).

Line kinds: ``{"kind": "space", "name", "hash", "version"}``, ``{"kind": "supernet", "id", "space", "base_model",
"fields"}``, ``{"kind": "arch", "space", "arch", "measurements": [Measurement fields]}``.

Only the standard library and :mod:`nasbench.space` are imported here (no duckdb).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from nasbench.errors import StoreError
from nasbench.space import arch_id

__all__ = ["FORMAT", "JsonlStore", "read_lines", "import_rows"]

FORMAT = "nasbench-rows/1"
_KEY = ("arch_id", "supernet_id", "metric", "task", "device")


class JsonlStore:
    """A write-only stand-in for :class:`nasbench.store.Store` that appends JSON lines to ``path`` (and to every
    path of ``mirrors``: e.g. a folder whose files come back even if the process is killed).

    ``known_supernets``: ids the target DB already holds (``has_supernet`` says True, as the DB would).
    ``known``: (space, arch_id, supernet_id, metric, task, device) keys the target DB holds (``has_measurement``).
    Rows already in ``path`` (an earlier run on this machine) count as known too: a restart adds no duplicates.
    """

    def __init__(self, path: str | Path, *, mirrors: Sequence[str | Path] = (), known_supernets: Iterable[str] = (),
                 known: Iterable[tuple[str, str, str, str, str, str]] = ()) -> None:
        self.path = Path(path)
        self.mirrors = [Path(m) for m in mirrors]
        self.supernets = set(known_supernets)
        self.keys = set(known)
        self.counts: dict[str, int] = {}
        for record in read_lines(self.path) if self.path.is_file() else ():
            self._remember(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._files = [open(p, "a", encoding="utf-8") for p in [self.path, *self.mirrors]]

    # -- the Store interface profile() uses ------------------------------------------------------------------------
    def __enter__(self) -> "JsonlStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        for f in self._files:
            f.close()
        self._files = []

    def add_space(self, space: Any) -> None:
        self._write({"kind": "space", "name": space.name, "hash": space.hash, "version": space.version})

    def add_supernet(self, supernet: str, space: str, base_model: str, **fields: Any) -> None:
        self._write({"kind": "supernet", "id": supernet, "space": space, "base_model": base_model,
                     "fields": fields})

    def has_supernet(self, supernet: str) -> bool:
        return supernet in self.supernets

    def has_measurement(self, space: str, arch: str, supernet: str, metric: str, task: str = "",
                        device: str = "") -> bool:
        return (space, arch, supernet, metric, task, device) in self.keys

    def count_measurements(self, space: str) -> int:
        return self.counts.get(space, 0)

    def add_results(self, space: Any, arch: Mapping[str, Any], measurements: Sequence[Any]) -> None:
        rows = [dataclasses.asdict(m) if dataclasses.is_dataclass(m) else dict(m) for m in measurements]
        self._write({"kind": "arch", "space": space.name, "arch": space.canonical(arch), "measurements": rows})

    # -- internals -------------------------------------------------------------------------------------------------
    def _write(self, record: dict[str, Any]) -> None:
        line = json.dumps({"format": FORMAT, **record}, sort_keys=True) + "\n"
        for f in self._files:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self._remember(record)

    def _remember(self, record: Mapping[str, Any]) -> None:
        if record["kind"] == "supernet":
            self.supernets.add(record["id"])
        elif record["kind"] == "arch":
            space = record["space"]
            for m in record["measurements"]:
                key = (space, *(m.get(k) or "" for k in _KEY))
                if key not in self.keys:
                    self.keys.add(key)
                    self.counts[space] = self.counts.get(space, 0) + 1


def read_lines(path: str | Path) -> Iterator[dict[str, Any]]:
    """The records of a rows file in order. A torn last line (a run killed while writing it) is skipped; a bad line
    anywhere else, or a record of another format, is a :class:`StoreError`."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == last and not path.read_bytes().endswith(b"\n"):
                return  # torn by a kill: that arch was never complete
            raise StoreError(f"{path}:{i + 1}", "not a JSON line", line[:80]) from None
        if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("kind") not in (
                "space", "supernet", "arch"):
            raise StoreError(f"{path}:{i + 1}", f"not a {FORMAT} record", line[:80])
        yield record


def import_rows(store: Any, path: str | Path, spaces: Mapping[str, Any]) -> dict[str, int]:
    """Replay a rows file on ``store`` (a :class:`nasbench.store.Store`) through the calls ``profile`` makes.

    ``spaces``: name -> :class:`~nasbench.space.SearchSpace` of every space the file names; each must have the hash
    the rows were measured under. Returns counts: ``archs`` (lines), ``rows`` (new measurement rows), ``skipped``
    (rows the DB already held), ``supernets`` (supernet records replayed).
    """
    from nasbench.store import Measurement

    fields = {f.name for f in dataclasses.fields(Measurement)}
    counts = {"archs": 0, "rows": 0, "skipped": 0, "supernets": 0}
    for record in read_lines(path):
        name = record.get("space") if record["kind"] != "space" else record["name"]
        space = spaces.get(name)
        if space is None:
            raise StoreError(str(path), "the rows name a space that was not given", name)
        if record["kind"] == "space":
            if record["hash"] != space.hash:
                raise StoreError(str(path), f"the rows were measured on another definition of the space {name!r} "
                                            f"(hash {record['hash']}, here {space.hash})", record["hash"])
            store.add_space(space)
        elif record["kind"] == "supernet":
            store.add_supernet(record["id"], record["space"], record["base_model"], **record["fields"])
            counts["supernets"] += 1
        else:
            arch = space.check(record["arch"], f"{path}: arch")
            rows = []
            for m in record["measurements"]:
                unknown = sorted(set(m) - fields)
                if unknown:
                    raise StoreError(str(path), "unknown measurement field", unknown[0])
                if m["arch_id"] != arch_id(arch):
                    raise StoreError(str(path), f"a row's arch_id differs from its arch's {arch_id(arch)}",
                                     m["arch_id"])
                rows.append(Measurement(**m))
            before = store.count_measurements(space.name)
            store.add_results(space, arch, rows)
            new = store.count_measurements(space.name) - before
            counts["archs"] += 1
            counts["rows"] += new
            counts["skipped"] += len(rows) - new
    return counts
