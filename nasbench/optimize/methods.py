"""The compared methods by short name, each as a Syne Tune scheduler.

All seven run under :class:`~nasbench.optimize.searchers.MultiObjectiveScheduler` (per-metric modes, table
projection); they differ only in the searcher:

===========  ==========================================================================================
``rs``       Syne Tune 0.16 ``MultiObjectiveRandomSearcher``
``morea``    Syne Tune 0.16 ``MultiObjectiveRegularizedEvolution`` (non-dominated-sort priority)
``ehvi``     Syne Tune 0.16 ``ExpectedHyperVolumeImprovement`` with a usable reference point (``_ehvi``)
``nsga2``    :class:`~nasbench.optimize.searchers.NSGA2Searcher`
``ls``       :class:`~nasbench.optimize.searchers.LocalSearcher`
``rsbo``     :class:`~nasbench.optimize.searchers.ScalarizedBOSearcher` with random (ParEGO) scalarisation
``lsbo``     :class:`~nasbench.optimize.searchers.ScalarizedBOSearcher` with fixed linear scalarisation
===========  ==========================================================================================

MOASHA is left out: the benchmark's blackbox has a single dummy fidelity (every arch is measured once, at its
final state), so successive halving has no rungs to stop trials at and would reduce to random search.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from nasbench.errors import NasBenchError
from nasbench.metrics import LOG_SCALE, metric_name

if TYPE_CHECKING:  # Syne Tune is imported when a scheduler is made: the CLI lists METHODS without loading it
    from syne_tune.optimizer.scheduler import TrialScheduler

__all__ = ["METHODS", "LOG_SCALE", "make_scheduler"]

# Objectives handed to searchers (and measured) on a log scale (the metric registry's ``log_scale``): ln(ppl) is the
# cross-entropy. The transform is monotone, so dominance-based searchers do not notice; GP-based ones get values
# spanning a few units instead of 1e1..1e30.

METHODS: dict[str, str] = {
    "rs": "random search",
    "morea": "multi-objective regularized evolution",
    "ehvi": "expected hypervolume improvement (BoTorch GP)",
    "nsga2": "NSGA-II",
    "ls": "local search",
    "rsbo": "random-scalarization BO (ParEGO)",
    "lsbo": "linear-scalarization BO",
}
"""Short name -> description, in the order reports list them."""


def make_scheduler(method: str, config_space: dict[str, Any], metrics: list[str], modes: list[str], seed: int,
                   table_rows: Sequence[dict[str, Any]] | None = None,
                   is_valid: Callable[[dict[str, Any]], bool] | None = None, **options: Any) -> TrialScheduler:
    """A seeded scheduler for ``method`` over ``config_space``.

    :param metrics: result keys of the objectives (``metric_ppl``, ...); :param modes: ``"min"``/``"max"`` each.
    :param table_rows: table mode: the profiled archs as configs; suggestions are projected onto them and the BO
        methods rank exactly these candidates.
    :param is_valid: whole-space mode: the space's rules; invalid suggestions are repaired to the nearest valid arch.
    :param options: passed to the searcher (``population_size`` for nsga2/morea, ``num_init_random`` for the BO
        methods, ...).
    """
    if method not in METHODS:
        raise NasBenchError("method", f"unknown method; known: {', '.join(METHODS)}", method)
    if len(metrics) < 2:
        raise NasBenchError("metrics", "multi-objective methods need at least two objectives", list(metrics))
    from nasbench.optimize.searchers import (
        LocalSearcher,
        MultiObjectiveScheduler,
        NSGA2Searcher,
        ScalarizedBOSearcher,
    )

    searcher: Any
    if method == "rs":
        from syne_tune.optimizer.schedulers.searchers.random_searcher import MultiObjectiveRandomSearcher

        searcher = MultiObjectiveRandomSearcher(config_space, random_seed=seed, **options)
    elif method == "morea":
        from syne_tune.optimizer.schedulers.multiobjective import MultiObjectiveRegularizedEvolution

        # population 20 and tournaments of 5, as NSGA-II here: 0.16's default population of 100 keeps MOREA purely
        # random for the first 100 evaluations, i.e. for a whole table-mode budget
        options = {"population_size": 20, "sample_size": 5, **options}
        searcher = MultiObjectiveRegularizedEvolution(config_space, random_seed=seed, **options)
    elif method == "ehvi":
        from nasbench.optimize._ehvi import EHVISearcher

        searcher = EHVISearcher(config_space, candidates=table_rows, random_seed=seed, **options)
    elif method == "nsga2":
        searcher = NSGA2Searcher(config_space, random_seed=seed, **options)
    elif method == "ls":
        searcher = LocalSearcher(config_space, random_seed=seed, **options)
    else:  # rsbo, lsbo: METHODS was checked above
        searcher = ScalarizedBOSearcher(config_space, scalarization="random" if method == "rsbo" else "linear",
                                        candidates=table_rows, random_seed=seed, **options)
    log_metrics = [m for m in metrics if metric_name(m) in LOG_SCALE]
    return MultiObjectiveScheduler(config_space, metrics, modes, searcher, random_seed=seed, table_rows=table_rows,
                                   log_metrics=log_metrics, is_valid=None if table_rows is not None else is_valid)
