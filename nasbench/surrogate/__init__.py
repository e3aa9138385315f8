"""Surrogates of the measured benchmark and the query API built on them.

``Benchmark.open(db, space, supernet)`` -> ``query(configs, metrics, mode, noise, seed)`` (vectorised table lookups +
predictions) and ``blackbox(objectives, mode)`` (a Syne Tune blackbox). ``fit`` returns a :class:`FidelityCard` per
metric: how well the chosen model ranks and predicts archs it was not fitted on.
"""

from nasbench.surrogate._cache import DEFAULT_CACHE
from nasbench.surrogate._data import EXACT_METRICS, LOG_METRICS, WEIGHT_FREE_METRICS, is_maximized
from nasbench.surrogate._fit import FidelityCard, Surrogate
from nasbench.surrogate._regressors import CANDIDATES
from nasbench.surrogate.benchmark import MODES, Benchmark, print_cards

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
