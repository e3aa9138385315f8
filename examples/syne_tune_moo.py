"""Multi-objective NAS on the published benchmark with Syne Tune alone: MOREA on perplexity and latency.

    python examples/syne_tune_moo.py results/published/smollm2-135m                  # the table: measured archs
    python examples/syne_tune_moo.py results/published/smollm2-135m --surrogate      # every valid arch, 1-NN
    python examples/syne_tune_moo.py DIR --supernet smollm2-135m-recovery-1 --trials 200 --seed 3

What it uses of the publication (``nasbench publish``), as shipped:

* the blackbox of one supernet's ``ppl`` objective set, read with Syne Tune's own ``deserialize``
  (``syne_tune/<space>/<supernet>/ppl``; default: the main supernet the card names). Every objective is measured on
  every row, so nothing is NaN, and ``metric_cost_s`` (what measuring a row's objectives took, without the accuracy
  pass) is the simulator's elapsed time (``metric_elapsed_time`` in ``metadata.json``);
* the validity check ``metadata.json`` documents under ``constraints``: Syne Tune draws each dimension
  independently, and most draws are not archs of the space (2 heads cannot form 3 kv groups; a sub-network under
  ``min_params`` is not in the space) or were never measured. MOREA here proposes only valid configs: the blackbox's
  own rows (``BlackboxTabular.all_configurations()``), or with ``--surrogate`` the rows of ``valid_configs.parquet``
  (every valid arch of the space) answered by Syne Tune's ``add_surrogate`` with a 1-nearest-neighbour model.

Prints one line per evaluated arch on the final front and, last, a JSON summary (trials, simulated seconds, front).
Needs only Syne Tune (0.16), pandas and numpy; nasbench itself is not imported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

OBJECTIVES = ("metric_ppl", "metric_latency_ms")


def load(publication: Path, supernet: str | None, objective_set: str = "ppl") -> tuple[Any, dict[str, Any], Path]:
    """(blackbox, its metadata, its directory) of ``supernet`` (default: the card's main supernet)."""
    import warnings

    from syne_tune.blackbox_repository.blackbox_tabular import deserialize

    card = json.loads((publication / "croissant.json").read_text(encoding="utf-8"))
    entries = [e for e in card["nasbench"]["syne_tune"] if e["objective_set"] == objective_set
               and (e["supernet_id"] == supernet if supernet else e["main"])]
    if not entries:
        known = sorted({e["supernet_id"] for e in card["nasbench"]["syne_tune"]})
        sys.exit(f"syne_tune_moo: error: --supernet: no '{objective_set}' blackbox of {supernet or 'the main supernet'}"
                 f" in {publication} (one of {', '.join(known)})")
    path = publication / entries[0]["path"]
    with warnings.catch_warnings():  # pandas notes the fastparquet engine Syne Tune 0.16 reads with
        warnings.simplefilter("ignore")
        blackbox = deserialize(str(path))[entries[0]["supernet_id"]]
    return blackbox, json.loads((path / "metadata.json").read_text(encoding="utf-8")), path


def make_searcher(config_space: dict[str, Any], valid: Sequence[dict[str, Any]], seed: int) -> Any:
    """MOREA (Syne Tune's MultiObjectiveRegularizedEvolution) that proposes configs of ``valid`` only: a random
    member while the population fills, then mutations of a tournament's winner, each redrawn until it is valid (a
    random member after ``tries`` failures)."""
    from syne_tune.config_space import non_constant_hyperparameter_keys
    from syne_tune.optimizer.schedulers.multiobjective import MultiObjectiveRegularizedEvolution
    from syne_tune.optimizer.schedulers.searchers.regularized_evolution import mutate_config

    keys = non_constant_hyperparameter_keys(config_space)

    class ValidMOREA(MultiObjectiveRegularizedEvolution):
        tries = 200

        def __init__(self) -> None:
            super().__init__(config_space, population_size=20, sample_size=5, random_seed=seed)
            self.valid = [{k: int(c[k]) for k in keys} for c in valid]
            self.keys = {tuple(c[k] for k in keys) for c in self.valid}

        def _random_valid(self) -> dict[str, Any]:
            return dict(self.valid[self.random_state.randint(len(self.valid))])

        def suggest(self, **kwargs: Any) -> dict[str, Any] | None:
            initial = self._next_points_to_evaluate()
            if initial is not None:
                return initial
            if len(self.population) < self.population_size:
                return self._random_valid()
            candidates = self.random_state.choice(list(self.population), size=self.sample_size)
            parent = min(candidates, key=lambda element: element.score)
            for _ in range(self.tries):
                child = mutate_config(parent.config, config_space=self.config_space, rng=self.random_state)
                if tuple(int(child[k]) for k in keys) in self.keys:
                    return child
            return self._random_valid()

    return ValidMOREA()


def run(publication: Path, supernet: str | None = None, trials: int = 100, seed: int = 0,
        surrogate: bool = False) -> dict[str, Any]:
    """MOREA for ``trials`` evaluations in Syne Tune's simulator; returns the summary (and every evaluation)."""
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend
    from syne_tune.optimizer.schedulers.single_fidelity_scheduler import SingleFidelityScheduler

    blackbox, metadata, path = load(publication, supernet)
    config_space = blackbox.configuration_space
    if surrogate:  # every valid arch of the space, answered by Syne Tune's 1-NN surrogate of the measured ones
        from sklearn.neighbors import KNeighborsRegressor
        from syne_tune.blackbox_repository import add_surrogate

        valid = pd.read_parquet(path / metadata["constraints"]["valid_configs"]).to_dict("records")
        blackbox = add_surrogate(blackbox, surrogate=KNeighborsRegressor(n_neighbors=1))
    else:  # the measured archs: what the table answers
        valid = blackbox.all_configurations()
    np.random.seed(seed)  # Syne Tune 0.16's simulator draws from numpy's global generator
    scheduler = SingleFidelityScheduler(config_space, metrics=list(OBJECTIVES), do_minimize=True, random_seed=seed,
                                        searcher=make_searcher(config_space, valid, seed))
    backend = UserBlackboxBackend(blackbox=blackbox, elapsed_time_attr=metadata["metric_elapsed_time"])
    callback = SimulatorCallback()
    tuner = Tuner(trial_backend=backend, scheduler=scheduler,
                  stop_criterion=StoppingCriterion(max_num_trials_completed=trials), n_workers=1, sleep_time=0,
                  callbacks=[callback], save_tuner=False, tuner_name=f"nasbench-morea-{seed}",
                  results_update_interval=1e9, print_update_interval=1e9)
    tuner.run()
    results = callback.dataframe().drop_duplicates("trial_id").sort_values("trial_id").head(trials)
    keys = list(config_space)
    evaluated = [{"config": {k: int(row[f"config_{k}"]) for k in keys},
                  **{o: float(row[o]) for o in OBJECTIVES}} for _, row in results.iterrows()]
    front = _front(evaluated)
    return {"blackbox": path.relative_to(publication).as_posix(), "supernet_id": metadata["supernet_id"],
            "surrogate": surrogate, "trials": len(evaluated), "sim_time_s": float(results["st_tuner_time"].max()),
            "front": front, "evaluated": evaluated}


def _front(evaluated: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The evaluated archs no other evaluated arch beats on both objectives, by perplexity (duplicates once)."""
    unique = {json.dumps(e["config"], sort_keys=True): e for e in evaluated}
    points = list(unique.values())
    y = np.array([[p[o] for o in OBJECTIVES] for p in points])
    keep = [i for i in range(len(points)) if not any((y[j] <= y[i]).all() and (y[j] < y[i]).any()
                                                      for j in range(len(points)))]
    return sorted((points[i] for i in keep), key=lambda p: p[OBJECTIVES[0]])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("publication", type=Path, help="a `nasbench publish` directory")
    parser.add_argument("--supernet", help="default: the main supernet the card names")
    parser.add_argument("--trials", type=int, default=100, help="evaluations (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--surrogate", action="store_true",
                        help="search every valid arch of the space (1-NN surrogate) instead of the measured ones")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error(f"--trials: must be >= 1 (got {args.trials})")
    summary = run(args.publication, args.supernet, args.trials, args.seed, args.surrogate)
    for point in summary["front"]:
        print(f"ppl {point['metric_ppl']:9.3f}  latency {point['metric_latency_ms']:7.2f} ms  {point['config']}")
    print(json.dumps({k: v for k, v in summary.items() if k != "evaluated"}))
    return summary


if __name__ == "__main__":
    main()
