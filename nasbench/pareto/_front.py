"""Pareto fronts, knee points and quality indicators, in plain numpy.

Every function takes an ``(n, m)`` matrix of objective values and one ``minimize`` flag per column, so minimised and
maximised objectives mix freely (``ppl`` and ``latency_ms`` go down, ``acc`` goes up). Internally everything is turned
into minimisation by negating the maximised columns once (:func:`to_minimization`).

Ground floor: numpy (and pymoo for the hypervolume) only, so the optimizers use it without importing a later stage.
Offline fronts of a benchmark DB are the package's measured fronts (:func:`nasbench.pareto.measured_front`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from nasbench.errors import NasBenchError
from nasbench.metrics import directions

__all__ = [
    "to_minimization",
    "normalize",
    "non_dominated_mask",
    "non_dominated_ranks",
    "crowding_distance",
    "pareto_front",
    "knee_point",
    "hypervolume",
    "igd",
    "objective_directions",
]

def objective_directions(objectives: Sequence[str]) -> list[bool]:
    """``minimize`` flags for metric names (with or without the ``metric_`` prefix), from the metric registry:
    accuracies are maximised."""
    return directions(objectives)


def _matrix(Y: Any, where: str) -> np.ndarray:
    Y = np.asarray(Y, dtype=float)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2:
        raise NasBenchError(where, "objective values must be an (n, m) matrix", Y.shape)
    if not np.isfinite(Y).all():
        bad = Y[~np.isfinite(Y).all(axis=1)]
        raise NasBenchError(where, "objective values must be finite", bad[:3].tolist())
    return Y


def _flags(minimize: Sequence[bool] | bool, m: int, where: str) -> np.ndarray:
    if isinstance(minimize, (bool, np.bool_)):
        return np.full(m, bool(minimize))
    flags = np.asarray(list(minimize), dtype=bool)
    if flags.shape != (m,):
        raise NasBenchError(where, f"need one minimize flag per objective ({m})", list(minimize))
    return flags


def to_minimization(Y: Any, minimize: Sequence[bool] | bool = True, where: str = "pareto") -> np.ndarray:
    """A copy of ``Y`` with the maximised columns negated, so that smaller is better everywhere."""
    Y = _matrix(Y, where)
    sign = np.where(_flags(minimize, Y.shape[1], where), 1.0, -1.0)
    return Y * sign


def normalize(Y: Any, lower: Any = None, upper: Any = None) -> np.ndarray:
    """Scale each column to [0, 1] by ``lower``/``upper`` (default: the column's min/max).

    A column with ``upper == lower`` maps to 0 rather than dividing by zero: it carries no trade-off.
    """
    Y = _matrix(Y, "normalize")
    lo = Y.min(axis=0) if lower is None else np.asarray(lower, dtype=float)
    hi = Y.max(axis=0) if upper is None else np.asarray(upper, dtype=float)
    if lo.shape != (Y.shape[1],) or hi.shape != (Y.shape[1],):
        raise NasBenchError("normalize", f"bounds need one value per objective ({Y.shape[1]})",
                            (np.shape(lo), np.shape(hi)))
    if (hi < lo).any():
        raise NasBenchError("normalize", "upper bound below lower bound", (lo.tolist(), hi.tolist()))
    span = np.where(hi > lo, hi - lo, 1.0)
    return (Y - lo) / span


def _dominated_by_any(Y: np.ndarray) -> np.ndarray:
    """For minimisation: row i is dominated when some row is <= everywhere and < somewhere."""
    n = len(Y)
    dominated = np.zeros(n, dtype=bool)
    # Row-by-row against all rows keeps memory O(n m) for the few thousand rows a benchmark holds.
    for i in range(n):
        le = (Y <= Y[i]).all(axis=1)
        lt = (Y < Y[i]).any(axis=1)
        dominated[i] = bool((le & lt).any())
    return dominated


def non_dominated_mask(Y: Any, minimize: Sequence[bool] | bool = True) -> np.ndarray:
    """Boolean mask of the rows no other row dominates. Identical rows do not dominate each other: all are kept."""
    Ymin = to_minimization(Y, minimize, "non_dominated_mask")
    if len(Ymin) == 0:
        return np.zeros(0, dtype=bool)
    return ~_dominated_by_any(Ymin)


def non_dominated_ranks(Y: Any, minimize: Sequence[bool] | bool = True) -> np.ndarray:
    """Front index per row (0 = non-dominated, 1 = non-dominated once front 0 is removed, ...): NSGA-II's sort."""
    Ymin = to_minimization(Y, minimize, "non_dominated_ranks")
    ranks = np.full(len(Ymin), -1, dtype=int)
    remaining = np.arange(len(Ymin))
    rank = 0
    while len(remaining):
        front = ~_dominated_by_any(Ymin[remaining])
        ranks[remaining[front]] = rank
        remaining = remaining[~front]
        rank += 1
    return ranks


def crowding_distance(Y: Any) -> np.ndarray:
    """NSGA-II crowding distance of the rows of one front (extremes get ``inf``); larger means lonelier."""
    Y = _matrix(Y, "crowding_distance")
    n, m = Y.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(Y[:, j], kind="stable")
        span = Y[order[-1], j] - Y[order[0], j]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (Y[order[2:], j] - Y[order[:-2], j]) / span
    return distance


def pareto_front(Y: Any, minimize: Sequence[bool] | bool = True) -> np.ndarray:
    """Indices of the non-dominated rows, sorted by the first objective (best first), ties by row order."""
    Ymin = to_minimization(Y, minimize, "pareto_front")
    idx = np.flatnonzero(non_dominated_mask(Ymin, True))
    return idx[np.argsort(Ymin[idx, 0], kind="stable")]


def knee_point(Y: Any, minimize: Sequence[bool] | bool = True) -> int:
    """Row index of the knee of the front of ``Y``.

    The front is normalised to [0, 1] per objective (0 = best). With two objectives the knee is the front point
    farthest from the straight line through the two extreme points, on the side of the ideal point (the classic
    "maximum distance to the chord" knee). With three or more objectives extremes no longer define a unique
    hyperplane for small fronts, so the knee is the point closest (Euclidean) to the ideal point (0, ..., 0).
    Ties go to the lowest row index. A front of one point is its own knee.
    """
    Ymin = to_minimization(Y, minimize, "knee_point")
    if len(Ymin) == 0:
        raise NasBenchError("knee_point", "need at least one point", Ymin.shape)
    front = np.flatnonzero(non_dominated_mask(Ymin, True))
    if len(front) == 1:
        return int(front[0])
    F = normalize(Ymin[front])
    if F.shape[1] == 2:
        a = F[np.argmin(F[:, 0] + 1e-12 * F[:, 1])]  # best in objective 0 (ties: better in 1)
        b = F[np.argmin(F[:, 1] + 1e-12 * F[:, 0])]
        chord = b - a
        length = np.linalg.norm(chord)
        if length == 0:
            return int(front[0])
        # Signed distance to the chord, positive towards the ideal point (the origin after normalisation).
        normal = np.array([-chord[1], chord[0]]) / length
        if normal @ (np.zeros(2) - a) < 0:
            normal = -normal
        score = (F - a) @ normal
        return int(front[int(np.argmax(score))])
    return int(front[int(np.argmin(np.linalg.norm(F, axis=1)))])


def hypervolume(Y: Any, ref: Any, minimize: Sequence[bool] | bool = True) -> float:
    """Hypervolume dominated by ``Y`` and bounded by the reference point ``ref`` (pymoo's exact ``HV``).

    ``ref`` is in the same units and directions as ``Y`` (for a maximised objective it is a low value). Rows that
    do not strictly beat ``ref`` in every objective add nothing and are dropped before the library call.
    """
    from pymoo.indicators.hv import HV

    Ymin = to_minimization(Y, minimize, "hypervolume")
    m = Ymin.shape[1]
    ref_arr = np.asarray(ref, dtype=float).reshape(-1)
    if ref_arr.shape != (m,) or not np.isfinite(ref_arr).all():
        raise NasBenchError("hypervolume", f"reference point needs {m} finite values", np.asarray(ref).tolist())
    ref_min = ref_arr * np.where(_flags(minimize, m, "hypervolume"), 1.0, -1.0)
    inside = Ymin[(Ymin < ref_min).all(axis=1)]
    if len(inside) == 0:
        return 0.0
    return float(HV(ref_point=ref_min)(inside))


def igd(Y: Any, front: Any) -> float:
    """Inverted generational distance: mean over ``front`` points of the Euclidean distance to the nearest row of ``Y``.

    Direction-free (a distance), so normalise both with the same bounds first (:func:`normalize`) when the objectives
    have different units. 0 exactly when every front point is in ``Y``.
    """
    Y = _matrix(Y, "igd")
    F = _matrix(front, "igd")
    if len(F) == 0 or len(Y) == 0:
        raise NasBenchError("igd", "need at least one point and one front point", (len(Y), len(F)))
    if Y.shape[1] != F.shape[1]:
        raise NasBenchError("igd", "points and front need the same objectives", (Y.shape[1], F.shape[1]))
    d = np.sqrt(((F[:, None, :] - Y[None, :, :]) ** 2).sum(axis=2))
    return float(d.min(axis=1).mean())
