"""Data sources from a space's ``data:`` section: read from a local data directory, or online from the HF hub.

Offline (the normal case here) every source is a list of files under the *data directory*, given as ``data_dir``
(the CLI's ``--data-dir``) or by the environment variable ``NASBENCH_DATA_DIR``. Online (no data directory) the same
source is loaded from its HF ids (``id[:config][@split]``) with :func:`datasets.load_dataset`; that code lives at the
end of this module.

Kinds (see :class:`nasbench.space.DataSource`):

* ``text``: plain UTF-8 text, read whole (:func:`read_text`);
* ``instructions``: Alpaca-format records ``{"instruction", "input", "output"}`` as a JSON list or JSONL
  (:func:`read_instructions`);
* ``tasks``: evaluation task names, no files (the profile stage reads them from the space).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from nasbench.errors import DataError
from nasbench.space import DataSource

__all__ = [
    "ENV_DATA_DIR",
    "INSTRUCTION_KEYS",
    "HFDataset",
    "data_dir",
    "resolve",
    "read_text",
    "read_instructions",
    "iter_jsonl",
]

#: The environment variable naming the data directory when none is given.
ENV_DATA_DIR = "NASBENCH_DATA_DIR"
#: The keys of one instruction record, in this order.
INSTRUCTION_KEYS = ("instruction", "input", "output")


@dataclass(frozen=True)
class HFDataset:
    """One HF dataset id of a source, parsed from ``id[:config][@split]``."""

    id: str
    config: str | None = None
    split: str = "train"
    """The split to load; ``train`` when the id names none."""

    @classmethod
    def parse(cls, spec: str) -> HFDataset:
        rest, _, split = spec.partition("@")
        name, _, config = rest.partition(":")
        if not name or (":" in spec and not config) or ("@" in spec and not split):
            raise DataError("hf", "an HF dataset id is written id[:config][@split]", spec)
        return cls(name, config or None, split or "train")

    def __str__(self) -> str:
        return self.id + (f":{self.config}" if self.config else "") + f"@{self.split}"


# ------------------------------------------------------------------------------------------------ data directory
def data_dir(flag: str | os.PathLike[str] | None = None) -> Path | None:
    """The data directory: ``flag`` (the CLI's ``--data-dir``) if given, else ``$NASBENCH_DATA_DIR``, else ``None``
    (online mode).

    An empty environment variable counts as unset. A directory that is given but does not exist is an error, never a
    silent switch to online mode.
    """
    if flag is not None:
        where, value = "data_dir", os.fspath(flag)
        if not value:
            raise DataError(where, "must name a directory", value)
    else:
        where, value = ENV_DATA_DIR, os.environ.get(ENV_DATA_DIR, "")
        if not value:
            return None
    path = Path(value).expanduser()
    if not path.exists():
        raise DataError(where, "the data directory does not exist", str(path))
    if not path.is_dir():
        raise DataError(where, "must be a directory, not a file", str(path))
    return path.resolve()


def resolve(source: DataSource, data_dir: Path | None) -> list[Path]:
    """The local files of ``source`` under ``data_dir``, in the order the space lists them; each must exist."""
    if source.kind == "tasks":
        raise DataError(f"data.{source.name}", "a tasks source names evaluation tasks, not files", source.kind)
    if data_dir is None:
        raise DataError(f"data.{source.name}", f"local files need a data directory: pass data_dir or set "
                                               f"{ENV_DATA_DIR}", None, show_got=False)
    out = []
    for i, rel in enumerate(source.paths):
        path = Path(data_dir) / rel
        if not path.is_file():
            hf = source.hf[i] if i < len(source.hf) else None
            online = (f", or run online without data_dir / {ENV_DATA_DIR} to load the HF dataset {hf}" if hf
                      else f"; data.{source.name} declares no HF id to load it online")
            raise DataError(str(path), f"file not found (data.{source.name}.path): put the file there{online}",
                            None, show_got=False)
        out.append(path)
    return out


# --------------------------------------------------------------------------------------------------------- text
def read_text(source: DataSource, data_dir: Path | None) -> str:
    """The whole text of a ``text`` source.

    Local files are read as UTF-8 with universal newlines (a CRLF copy reads like the LF original) and joined in
    order; a ``"\\n"`` is put between two files only where the first does not already end with one, so a single file
    comes back exactly. Online, each HF dataset's ``text`` column is turned back into the raw file (see
    :func:`_rows_to_text`).
    """
    _check_kind(source, "text")
    if data_dir is None:
        return _join([_rows_to_text(_hf_rows(spec, "text")) for spec in _online_ids(source)])
    parts = []
    for path in resolve(source, data_dir):
        try:
            parts.append(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise DataError(str(path), "must be UTF-8 text", f"byte {e.object[e.start:e.start + 1]!r} at offset "
                                                             f"{e.start}") from None
    return _join(parts)


def _join(parts: list[str]) -> str:
    out = []
    for i, part in enumerate(parts):
        if i and out[-1] and not out[-1].endswith("\n"):
            out.append("\n")
        out.append(part)
    return "".join(out)


# ------------------------------------------------------------------------------------------------- instructions
def read_instructions(source: DataSource, data_dir: Path | None) -> list[dict[str, str]]:
    """The records of an ``instructions`` source, each exactly ``{"instruction", "input", "output"}`` (all str).

    A file ending in ``.jsonl`` holds one JSON object per line; any other file holds one JSON list of objects.
    ``instruction`` and ``output`` are required, ``input`` may be missing (read as ``""``); other keys are dropped.
    """
    _check_kind(source, "instructions")
    if data_dir is None:
        return [rec for spec in _online_ids(source) for rec in _instructions(_hf_rows(spec, "instruction"), spec)]
    records: list[dict[str, str]] = []
    for path in resolve(source, data_dir):
        if path.suffix == ".jsonl":
            rows: Iterable[Any] = iter_jsonl(path)
        else:
            rows = _load_json_list(path)
        records.extend(_instructions(rows, str(path)))
    return records


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[Any]:
    """The JSON values of a JSONL file, one per non-blank line.

    Lines are split on ``"\\n"`` only (file iteration, not ``str.splitlines``, which would also break at U+2028,
    U+0085 and other characters that real text fields contain).
    """
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}", f"invalid JSON: {e.msg} at column {e.colno}",
                                line.rstrip("\n")) from None


def _load_json_list(path: Path) -> list[Any]:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}", f"invalid JSON: {e.msg} at column {e.colno} (a JSONL file must end "
                                              f"in .jsonl)", None, show_got=False) from None
    if not isinstance(doc, list):
        raise DataError(str(path), "must hold a JSON list of {instruction, input, output} records",
                        type(doc).__name__)
    return doc


def _instructions(rows: Iterable[Any], where: str) -> list[dict[str, str]]:
    out = []
    for i, row in enumerate(rows):
        at = f"{where}: record {i}"
        if not isinstance(row, dict):
            raise DataError(at, "must be a JSON object with instruction, input, output", row)
        rec = {}
        for key in INSTRUCTION_KEYS:
            if key not in row:
                if key == "input":
                    rec[key] = ""
                    continue
                raise DataError(at, f"required field '{key}' is missing", sorted(row))
            value = row[key]
            if value is None and key == "input":
                value = ""
            if not isinstance(value, str):
                raise DataError(at, f"field '{key}' must be a string", value)
            rec[key] = value
        if not rec["instruction"].strip():
            raise DataError(at, "field 'instruction' must not be empty", rec["instruction"])
        out.append(rec)
    return out


def _check_kind(source: DataSource, kind: str) -> None:
    if source.kind != kind:
        raise DataError(f"data.{source.name}.kind", f"this reader needs a {kind} source", source.kind)


# ------------------------------------------------------------------------------------------------------- online
def _online_ids(source: DataSource) -> tuple[str, ...]:
    if not source.hf:
        raise DataError(f"data.{source.name}.hf", f"no data directory (data_dir / {ENV_DATA_DIR}) and no HF id to "
                                                  f"load online", None, show_got=False)
    return source.hf


def _hf_rows(spec: str, column: str) -> list[dict[str, Any]]:
    """The rows of one HF dataset ``id[:config][@split]``; needs the hub (not reachable in the tests)."""
    hf = HFDataset.parse(spec)
    import datasets

    try:
        ds = datasets.load_dataset(hf.id, hf.config, split=hf.split)
    except Exception as e:  # the hub's errors are many; one line naming the id and the way out
        raise DataError(str(hf), f"could not load from the HF hub ({type(e).__name__}: {e}); offline, pass "
                                 f"data_dir", None, show_got=False) from e
    rows = list(ds)
    if rows and column not in rows[0]:
        raise DataError(str(hf), f"has no '{column}' column", sorted(rows[0]))
    return rows


def _rows_to_text(rows: Iterable[dict[str, Any]]) -> str:
    """The raw file behind a ``text`` column whose rows are its lines.

    HF's WikiText keeps each line with its ``"\\n"`` but stores the blank ``" \\n"`` lines as ``""``; the raw file is
    rebuilt by writing ``""`` back as ``" \\n"`` and ending every other row with ``"\\n"`` where it lacks one.
    """
    return "".join(" \n" if not r["text"] else r["text"] if r["text"].endswith("\n") else r["text"] + "\n"
                   for r in rows)
