"""The scheduler that drives every searcher: it flips maximised metrics so searchers always minimise, and in table
mode projects each suggestion onto the nearest profiled arch not suggested yet (a table of N archs supports at most N
distinct evaluations; then it returns ``None`` and the Tuner stops)."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from syne_tune.backend.trial_status import Trial
from syne_tune.config_space import cast_config_values, postprocess_config, remove_constant_and_cast
from syne_tune.optimizer.scheduler import TrialSuggestion
from syne_tune.optimizer.schedulers.searchers.searcher import BaseSearcher
from syne_tune.optimizer.schedulers.single_fidelity_scheduler import SingleFidelityScheduler

from nasbench.errors import NasBenchError
from nasbench.optimize.discrete import DiscreteSpace, TableIndex, nearest_valid


__all__ = ["MultiObjectiveScheduler"]


# ---------------------------------------------------------------------------------------------------- scheduler
class MultiObjectiveScheduler(SingleFidelityScheduler):
    """``SingleFidelityScheduler`` with one mode per metric and optional table projection.

    :param config_space: the full config space (constants included), as given to the backend.
    :param metrics: result keys of the objectives.
    :param modes: ``"min"`` or ``"max"`` per metric; searchers always receive minimised values.
    :param searcher: any 0.16 multi-objective ``BaseSearcher`` (ours or Syne Tune's).
    :param table_rows: table mode: the profiled archs as configs; suggestions are projected onto them.
    :param log_metrics: metrics handed to the searcher as their natural log (must be positive).
    :param is_valid: whole-space mode: the space's structural rules. Syne Tune's domains are independent, so a
        suggestion may not be a network (2 heads in 3 kv groups); it is repaired to the nearest valid arch, as table
        mode projects onto the nearest profiled one, and the searcher is told what was evaluated.
    """

    def __init__(self, config_space: dict[str, Any], metrics: list[str], modes: list[str], searcher: BaseSearcher,
                 random_seed: int, table_rows: Sequence[dict[str, Any]] | None = None,
                 log_metrics: Sequence[str] = (),
                 is_valid: Callable[[dict[str, Any]], bool] | None = None) -> None:
        if len(modes) != len(metrics) or any(m not in ("min", "max") for m in modes):
            raise NasBenchError("modes", "need 'min' or 'max' for each metric", list(modes))
        super().__init__(config_space=config_space, metrics=list(metrics), do_minimize=True, searcher=searcher,
                         random_seed=random_seed)
        self.modes = list(modes)
        self._signs = [1.0 if m == "min" else -1.0 for m in modes]
        self._log = [name in set(log_metrics) for name in metrics]
        self.space = DiscreteSpace(config_space)
        self.table = TableIndex(self.space, table_rows) if table_rows is not None else None
        self.is_valid = is_valid

    def suggest(self) -> TrialSuggestion | None:
        config = self.searcher.suggest()
        if config is None:
            return None
        if self.table is not None:
            config = self.table.project(cast_config_values(config, self.config_space))
            if config is None:
                return None
            if hasattr(self.searcher, "replace_last_suggestion"):
                # EHVI keeps its own copy of each suggestion as GP input; it must be the arch actually evaluated.
                self.searcher.replace_last_suggestion(config)
        elif self.is_valid is not None:
            full = cast_config_values(config, self.config_space)
            repaired = nearest_valid(self.space, full, lambda c: self.is_valid({**self.config_space, **c}))
            if repaired is not full:
                config = repaired
                if hasattr(self.searcher, "replace_last_suggestion"):
                    self.searcher.replace_last_suggestion(config)
        config = cast_config_values(config, self.config_space)
        return TrialSuggestion.start_suggestion(postprocess_config(config, self.config_space))

    def _metrics(self, result: dict[str, Any]) -> list[float]:
        values = []
        for name, sign, log in zip(self.metrics, self._signs, self._log):
            value = float(result[name])
            if log:
                if value <= 0:
                    raise NasBenchError(name, "a log-scaled metric must be positive", value)
                value = math.log(value)
            values.append(value * sign)
        return values

    def on_trial_result(self, trial: Trial, result: dict[str, Any]) -> str:
        config = remove_constant_and_cast(trial.config, self.config_space)
        self.searcher.on_trial_result(trial.trial_id, config, self._metrics(result))
        return "CONTINUE"

    def on_trial_complete(self, trial: Trial, result: dict[str, Any]) -> None:
        config = remove_constant_and_cast(trial.config, self.config_space)
        self.searcher.on_trial_complete(trial.trial_id, config, self._metrics(result))

    def metric_mode(self) -> str:
        # Syne Tune's end-of-run summary only understands one mode (for the first metric).
        return self.modes[0]
