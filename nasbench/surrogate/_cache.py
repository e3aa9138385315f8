"""The surrogate cache: ``<root>/<space>/<supernet>/<metric>.joblib`` plus ``<metric>.json`` (its metadata).

A cached model is reused while the hash of the data it was fitted on and the library versions match; otherwise it is
refitted. Loading unpickles, so only files this module wrote are loaded: names are checked, the path must stay under
the cache root, and the file's SHA-256 must equal the one recorded in its metadata (a file that fails this is refused,
never unpickled).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from nasbench.errors import NasBenchError
from nasbench.surrogate._fit import Surrogate

__all__ = ["DEFAULT_CACHE", "FORMAT", "cache_paths", "load_cached", "save_cached", "versions"]

DEFAULT_CACHE = "surrogates"
FORMAT = 1
"""Bumped whenever fitting or the stored object changes, so old files are refitted."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def versions() -> dict[str, str]:
    """Libraries whose pickles must match for a cached model to be loaded."""
    import joblib
    import numpy
    import scipy
    import sklearn

    import nasbench

    return {"python": f"{sys.version_info.major}.{sys.version_info.minor}", "numpy": numpy.__version__,
            "scipy": scipy.__version__, "scikit-learn": sklearn.__version__, "joblib": joblib.__version__,
            "nasbench": nasbench.__version__, "format": str(FORMAT)}


def cache_paths(root: str | Path, space: str, supernet_id: str, metric: str) -> tuple[Path, Path]:
    """(model file, metadata file); refuses names that could leave the cache root."""
    for what, name in (("space", space), ("supernet", supernet_id), ("metric", metric)):
        if not _NAME.match(name) or ".." in name:
            raise NasBenchError("surrogates", f"a {what} name in the cache may hold only letters, digits and _.+- "
                                              f"(and no '..')", name)
    root = Path(root).resolve()
    folder = (root / space / supernet_id).resolve()
    if not folder.is_relative_to(root):
        raise NasBenchError("surrogates", "cache path leaves the cache root", str(folder))
    return folder / f"{metric}.joblib", folder / f"{metric}.json"


def load_cached(root: str | Path, space: str, supernet_id: str, metric: str, data_hash: str) -> Surrogate | None:
    """The cached surrogate when its data hash and versions match; None when absent or stale (refit it)."""
    model_file, meta_file = cache_paths(root, space, supernet_id, metric)
    if not (model_file.is_file() and meta_file.is_file()):
        return None
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("data_hash") != data_hash or meta.get("versions") != versions():
        return None
    digest = _sha256(model_file)
    if digest != meta.get("file_sha256"):
        raise NasBenchError(str(model_file), "file hash does not match its metadata: refusing to load it (delete "
                                             "the file to refit)", digest[:16])
    import joblib

    surrogate = joblib.load(model_file)
    if not isinstance(surrogate, Surrogate):
        raise NasBenchError(str(model_file), "is not a nasbench surrogate", type(surrogate).__name__)
    return surrogate


def save_cached(root: str | Path, surrogate: Surrogate) -> Path:
    """Write the model, then its metadata (with the model's hash) — each through a temporary file and a rename."""
    import joblib

    model_file, meta_file = cache_paths(root, surrogate.space, surrogate.supernet_id, surrogate.metric)
    model_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = model_file.with_suffix(".joblib.tmp")
    joblib.dump(surrogate, tmp, compress=3)
    os.replace(tmp, model_file)
    meta: dict[str, Any] = {"space": surrogate.space, "supernet_id": surrogate.supernet_id,
                            "metric": surrogate.metric, "model": surrogate.model_name,
                            "transform": surrogate.transform, "data_hash": surrogate.card.data_hash,
                            "file_sha256": _sha256(model_file), "versions": versions(),
                            "card": asdict(surrogate.card)}
    tmp_meta = meta_file.with_suffix(".json.tmp")
    tmp_meta.write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp_meta, meta_file)
    return model_file


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
