"""The restored searchers and the compare runner on a tiny tabular blackbox (seconds, no torch training)."""

from __future__ import annotations

import itertools
import sys

import numpy as np
import pandas as pd
import pytest
from syne_tune.blackbox_repository.blackbox_tabular import BlackboxTabular
from syne_tune.config_space import choice, lograndint, randint

from nasbench.errors import NasBenchError
from nasbench.optimize import (METHODS, CompareSettings, DiscreteSpace, LocalSearcher, NSGA2Searcher,
                               ScalarizedBOSearcher, compare, make_truth, run_one, write_report)
from nasbench.store import Store

CONFIG_SPACE = {"n_layers": randint(1, 5), "n_heads": choice([1, 2, 4]), "embed_dim": choice([8, 16, 32, 64])}
OBJECTIVES = ["metric_ppl", "metric_latency_ms", "metric_params", "metric_acc", "metric_cost_s"]


def _table(n_rows: int = 40) -> pd.DataFrame:
    """Synthetic test table: a trade-off between a quality and a size, with some noise; not benchmark data."""
    rng = np.random.default_rng(0)
    grid = list(itertools.product(range(1, 6), [1, 2, 4], [8, 16, 32, 64]))
    picked = [grid[i] for i in sorted(rng.choice(len(grid), n_rows, replace=False))]
    df = pd.DataFrame(picked, columns=["n_layers", "n_heads", "embed_dim"])
    size = df.n_layers * df.embed_dim * (1 + df.n_heads / 4)
    df["arch_id"] = [f"arch{i:03d}" for i in range(n_rows)]
    df["metric_params"] = size * 1000.0
    df["metric_latency_ms"] = 1.0 + df.n_layers * 2.0 + df.n_heads * 0.5 + rng.random(n_rows)
    df["metric_ppl"] = np.exp(8.0 - np.log(size) + rng.random(n_rows))
    df["metric_acc"] = 1.0 - 1.0 / np.log(size + 2.0)
    df["metric_cost_s"] = 10.0 + size / 10.0
    return df


def _blackbox(df: pd.DataFrame) -> BlackboxTabular:
    hp = df[list(CONFIG_SPACE)].astype(int).reset_index(drop=True)
    values = df[OBJECTIVES].to_numpy(float)[:, None, None, :]
    return BlackboxTabular(hyperparameters=hp, configuration_space=CONFIG_SPACE,
                           fidelity_space={"step": randint(1, 1)}, objectives_evaluations=values,
                           fidelity_values=np.array([1]), objectives_names=OBJECTIVES)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return _table()


def _settings(**kw) -> CompareSettings:
    base = dict(space="tiny", objectives=("ppl", "latency_ms"), seeds=(0,), max_evals=12, mode="table")
    base.update(kw)
    return CompareSettings(**base)


@pytest.mark.parametrize("method", list(METHODS))
def test_method_runs_seeded_on_table(method: str, table: pd.DataFrame) -> None:
    settings = _settings(methods=(method,), method_options=(("ehvi", '{"num_init_random": 6}'),))
    truth = make_truth(settings, CONFIG_SPACE, table)
    first = run_one(_blackbox(table), settings, method, 3, truth)
    again = run_one(_blackbox(table), settings, method, 3, truth)
    ids = [t["arch_id"] for t in first.traces]
    assert len(ids) == 12 and len(set(ids)) == 12, "table mode evaluates distinct profiled archs"
    assert set(ids) <= set(table["arch_id"])
    assert ids == [t["arch_id"] for t in again.traces], "same seed, same trace"
    assert [t["hv"] for t in first.traces] == [t["hv"] for t in again.traces]
    hv = [t["hv"] for t in first.traces]
    assert hv == sorted(hv) and 0 < first.run["hv_norm"] <= 1
    times = [t["sim_time_s"] for t in first.traces]
    assert times == sorted(times) and times[0] > 0


def test_table_exhaustion_finds_the_whole_front(table: pd.DataFrame) -> None:
    settings = _settings(methods=("rs",), max_evals=100)
    result = run_one(_blackbox(table), settings, "rs", 0, make_truth(settings, CONFIG_SPACE, table))
    assert result.run["n_evals"] == len(table)  # a table of N archs stops the run after N evaluations
    assert result.run["hv_norm"] == pytest.approx(1.0)
    assert result.run["igd"] == pytest.approx(0.0) and result.run["front_share"] == 1.0


