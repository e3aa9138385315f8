"""The surrogate cache: ``<root>/<space>/<supernet>/<metric>.json``, plain JSON that holds no code.

What is expensive in a fit is the selection (cross-validating every candidate, calibrating, scoring held-out archs);
its outcome is small: the fidelity card (which model won, on which scale) and the calibration scale. The cache keeps
exactly that, and on load the chosen model is refitted on the benchmark's rows (:func:`refit_surrogate`: seeded,
deterministic, a fraction of a second). Nothing is unpickled, so a swapped or planted cache file can at worst hold
wrong numbers, never run code: a file that does not parse, names an unknown model, or whose refit does not
reproduce the predictions recorded at fit time is treated as stale and refitted. Names are checked, and neither the
folder nor the file may lead (by ``..`` or a symlink) out of the cache root.

A cached entry is reused while the hash of the data it was fitted on and the library versions match.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from nasbench.errors import NasBenchError
from nasbench.surrogate._fit import FidelityCard, Surrogate, refit_surrogate
from nasbench.surrogate._regressors import CANDIDATES

__all__ = ["DEFAULT_CACHE", "FORMAT", "cache_paths", "load_cached", "save_cached", "versions"]

DEFAULT_CACHE = "surrogates"
FORMAT = 2
"""Bumped whenever fitting or the stored entry changes, so old entries are refitted. 2: JSON only (1 was joblib)."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_MAX_META_BYTES = 1 << 20
_PROBE_ROWS = 8
"""Training rows whose predictions the entry records: a refit must reproduce them to be trusted."""


def versions() -> dict[str, str]:
    """Libraries whose behaviour a refit depends on: an entry is reused only under the same ones."""
    import numpy
    import scipy
    import sklearn

    import nasbench

    return {"python": f"{sys.version_info.major}.{sys.version_info.minor}", "numpy": numpy.__version__,
            "scipy": scipy.__version__, "scikit-learn": sklearn.__version__, "nasbench": nasbench.__version__,
            "format": str(FORMAT)}


def cache_paths(root: str | Path, space: str, supernet: str, metric: str) -> Path:
    """The entry's file; refuses names, folders or symlinks that could leave the cache root."""
    for what, name in (("space", space), ("supernet", supernet), ("metric", metric)):
        if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
            raise NasBenchError("surrogates", f"a {what} name in the cache may hold only letters, digits and _.+- "
                                              f"(and no '..')", name)
    root = Path(root).resolve()
    folder = (root / space / supernet).resolve()
    if not folder.is_relative_to(root):
        raise NasBenchError("surrogates", "cache path leaves the cache root (a symlink?)", str(folder))
    file = folder / f"{metric}.json"
    if file.is_symlink() and not file.resolve().is_relative_to(root):
        raise NasBenchError(str(file), "is a symlink out of the cache root: refusing to read or replace it",
                            str(file.resolve()))
    return file


def load_cached(root: str | Path, space: str, supernet: str, metric: str, data_hash: str, x: np.ndarray,
                y: np.ndarray, cost: np.ndarray, seed: int = 0) -> Surrogate | None:
    """The surrogate rebuilt from its cached selection when the entry matches (data hash, versions) and its refit
    reproduces the recorded predictions; None when absent, stale or not trustworthy (fit it afresh)."""
    file = cache_paths(root, space, supernet, metric)
    if not file.is_file():
        return None
    try:
        if file.stat().st_size > _MAX_META_BYTES:
            return None
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    if not isinstance(meta, dict) or meta.get("data_hash") != data_hash or meta.get("versions") != versions():
        return None
    entry = _entry(meta, space, supernet, metric, len(y))
    if entry is None:
        return None
    card, scale, probe = entry
    surrogate = refit_surrogate(x, y, cost, card=card, scale=scale, seed=seed)
    got = surrogate.regressor.predict_mean(x[:_PROBE_ROWS])
    if not np.allclose(got, probe, rtol=1e-9, atol=1e-12):
        return None
    return surrogate


def save_cached(root: str | Path, surrogate: Surrogate, x: np.ndarray) -> Path:
    """Write the entry (card, scale, the predictions a refit must reproduce) through a temporary file and a rename."""
    file = cache_paths(root, surrogate.space, surrogate.supernet_id, surrogate.metric)
    file.parent.mkdir(parents=True, exist_ok=True)
    probe = [float(v) for v in surrogate.regressor.predict_mean(x[:_PROBE_ROWS])]
    meta: dict[str, Any] = {"format": FORMAT, "space": surrogate.space, "supernet_id": surrogate.supernet_id,
                            "metric": surrogate.metric, "model": surrogate.model_name,
                            "transform": surrogate.transform, "data_hash": surrogate.card.data_hash,
                            "scale": surrogate.scale, "probe": probe, "versions": versions(),
                            "card": asdict(surrogate.card)}
    tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, file)
    return file


def _entry(meta: dict[str, Any], space: str, supernet: str, metric: str,
           n_rows: int) -> tuple[FidelityCard, float, np.ndarray] | None:
    """(card, scale, probe predictions) from a parsed entry, or None when anything is off."""
    card_doc = meta.get("card")
    names = {f.name for f in fields(FidelityCard)}
    if not isinstance(card_doc, dict) or set(card_doc) != names:
        return None
    try:
        card = FidelityCard(**card_doc)
    except TypeError:
        return None
    scale, probe = meta.get("scale"), meta.get("probe")
    if (card.space, card.supernet_id, card.metric) != (space, supernet, metric) or card.model not in CANDIDATES \
            or card.transform not in ("log", "identity") or meta.get("model") != card.model:
        return None
    if not _finite(scale) or scale <= 0 or not isinstance(probe, list) or len(probe) != min(_PROBE_ROWS, n_rows) \
            or not all(_finite(v) for v in probe):
        return None
    return card, float(scale), np.asarray(probe, dtype=np.float64)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
