"""Surrogates of the measured benchmark and the query API built on them.

``Benchmark.open(db, space, supernet)`` (default: the DB's main supernet of the space) -> ``query(configs, metrics,
mode, noise, seed, interval)`` (vectorised table lookups + predictions, with the surrogates' 90% intervals) and
``blackbox(objectives, mode)`` (a Syne Tune blackbox). ``fit`` returns a :class:`FidelityCard` per
metric: how well the chosen model ranks and predicts archs it was not fitted on.
"""

from __future__ import annotations

from nasbench.lazy import lazy_getattr
from nasbench.surrogate._cache import DEFAULT_CACHE
from nasbench.surrogate._fit import FidelityCard, Surrogate
from nasbench.surrogate._regressors import CANDIDATES
from nasbench.surrogate.modes import MODES

# the DB-reading modules (duckdb, pandas) load on first use: the CLI's parser reads the names above without them
_LAZY = {
    "EXACT_METRICS": "nasbench.surrogate._data",
    "LOG_METRICS": "nasbench.surrogate._data",
    "WEIGHT_FREE_METRICS": "nasbench.surrogate._data",
    "is_maximized": "nasbench.surrogate._data",
    "Benchmark": "nasbench.surrogate.benchmark",
    "print_cards": "nasbench.surrogate.benchmark",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "CANDIDATES",
    "DEFAULT_CACHE",
    "EXACT_METRICS",
    "LOG_METRICS",
    "MODES",
    "WEIGHT_FREE_METRICS",
    "Benchmark",
    "FidelityCard",
    "Surrogate",
    "is_maximized",
    "print_cards",
]