def test_three_objectives_and_a_maximised_one(table: pd.DataFrame) -> None:
    settings = _settings(objectives=("ppl", "latency_ms", "acc"), methods=("nsga2",), max_evals=100)
    truth = make_truth(settings, CONFIG_SPACE, table)
    assert truth.minimize == (True, True, False)
    result = run_one(_blackbox(table), settings, "nsga2", 1, truth)
    assert result.run["front_share"] == 1.0 and result.run["hv_norm"] == pytest.approx(1.0)


def _drive(searcher, steps: int, seed: int = 0) -> list[dict]:
    """Ask/tell loop on a synthetic two-objective function over CONFIG_SPACE."""
    configs = []
    for trial_id in range(steps):
        config = searcher.suggest()
        configs.append(config)
        size = config["n_layers"] * config["embed_dim"] * (1 + config["n_heads"] / 4)
        searcher.on_trial_complete(trial_id, config, [1.0 / size, size + config["n_heads"]])
    return configs


@pytest.mark.parametrize("make", [lambda s: NSGA2Searcher(CONFIG_SPACE, population_size=6, random_seed=s),
                                  lambda s: LocalSearcher(CONFIG_SPACE, random_seed=s),
                                  lambda s: ScalarizedBOSearcher(CONFIG_SPACE, "random", random_seed=s),
                                  lambda s: ScalarizedBOSearcher(CONFIG_SPACE, "linear", random_seed=s)],
                         ids=["nsga2", "ls", "rsbo", "lsbo"])
def test_searchers_produce_valid_seeded_configs(make) -> None:
    space = DiscreteSpace(CONFIG_SPACE)
    configs = _drive(make(5), 30)
    for c in configs:
        assert set(c) == set(CONFIG_SPACE)
        space.positions(c)  # raises for a value outside the space
    assert len({space.key(c) for c in configs}) >= 25, "searchers avoid re-suggesting seen configs"
    assert configs == _drive(make(5), 30)
    assert configs != _drive(make(6), 30)


def test_local_search_moves_one_step() -> None:
    ls = LocalSearcher(CONFIG_SPACE, random_seed=0)
    configs = _drive(ls, 10)
    space = DiscreteSpace(CONFIG_SPACE)
    steps = [np.abs(space.positions(c) - space.positions(p)).sum() for c, p in zip(configs[1:], configs[:-1])]
    assert all(s >= 1 for s in steps)
    # Every suggestion after the first is a one-step neighbour of some earlier config.
    for i, c in enumerate(configs[1:], start=1):
        assert any(np.abs(space.positions(c) - space.positions(p)).sum() == 1 for p in configs[:i])


def test_discrete_space_sampling_keeps_log_distribution() -> None:
    space = DiscreteSpace({"x": lograndint(1, 1000), "y": choice([3, 1, 2]), "fixed": 7})
    assert space.names == ["x", "y"] and space.values[1] == [1, 2, 3]
    xs = np.array([c["x"] for c in space.sample_many(np.random.RandomState(0), 2000)])
    assert (xs < 32).mean() > 0.4  # uniform on [1, 1000] would put ~3 % there
    with pytest.raises(NasBenchError, match="discrete"):
        from syne_tune.config_space import uniform
        DiscreteSpace({"lr": uniform(0.0, 1.0)})


def test_compare_writes_db_and_resumes(tmp_path, table: pd.DataFrame, monkeypatch) -> None:
    db = tmp_path / "runs.duckdb"
    settings = _settings(methods=("rs", "ls"), seeds=(0, 1), max_evals=8)
    runs = compare(_blackbox(table), settings, db, true_table=table, progress=False)
    assert len(runs) == 4 and (runs["n_evals"] == 8).all()
    with Store(db) as store:
        assert store.con.execute("SELECT count(*) FROM run_traces").fetchone()[0] == 32
    compare_module = sys.modules["nasbench.optimize.compare"]  # the package re-exports a function of that name

    def fail(*args, **kwargs):
        raise AssertionError("a finished run was rerun")

    monkeypatch.setattr(compare_module, "run_one", fail)
    again = compare(_blackbox(table), settings, db, true_table=table, progress=False)
    assert sorted(again["run_id"]) == sorted(runs["run_id"])
    written = write_report(db, "tiny", ["ppl", "latency_ms"], tmp_path / "report")
    assert {p.name for p in written} == {"hv_vs_time.png", "hv_vs_evals.png", "fronts.png", "hv_table.csv",
                                         "hv_table.md"}
    assert "| rs |" in (tmp_path / "report" / "hv_table.md").read_text()


def test_settings_errors() -> None:
    with pytest.raises(NasBenchError, match="^methods: "):
        _settings(methods=("moasha",))
    with pytest.raises(NasBenchError, match="^mode: "):
        _settings(mode="grid")
    with pytest.raises(NasBenchError, match="two objectives"):
        _settings(objectives=("ppl",))
