"""Pareto fronts: the plain-numpy core (non-dominated sorting, crowding, knee, hypervolume, IGD) and the measured
fronts of a benchmark DB, with their plot.

- ``_front``: the core, on ``(n, m)`` matrices with one ``minimize`` flag per column; ground floor (numpy, and pymoo
  for the hypervolume), so the optimizers use it without importing a later stage;
- ``_measured``: :class:`MeasuredFront` of a DB's measured rows (:func:`measured_front`), the baselines' points and
  :func:`plot_front`; the last stage of the data flow.
"""

from __future__ import annotations

from nasbench.lazy import lazy_getattr
from nasbench.pareto import _front
from nasbench.pareto._front import (
    crowding_distance,
    hypervolume,
    igd,
    knee_point,
    non_dominated_mask,
    non_dominated_ranks,
    normalize,
    objective_directions,
    pareto_front,
    to_minimization,
)

# the measured fronts read a DB (duckdb, pandas): they load on first use, so `import nasbench.pareto` stays numpy-only
# (GPU machines have no duckdb)
_LAZY = dict.fromkeys(("MeasuredFront", "measured_front", "plot_front", "baseline_points", "BASELINE_MARKERS"),
                      "nasbench.pareto._measured")

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = [*_front.__all__, *_LAZY]  # the core's names are listed once, in _front
