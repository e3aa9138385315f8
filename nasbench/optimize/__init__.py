"""Multi-objective optimizers on the benchmark: restored Syne Tune searchers, the compare runner, its report."""

from __future__ import annotations

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
from nasbench.optimize.report import write_report
from nasbench.optimize.searchers import (
    DiscreteSpace,
    LocalSearcher,
    MultiObjectiveScheduler,
    NSGA2Searcher,
    ScalarizedBOSearcher,
    TableIndex,
)

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
