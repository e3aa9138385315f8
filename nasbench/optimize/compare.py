"""Run methods x seeds in Syne Tune's simulator on a benchmark blackbox; trace HV, IGD and front share into DuckDB.

Each run is one ``Tuner`` over ``UserBlackboxBackend`` with ``SimulatorCallback`` and ``sleep_time=0``: simulated
time advances by each evaluation's ``metric_cost_s``, real time only by the optimizer's own work. Syne Tune's
per-trial output (its logger, its printed tables and the files it writes per tuning job) is silenced; one tqdm bar
counts runs.

Quality is measured in one space shared by all methods and seeds (:class:`Truth`): objectives minimised, perplexity
as ln(ppl), then scaled so that the true table's front runs from 0 (ideal) to 1 (nadir) in each objective; the
hypervolume reference point is 1.1 in every objective, so points far behind the front add nothing. In table mode the
true front of the table gives ``hv_norm`` (HV / HV of the true front), IGD to it, and the share of its archs found;
in surrogate mode the whole space is searchable and no true front exists, so those three stay NULL and only ``hv``
is traced.

With ``noise`` (``nasbench compare --noise``) the searchers see realistic readings instead of medians: every
evaluation draws its latencies from their stored spread (``BenchmarkBlackbox(noise=True)``, re-seeded with the run's
seed, so a run is reproducible), and each evaluated arch is still scored by its noise-free values.

Runs are resumable: a run's id hashes everything that determines it (space, supernet, mode, method, seed,
objectives, budgets, workers, method options, noise and a fingerprint of the true table), and ids already in
``runs`` are skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import random
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import multiprocessing
import numpy as np

from nasbench.errors import NasBenchError
from nasbench.optimize.methods import METHODS, make_scheduler
from nasbench.optimize.truth import (COST_METRIC, REF_POINT, CompareSettings, Truth, make_truth,
                                     measured_table)
from nasbench.pareto import hypervolume, non_dominated_mask

__all__ = ["COST_METRIC", "REF_POINT", "CompareSettings", "RunResult", "Truth", "make_truth", "run_id", "run_one",
           "measured_table", "compare", "bench_compare"]

logger = logging.getLogger(__name__)

_TICK_S = 0.5
"""Simulated seconds per Tuner loop iteration: a result is seen (and the next trial starts) at the first tick after
it finishes. Syne Tune's default of 5 s added ~2 s to every ~2.7 s evaluation of the SmolLM2 benchmark (sim time
+85%); 0.5 s adds ~7% and is also faster in wall time (1.9 s vs 2.7 s per 1,000 evaluations); 0.1 s adds ~0% but
takes 5.7 s."""


@dataclass
class RunResult:
    """One finished run: the ``runs`` row and its per-evaluation ``run_traces`` rows."""

    run: dict[str, Any]
    traces: list[dict[str, Any]]


def run_id(settings: CompareSettings, method: str, seed: int, fingerprint: str) -> str:
    key = {"space": settings.space, "supernet_id": settings.supernet_id, "mode": settings.mode, "method": method,
           "seed": seed, "objectives": list(settings.objectives), "max_evals": settings.evals_for(method),
           "max_sim_time_s": settings.max_sim_time_s, "workers": settings.workers,
           "options": settings.options_for(method), "table": fingerprint}
    if settings.noise:  # only then: the ids of the noise-free runs stay what they were
        key["noise"] = True
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _quiet_syne_tune(tmp: str) -> Iterator[None]:
    """Silence Syne Tune for one run: loggers, printed tables, and its tuner folder redirected to ``tmp``."""
    names = ["syne_tune", "botorch", "gpytorch", "linear_operator"]
    levels = {n: logging.getLogger(n).level for n in names}
    old_folder = os.environ.get("SYNETUNE_FOLDER")
    os.environ["SYNETUNE_FOLDER"] = tmp
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)
        if old_folder is None:
            os.environ.pop("SYNETUNE_FOLDER", None)
        else:
            os.environ["SYNETUNE_FOLDER"] = old_folder


@contextlib.contextmanager
def _float64(enabled: bool) -> Iterator[None]:
    """EHVI's BoTorch GP needs double precision; restore the caller's default afterwards."""
    if not enabled:
        yield
        return
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _seed_everything(seed: int) -> None:
    # Syne Tune 0.16 samples random configs from the global numpy RNG (``Domain.sample()`` without a state) and
    # the simulator backend draws from it too, so the run is reproducible only with the global RNG seeded.
    np.random.seed(seed)
    random.seed(seed)


def run_one(blackbox: Any, settings: CompareSettings, method: str, seed: int, truth: Truth,
            config_space: dict[str, Any] | None = None,
            arch_id_of: Callable[[dict[str, Any]], str] | None = None) -> RunResult:
    """Run ``method`` with ``seed`` on ``blackbox`` and compute its traces (no DB access)."""
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend

    config_space = dict(config_space if config_space is not None else blackbox.configuration_space)
    metrics, minimize = settings.metrics, settings.minimize
    missing = [m for m in metrics + [COST_METRIC] if m not in blackbox.objectives_names]
    if missing:
        raise NasBenchError("blackbox", f"lacks objectives; has {blackbox.objectives_names}", missing)
    max_evals = settings.evals_for(method)
    if settings.noise != bool(getattr(blackbox, "noise", False)):
        raise NasBenchError("noise", "the settings and the blackbox must agree on noise (BenchmarkBlackbox(noise=...))",
                            settings.noise)
    if settings.noise:
        blackbox.reseed(seed)  # this run's readings: evaluation k draws with (seed, k)
    _seed_everything(seed)
    scheduler = make_scheduler(method, config_space, metrics, ["min" if m else "max" for m in minimize], seed,
                               table_rows=truth.rows if settings.mode == "table" else None,
                               is_valid=getattr(blackbox, "is_valid", None),
                               **settings.options_for(method))
    backend = UserBlackboxBackend(blackbox=blackbox, elapsed_time_attr=COST_METRIC, tuner_sleep_time=_TICK_S)
    stop = StoppingCriterion(max_num_trials_completed=max_evals, max_wallclock_time=settings.max_sim_time_s)
    callback = SimulatorCallback()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nasbench-tuner-") as tmp, _quiet_syne_tune(tmp), \
            _float64(method == "ehvi"):
        tuner = Tuner(trial_backend=backend, scheduler=scheduler, stop_criterion=stop, n_workers=settings.workers,
                      sleep_time=0, callbacks=[callback], results_update_interval=1e9, print_update_interval=1e9,
                      save_tuner=False, tuner_name=f"{method}-{seed}",
                      output_logger=_silent_logger())
        tuner.run()
        results = callback.dataframe()
    wall = time.perf_counter() - start
    results = results.sort_values(["st_tuner_time", "trial_id"], kind="stable").drop_duplicates("trial_id")
    results = results.head(max_evals).reset_index(drop=True)
    if settings.max_sim_time_s is not None:
        results = results[results["st_tuner_time"] <= settings.max_sim_time_s].reset_index(drop=True)
    names = [k for k in config_space if f"config_{k}" in results.columns]
    configs = [{n: row[f"config_{n}"] for n in names} for _, row in results.iterrows()]
    expected = None
    if settings.noise and configs:  # scored by what was found, not by the reading the searcher happened to see
        columns = list(blackbox.objectives_names)
        expected = np.array([blackbox.expected(c)[[columns.index(m) for m in metrics]] for c in configs])
    traces = _traces(results, configs, settings, truth, config_space, arch_id_of, expected)
    last = traces[-1] if traces else {}
    final_front = [t["arch_id"] for t, keep in zip(traces, _front_mask(traces, settings, truth)) if keep]
    rid = run_id(settings, method, seed, truth.fingerprint)
    run = {
        "run_id": rid, "space": settings.space, "supernet_id": settings.supernet_id, "mode": settings.mode,
        "method": method, "seed": seed, "objectives": ",".join(settings.objectives), "max_evals": max_evals,
        "max_sim_time_s": settings.max_sim_time_s, "workers": settings.workers, "n_evals": len(traces),
        "sim_time_s": float(last.get("sim_time_s", 0.0)), "wall_time_s": wall, "hv": last.get("hv"),
        "hv_norm": last.get("hv_norm"), "igd": last.get("igd"), "front_share": last.get("front_share"),
        "config": json.dumps({
            "description": METHODS[method], "options": settings.options_for(method),
            "lower": truth.lower.tolist(), "upper": truth.upper.tolist(), "ref_point": REF_POINT,
            "true_hv": truth.hv, "true_front_size": len(truth.front_ids) or None, "table": truth.fingerprint,
            "final_front": final_front, **({"noise": True} if settings.noise else {}),
        }),
        "created_at": datetime.now(timezone.utc).replace(tzinfo=None),
    }
    return RunResult(run=run, traces=[{"run_id": rid, **t} for t in traces])


def _silent_logger() -> Any:
    """A ``TunerLogger`` whose every ``print_*`` method is a no-op (the Tuner's emoji status lines)."""
    from syne_tune.tuner_logger import TunerLogger

    quiet = {name: (lambda self, *args, **kwargs: None) for name in dir(TunerLogger) if name.startswith("print")}
    return type("SilentTunerLogger", (TunerLogger,), quiet)(use_colors=False, use_emojis=False)


def _front_mask(traces: list[dict[str, Any]], settings: CompareSettings, truth: Truth) -> np.ndarray:
    if not traces:
        return np.zeros(0, dtype=bool)
    Y = np.array([[json.loads(t["objectives"])[m] for m in settings.metrics] for t in traces])
    return non_dominated_mask(Y, settings.minimize)


def _traces(results: Any, configs: list[dict[str, Any]], settings: CompareSettings, truth: Truth,
            config_space: dict[str, Any], arch_id_of: Callable[[dict[str, Any]], str] | None,
            expected: np.ndarray | None = None) -> list[dict]:
    """One trace row per evaluation. ``expected``: the evaluations' noise-free objective values (a noisy run): the
    traces score those, and each row's ``objectives`` keeps the reading the searcher saw under ``observed``."""
    from syne_tune.config_space import Domain

    if results.empty:
        return []
    metrics = settings.metrics
    observed = results[metrics].to_numpy(dtype=float)
    Y = observed if expected is None else expected
    F = truth.normalize(Y)
    ref = np.full(len(metrics), REF_POINT)
    dims = [k for k, v in config_space.items() if isinstance(v, Domain)]
    table_mode = settings.mode == "table"
    out = []
    hv = 0.0
    front: np.ndarray = np.zeros((0, len(metrics)))
    nearest = np.full(len(truth.front), np.inf) if table_mode else None
    found: set[str] = set()
    for e in range(len(F)):
        y = F[e]
        # The front only changes (and HV only grows) when the new point is not weakly dominated by it.
        if not ((front <= y).all(axis=1)).any():
            keep = ~((y <= front).all(axis=1) & (y < front).any(axis=1))
            front = np.vstack([front[keep], y])
            hv = hypervolume(front, ref, True)
        config = configs[e]
        if table_mode:
            aid = truth.arch_ids.get(tuple(int(config[n]) for n in dims))
        elif arch_id_of is not None:
            aid = arch_id_of(config)
        else:
            from nasbench.space import arch_id

            aid = arch_id({k: int(v) for k, v in config.items()})
        row = {"eval": e + 1, "sim_time_s": float(results["st_tuner_time"].iloc[e]), "arch_id": aid,
               "objectives": json.dumps({**{m: float(v) for m, v in zip(metrics, Y[e])},
                                         **({} if expected is None else
                                            {"observed": {m: float(v) for m, v in zip(metrics, observed[e])}})}),
               "hv": hv,
               "hv_norm": None, "igd": None, "front_share": None}
        if table_mode:
            nearest = np.minimum(nearest, np.sqrt(((truth.front - y) ** 2).sum(axis=1)))
            if aid in truth.front_ids:
                found.add(aid)
            row.update(hv_norm=hv / truth.hv if truth.hv else None, igd=float(nearest.mean()),
                       front_share=len(found) / len(truth.front_ids))
        out.append(row)
    return out


# ------------------------------------------------------------------------------------------------------ driver
# Set in the parent before forking workers, so the blackbox is inherited instead of pickled.
_JOB: dict[str, Any] = {}


def _work(task: tuple[str, int]) -> RunResult:
    method, seed = task
    if _JOB.get("processes", 1) > 1:
        # forked runs share the cores: one thread each (torch's default pool per process oversubscribes them and made
        # EHVI's GP fits 10x slower)
        import torch

        torch.set_num_threads(1)
    return run_one(_JOB["blackbox"], _JOB["settings"], method, seed, _JOB["truth"], _JOB["config_space"],
                   _JOB["arch_id_of"])


def _write(store: Any, result: RunResult) -> None:
    from nasbench.store.runs import write_run

    write_run(store, result.run, result.traces)


def compare(blackbox: Any, settings: CompareSettings, db: str | Path, true_table: Any = None,
            config_space: dict[str, Any] | None = None,
            bounds: tuple[Sequence[float], Sequence[float]] | None = None,
            arch_id_of: Callable[[dict[str, Any]], str] | None = None, processes: int = 1,
            progress: bool = True) -> Any:
    """Run every (method, seed) of ``settings`` not yet in ``db``; return their ``runs`` rows as a DataFrame.

    :param blackbox: a Syne Tune ``Blackbox`` whose objectives include ``metric_<o>`` and ``metric_cost_s``.
    :param true_table: measured rows (``arch_id``, dimension columns, ``metric_<o>``): the profiled archs in table
        mode, normalisation bounds in both modes.
    :param config_space: the searchers' space (default: the blackbox's).
    :param arch_id_of: surrogate mode: config -> arch_id (default: hash of the config as an arch).
    :param processes: runs in parallel processes (forked; each run stays single-threaded and seeded).
    """
    from tqdm.auto import tqdm

    from nasbench.store import Store
    from nasbench.store.runs import done_runs, runs_by_id

    config_space = dict(config_space if config_space is not None else blackbox.configuration_space)
    truth = make_truth(settings, config_space, true_table, bounds)
    tasks = [(m, s) for m in settings.methods for s in settings.seeds]
    with Store(db) as store:
        ids = {run_id(settings, m, s, truth.fingerprint): (m, s) for m, s in tasks}
        done = done_runs(store, list(ids))
        todo = [ids[r] for r in ids if r not in done]
        bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc="runs", unit="run", disable=not progress)
        _JOB.update(blackbox=blackbox, settings=settings, truth=truth, config_space=config_space,
                    arch_id_of=arch_id_of, processes=processes)
        try:
            if processes > 1 and len(todo) > 1:
                ctx = multiprocessing.get_context("fork")
                with ProcessPoolExecutor(max_workers=processes, mp_context=ctx) as pool:
                    for result in pool.map(_work, todo):
                        _write(store, result)
                        bar.update(1)
            else:
                for task in todo:
                    _write(store, _work(task))
                    bar.update(1)
        finally:
            _JOB.clear()
            bar.close()
        return runs_by_id(store, list(ids))


