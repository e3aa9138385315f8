"""Multi-objective optimizers on the benchmark: restored Syne Tune searchers, the compare runner, its report."""

from __future__ import annotations

from nasbench.lazy import lazy_getattr
from nasbench.optimize._tables import write_report
from nasbench.optimize.compare import (
    CompareSettings,
    RunResult,
    bench_compare,
    compare,
    make_truth,
    measured_table,
    run_one,
)
from nasbench.optimize.methods import METHODS, make_scheduler

# the searchers subclass Syne Tune's classes: they load on first use, so the CLI's parser reads METHODS and
# CompareSettings without Syne Tune
__getattr__ = lazy_getattr(__name__, dict.fromkeys(("DiscreteSpace", "LocalSearcher", "MultiObjectiveScheduler",
                                                     "NSGA2Searcher", "ScalarizedBOSearcher", "TableIndex"),
                                                    "nasbench.optimize.searchers"))


__all__ = [
    "METHODS",
    "CompareSettings",
    "DiscreteSpace",
    "LocalSearcher",
    "MultiObjectiveScheduler",
    "NSGA2Searcher",
    "RunResult",
    "ScalarizedBOSearcher",
    "TableIndex",
    "bench_compare",
    "compare",
    "make_scheduler",
    "make_truth",
    "measured_table",
    "run_one",
    "write_report",
]