def bench_compare(db: str | Path, space: str, objectives: Sequence[str] = ("ppl", "latency_ms"),
                  mode: str = "surrogate", seeds: int = 10, max_evals: int = 1000, ehvi_max_evals: int = 100,
                  processes: int = 2, methods: Sequence[str] = tuple(METHODS), blackbox: Any = None,
                  true_table: Any = None, supernet_id: str | None = None,
                  out_db: str | Path | None = None) -> dict[str, Any]:
    """The full comparison, timed: 7 methods x ``seeds`` x ``max_evals`` (EHVI capped at ``ehvi_max_evals``).

    Runs into a fresh temporary DB (so nothing is skipped) unless ``out_db`` is given. ``blackbox``/``true_table``
    default to the benchmark's (``Benchmark.open(db, space).blackbox(objectives, mode)`` and its measured rows).
    MOASHA is not among the methods: the blackbox has one dummy fidelity, so it would be random search.
    """
    arch_id_of = None
    if blackbox is None:
        from nasbench.surrogate import Benchmark  # the surrogate stage; imported only for the default blackbox

        bm = Benchmark.open(db, space, supernet_id)
        blackbox = bm.blackbox(list(objectives), mode=mode)
        supernet_id, space = bm.supernet_id, bm.space.name
        arch_id_of = blackbox.arch_id_of
        if true_table is None:
            true_table = blackbox.table
    if true_table is None:
        true_table = measured_table(db, space, supernet_id)
    settings = CompareSettings(space=space, objectives=tuple(objectives), methods=tuple(methods),
                               seeds=tuple(range(seeds)), max_evals=max_evals, mode=mode, supernet_id=supernet_id,
                               method_max_evals=(("ehvi", ehvi_max_evals),))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nasbench-bench-") as tmp:
        target = Path(out_db) if out_db is not None else Path(tmp) / "compare.duckdb"
        runs = compare(blackbox, settings, target, true_table=true_table, arch_id_of=arch_id_of,
                       processes=processes, progress=True)
    seconds = time.perf_counter() - start
    return {"bench": "compare", "seconds": round(seconds, 2), "runs": int(len(runs)),
            "evals": int(runs["n_evals"].sum()), "methods": list(methods), "seeds": seeds, "max_evals": max_evals,
            "ehvi_max_evals": ehvi_max_evals, "mode": mode, "processes": processes,
            "moasha": "left out: one dummy fidelity, successive halving would be random search"}
