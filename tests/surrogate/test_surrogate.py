"""Surrogates and the Benchmark API on a synthetic benchmark DB: cards, cache, queries, the Syne Tune blackbox."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nasbench.cli import main
from nasbench.errors import IllegalSubNetworkError, NasBenchError
from nasbench.space import arch_id, load_space
from nasbench.store import Measurement, Store
from nasbench.surrogate import Benchmark
from nasbench.surrogate._regressors import make_regressor

SPACE = Path(__file__).resolve().parents[2] / "spaces" / "smollm2-135m.yaml"
FAST = ("extra-trees", "gp")


def _truth(space, arch, supernet: str) -> dict[str, float]:
    """A smooth synthetic benchmark: bigger is better and slower; the trained supernet is uniformly better."""
    p = space.params(arch) / 1e6
    shift = 0.0 if supernet == "pretrained" else -1.0
    return {"ppl": float(np.exp(9.0 - p / 20.0 + shift)), "latency_ms": 20.0 + 1.5 * p + 3.0 * arch["n_layers"],
            "acc_arc_easy": 0.25 + p / 400.0, "acc_piqa": 0.5 + p / 500.0}


def _measurements(space, arch, supernet: str, rng: np.random.Generator) -> list[Measurement]:
    a, t = arch_id(arch), _truth(space, arch, supernet)
    noise = lambda: float(rng.normal(0, 0.01))  # noqa: E731
    rows = [Measurement(a, supernet, "ppl", t["ppl"] * (1 + noise()), "perplexity", device="cpu", seq_len=512,
                        cost_s=2.0 + noise()),
            Measurement(a, supernet, "acc", t["acc_arc_easy"] + noise(), "accuracy", task="arc_easy", device="cpu",
                        cost_s=4.0),
            Measurement(a, supernet, "acc_norm", t["acc_arc_easy"] - 0.05, "accuracy", task="arc_easy",
                        device="cpu", cost_s=4.0),
            Measurement(a, supernet, "acc", t["acc_piqa"] + noise(), "accuracy", task="piqa", device="cpu",
                        cost_s=5.0)]
    if supernet == "pretrained":  # latency is measured once, on the dense model, as the profiler stores it:
        # the wall clock under latency_ms (with the machine's drift) and latency_rel against a reference of 100 ms
        drift = 1.0 + float(rng.normal(0, 0.1))
        common = dict(device="cpu", dtype="bfloat16", batch=1, seq_len=128, n_repeats=10)
        rows.append(Measurement(a, supernet, "latency_ms", t["latency_ms"] * drift, "ms", spread=0.5, cost_s=1.0,
                                **common))
        rows.append(Measurement(a, supernet, "latency_rel", t["latency_ms"] / 100.0 * (1 + noise()), "x full model",
                                spread=0.004, cost_s=0.5, extra={"reference_ms": 100.0 * drift}, **common))
    return rows


@pytest.fixture(scope="module")
def bench_db(tmp_path_factory) -> tuple[Path, object, list[dict]]:
    """60 archs measured on two supernets (latency on the first only)."""
    space = load_space(SPACE)
    path = tmp_path_factory.mktemp("bench") / "bench.duckdb"
    archs = space.sample(60, seed=4)
    rng = np.random.default_rng(0)
    with Store(path) as store:
        store.add_space(space)
        for supernet in ("pretrained", "trained"):
            for arch in archs:
                store.add_results(space, arch, _measurements(space, arch, supernet, rng))
    return path, space, archs


def _open(bench_db, tmp_path, supernet="pretrained", **kw) -> Benchmark:
    path, space, _ = bench_db
    return Benchmark.open(path, space.name, supernet, cache=tmp_path / "cache", models=kw.pop("models", FAST), **kw)


def test_cards_rank_a_smooth_benchmark_well(bench_db, tmp_path) -> None:
    bm = _open(bench_db, tmp_path)
    cards = {c.metric: c for c in bm.fit(["ppl", "latency_ms", "acc_avg"])}
    assert set(cards) == {"ppl", "latency_ms", "acc_avg"}
    for card in cards.values():
        assert card.n_train + card.n_test == 60 and card.n_test == 12
        assert card.kendall_tau > 0.6, card
        assert 0.0 <= card.coverage_90 <= 1.0
        assert set(card.cv) == set(FAST)
        assert card.model in FAST
    assert cards["ppl"].transform == "log" and cards["acc_avg"].transform == "identity"
    # the other supernet ranks archs the same way: its transfer tau is high; latency is shared, so no transfer
    assert cards["ppl"].loso_kendall_tau > 0.6 and cards["ppl"].loso_n == 60
    assert cards["latency_ms"].loso_kendall_tau is None
    # every weight-free metric is shared, latency_rel too (its transfer fit used every supernet's copy of its rows)
    assert bm.fit(["latency_rel"])[0].loso_kendall_tau is None


def test_a_supernet_must_be_chosen_when_several_exist(bench_db, tmp_path) -> None:
    path, space, _ = bench_db
    with pytest.raises(NasBenchError, match="several supernets.*pretrained, trained"):
        Benchmark.open(path, space.name, cache=None)
    with pytest.raises(NasBenchError, match="must be one of pretrained, trained"):
        Benchmark.open(path, space.name, "nope", cache=None)


def test_latency_is_borrowed_by_a_supernet_without_its_own(bench_db, tmp_path) -> None:
    path, space, archs = bench_db
    trained = _open(bench_db, tmp_path, "trained")
    pretrained = _open(bench_db, tmp_path, "pretrained")
    a = trained.query(archs[:5], ["ppl", "latency_ms"], mode="table")
    b = pretrained.query(archs[:5], ["ppl", "latency_ms"], mode="table")
    np.testing.assert_array_equal(a["metric_latency_ms"], b["metric_latency_ms"])
    assert (a["metric_ppl"] < b["metric_ppl"]).all()  # the trained supernet's own perplexities


def test_table_rows_are_exact_and_unmeasured_archs_are_predicted(bench_db, tmp_path) -> None:
    path, space, archs = bench_db
    bm = _open(bench_db, tmp_path)
    measured = bm.measured().set_index("arch_id")
    out = bm.query(archs[:10], ["ppl", "acc_avg", "params", "flops"])
    assert list(out["source"]) == ["table"] * 10
    ids = [arch_id(space.canonical(a)) for a in archs[:10]]
    assert list(out["arch_id"]) == ids
    np.testing.assert_array_equal(out["metric_ppl"], measured.loc[ids, "metric_ppl"])
    assert list(out["metric_params"]) == [space.params(a) for a in archs[:10]]
    assert list(out["metric_flops"]) == [space.flops(a) for a in archs[:10]]

    new = [a for a in space.sample(200, seed=99) if arch_id(space.canonical(a)) not in measured.index][:20]
    auto = bm.query(new, ["ppl", "latency_ms"])
    assert set(auto["source"]) == {"surrogate"}
    assert auto[["metric_ppl", "metric_latency_ms"]].notna().all().all()
    table = bm.query(new, ["ppl"], mode="table")
    assert table["metric_ppl"].isna().all() and set(table["source"]) == {"missing"}
    forced = bm.query(archs[:10], ["ppl"], mode="surrogate")
    assert set(forced["source"]) == {"surrogate"}
    assert not np.array_equal(forced["metric_ppl"], out["metric_ppl"])


def test_batch_path_equals_single_path(bench_db, tmp_path) -> None:
    """Large batches go through dedup + DuckDB sha256 arch ids; small ones through Python: same answers."""
    _, space, _ = bench_db
    bm = _open(bench_db, tmp_path)
    archs = space.sample(150, seed=5)
    frame = pd.DataFrame(archs * 2)  # duplicates exercise the dedup
    batch = bm.query(frame, ["ppl", "latency_ms", "cost_s"])
    single = pd.concat([bm.query([a], ["ppl", "latency_ms", "cost_s"]) for a in archs * 2], ignore_index=True)
    assert list(batch["arch_id"]) == [arch_id(space.canonical(a)) for a in archs * 2]
    pd.testing.assert_frame_equal(batch, single)
    hp = bm.query(frame.add_prefix("hp_"), ["ppl"])  # hp_ columns are accepted too
    np.testing.assert_array_equal(hp["metric_ppl"], batch["metric_ppl"])


def test_noise_is_seeded_and_leaves_measured_values_alone(bench_db, tmp_path) -> None:
    _, space, archs = bench_db
    bm = _open(bench_db, tmp_path)
    mixed = archs[:3] + space.sample(40, seed=11)
    a = bm.query(mixed, ["ppl"], noise=True, seed=1)
    b = bm.query(mixed, ["ppl"], noise=True, seed=1)
    c = bm.query(mixed, ["ppl"], noise=True, seed=2)
    plain = bm.query(mixed, ["ppl"])
    pd.testing.assert_frame_equal(a, b)
    predicted = (a["source"] == "surrogate").to_numpy()
    assert predicted.sum() > 10
    assert not np.allclose(a["metric_ppl"][predicted], c["metric_ppl"][predicted])
    np.testing.assert_array_equal(a["metric_ppl"][~predicted], plain["metric_ppl"][~predicted])


def test_cost_counts_an_evaluation_once(bench_db, tmp_path) -> None:
    _, _, archs = bench_db
    bm = _open(bench_db, tmp_path)
    both = bm.query(archs[:2], ["acc_arc_easy", "acc_norm_arc_easy", "cost_s"], mode="table")
    assert both["metric_cost_s"].tolist() == [4.0, 4.0]  # acc and acc_norm come from one lm-eval run
    avg = bm.query(archs[:2], ["acc_avg", "cost_s"], mode="table")
    assert avg["metric_cost_s"].tolist() == [9.0, 9.0]
    # the average above chance: the same two tasks, each as (acc - chance) / (1 - chance)
    rows = bm.query(archs[:2], ["acc_arc_easy", "acc_piqa", "acc_avg", "acc_chance_avg", "cost_s"], mode="table")
    want = ((rows["metric_acc_arc_easy"] - 0.25) / 0.75 + (rows["metric_acc_piqa"] - 0.5) / 0.5) / 2
    np.testing.assert_allclose(rows["metric_acc_chance_avg"], want)
    assert rows["metric_cost_s"].tolist() == [9.0, 9.0]  # one evaluation of both tasks gives all four


def test_invalid_configs_name_the_row_and_the_rule(bench_db, tmp_path) -> None:
    _, space, archs = bench_db
    bm = _open(bench_db, tmp_path)
    rows = archs[:1] * 100 + [dict(archs[1], embed_dim=570)]
    with pytest.raises(IllegalSubNetworkError, match=r"configs\[100\]\.embed_dim: must be choice"):
        bm.query(pd.DataFrame(rows), ["ppl"])
    with pytest.raises(IllegalSubNetworkError, match=r"configs\[0\]"):
        bm.query([dict(archs[0], n_kv_groups=3, n_heads=2)], ["ppl"])  # 2 heads cannot form 3 kv groups
    with pytest.raises(NasBenchError, match="^metrics: must be among"):  # the library's words: the argument
        bm.query(archs[:1], ["ppl", "bleu"])
    with pytest.raises(NasBenchError, match="^mode: must be one of"):
        bm.query(archs[:1], ["ppl"], mode="fast")


def test_cache_is_reused_refitted_on_new_data_and_refuses_tampering(bench_db, tmp_path, monkeypatch) -> None:
    import nasbench.surrogate.benchmark as benchmark_module

    path, space, archs = bench_db
    first = _open(bench_db, tmp_path)
    first.fit(["ppl"])
    files = sorted((tmp_path / "cache" / space.name / "pretrained").iterdir())
    assert [f.name for f in files] == ["ppl.json"]  # JSON only: nothing in the cache is ever unpickled
    meta = json.loads(files[0].read_text())
    assert meta["data_hash"] and meta["versions"]["scikit-learn"] and meta["card"]["metric"] == "ppl"

    def refuse(*args, **kwargs):
        raise AssertionError("refitted although the cache matches")

    monkeypatch.setattr(benchmark_module, "fit_surrogate", refuse)
    second = _open(bench_db, tmp_path)
    assert second.fit(["ppl"])[0].data_hash == meta["data_hash"]
    # the refit from the cached selection predicts exactly what the fitted model predicted
    pd.testing.assert_frame_equal(first.query(archs[:5], ["ppl"], mode="surrogate"),
                                  second.query(archs[:5], ["ppl"], mode="surrogate"))
    monkeypatch.undo()

    with Store(path) as store:  # new data: a changed value makes the cached model stale
        store.con.execute("UPDATE measurements SET value = value * 2 WHERE metric = 'ppl' AND arch_id = "
                          "(SELECT min(arch_id) FROM measurements)")
    try:
        card = _open(bench_db, tmp_path).fit(["ppl"])[0]
        assert card.data_hash != meta["data_hash"]
        assert json.loads(files[0].read_text())["data_hash"] == card.data_hash
    finally:
        with Store(path) as store:
            store.con.execute("UPDATE measurements SET value = value / 2 WHERE metric = 'ppl' AND arch_id = "
                              "(SELECT min(arch_id) FROM measurements)")
    _open(bench_db, tmp_path).fit(["ppl"])

    # tampered entries are stale, never trusted: an unknown model, a wrong scale, predictions a refit cannot match
    good = files[0].read_text()
    fitted = []
    real_fit = benchmark_module.fit_surrogate
    monkeypatch.setattr(benchmark_module, "fit_surrogate", lambda *a, **k: fitted.append(1) or real_fit(*a, **k))
    for change in ({"model": "os.system"}, {"scale": "nan"}, {"probe": [1.0] * 8}, {"card": {"model": "gp"}}):
        doc = json.loads(good)
        doc.update(change)
        files[0].write_text(json.dumps(doc))
        _open(bench_db, tmp_path).fit(["ppl"])
    files[0].write_bytes(b"\xff\xfe not json")
    _open(bench_db, tmp_path).fit(["ppl"])
    assert len(fitted) == 5


def test_cache_never_unpickles_and_refuses_symlinks_out_of_the_root(bench_db, tmp_path) -> None:
    import pickle

    path, space, _ = bench_db
    folder = tmp_path / "cache" / space.name / "pretrained"
    folder.mkdir(parents=True)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (folder / "ppl.joblib").write_bytes(pickle.dumps(Evil()))  # a format-1 cache file planted in a clone
    (folder / "ppl.json").write_text(json.dumps({"file_sha256": "whatever", "versions": {}}))
    _open(bench_db, tmp_path).fit(["ppl"])
    assert not marker.exists()
    assert json.loads((folder / "ppl.json").read_text())["format"] == 2

    outside = tmp_path / "elsewhere.json"
    outside.write_text("{}")
    (folder / "latency_ms.json").symlink_to(outside)
    with pytest.raises(NasBenchError, match="symlink out of the cache root"):
        _open(bench_db, tmp_path).fit(["latency_ms"])
    (tmp_path / "cache" / space.name / "trained").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(NasBenchError, match="leaves the cache root"):
        _open(bench_db, tmp_path, supernet="trained").fit(["ppl"])


def test_fast_prediction_paths_equal_sklearn() -> None:
    rng = np.random.default_rng(0)
    x, x_new = rng.random((80, 6)) * 10, rng.random((300, 6)) * 10
    y = np.sin(x).sum(axis=1) + 0.1 * rng.standard_normal(80)
    boost = make_regressor("quantile-boosting", 0).fit(x, y)
    for k, model in enumerate(boost.models):
        np.testing.assert_allclose(boost._predict(k, x_new), model.predict(x_new.astype(np.float32)), rtol=1e-12)
    gp = make_regressor("gp", 0).fit(x, y)
    sk = gp.model.predict((x_new - gp.mu) / gp.sigma) * gp.y_sigma + gp.y_mu
    np.testing.assert_allclose(gp.predict_mean(x_new), sk, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gp.predict_dist(x_new)[0], sk, rtol=1e-9, atol=1e-9)
    forest = make_regressor("random-forest", 0).fit(x, y)
    np.testing.assert_allclose(forest.predict_mean(x_new), forest.model.predict(x_new.astype(np.float32)),
                               rtol=1e-12)


def test_blackbox_answers_syne_tune(bench_db, tmp_path, monkeypatch) -> None:
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend

    from nasbench.optimize import make_scheduler

    _, space, archs = bench_db
    bm = _open(bench_db, tmp_path)
    bb = bm.blackbox(["ppl", "latency_ms"], mode="surrogate")
    assert bb.objectives_names == ["metric_ppl", "metric_latency_ms", "metric_cost_s"]
    config = {k: archs[0][k] for k in bb.configuration_space}
    row = bb.objective_function(config)
    assert row.shape == (1, 3)
    measured = bm.query(archs[:1], ["ppl", "latency_ms"], mode="table")
    np.testing.assert_array_equal(row[0, :2], measured[["metric_ppl", "metric_latency_ms"]].to_numpy()[0])
    assert row[0, 2] == pytest.approx(2.0 + 0.5, abs=0.1)  # the measured cost of ppl + latency
    broken = dict(config, n_heads=2, n_kv_groups=3)  # Syne Tune samples dimensions independently
    assert not bb.is_valid(broken)
    with pytest.raises(IllegalSubNetworkError, match="n_heads: must be divisible by n_kv_groups=3"):
        bb.objective_function(broken)  # not a network: no value, never a made-up one

    table = bm.blackbox(["ppl", "latency_ms"], mode="table")
    unmeasured = next(a for a in space.sample(300, seed=7) if not table.is_measured(a))
    assert table.is_valid(unmeasured) and table.is_measured({k: archs[0][k] for k in bb.configuration_space})
    with pytest.raises(NasBenchError, match="not measured on pretrained .*table mode answers the 60 measured"):
        table.objective_function({k: unmeasured[k] for k in table.configuration_space})

    monkeypatch.setenv("SYNETUNE_FOLDER", str(tmp_path / "syne-tune"))  # not ~/syne-tune
    backend = UserBlackboxBackend(blackbox=bb, elapsed_time_attr="metric_cost_s")
    # Syne Tune 0.16's RandomSearch baseline wraps a single-objective searcher: use the multi-objective one, with
    # the scheduler that repairs Syne Tune's independent draws into archs of the space (bb.is_valid)
    scheduler = make_scheduler("rs", bb.configuration_space, ["metric_ppl", "metric_latency_ms"], ["min", "min"],
                               seed=0, is_valid=bb.is_valid)
    tuner = Tuner(trial_backend=backend, scheduler=scheduler, stop_criterion=StoppingCriterion(max_num_evaluations=12),
                  n_workers=1, sleep_time=0, callbacks=[SimulatorCallback()], save_tuner=False,
                  tuner_name="nasbench-test", results_update_interval=1e9, print_update_interval=1e9)
    tuner.run()
    assert tuner.tuning_status.num_trials_finished >= 10


def test_intervals_bound_predictions_and_measured_values_are_their_own_bounds(bench_db, tmp_path) -> None:
    _, space, archs = bench_db
    bm = _open(bench_db, tmp_path)
    measured = {arch_id(space.canonical(a)) for a in archs}
    new = [a for a in space.sample(100, seed=11) if arch_id(space.canonical(a)) not in measured][:8]
    out = bm.query(archs[:4] + new, ["ppl", "latency_ms", "params"], interval=True)
    for m in ("ppl", "latency_ms", "params"):
        value, lower, upper = (out[f"metric_{m}{s}"].to_numpy() for s in ("", "_lower", "_upper"))
        assert (lower <= value).all() and (value <= upper).all(), m
    table, predicted = out.iloc[:4], out.iloc[4:]
    assert (table["metric_ppl_lower"] == table["metric_ppl"]).all()
    assert (table["metric_ppl_upper"] == table["metric_ppl"]).all()
    assert (predicted["metric_ppl_upper"] > predicted["metric_ppl_lower"]).all()  # the surrogate's 90% interval
    lo, hi = bm.surrogate("ppl").interval(space.encode([space.canonical(a) for a in new]))
    np.testing.assert_allclose(predicted["metric_ppl_lower"], lo)
    np.testing.assert_allclose(predicted["metric_ppl_upper"], hi)
    assert (out["metric_params_lower"] == out["metric_params"]).all()  # exact
    missing = bm.query(new, ["ppl"], mode="table", interval=True)  # table mode: NaN, source `missing`; never a guess
    assert missing[["metric_ppl", "metric_ppl_lower", "metric_ppl_upper"]].isna().all().all()
    assert set(missing["source"]) == {"missing"}


def test_the_main_supernet_the_db_records_is_the_default(bench_db, tmp_path) -> None:
    import shutil

    path, space, _ = bench_db
    db = tmp_path / "main.duckdb"
    shutil.copy(path, db)
    with Store(db) as store:
        with pytest.raises(NasBenchError, match="must be a supernet measured .*pretrained, trained"):
            store.set_main_supernet(space.name, "nope")
        store.set_main_supernet(space.name, "trained")
        assert store.main_supernet(space.name) == "trained"
    assert Benchmark.open(db, space.name, cache=None, models=FAST).supernet_id == "trained"
    assert Benchmark.open(db, space.name, "pretrained", cache=None, models=FAST).supernet_id == "pretrained"


def test_cli_fit_query_and_bench(bench_db, tmp_path, capsys) -> None:
    path, space, archs = bench_db
    common = ["--db", str(path), "--supernet", "pretrained", "--cache", str(tmp_path / "c")]
    assert main(["fit", "--space", space.name, "--metrics", "ppl,latency_ms", "--models", "extra-trees",
                 *common]) == 0
    out = capsys.readouterr().out
    assert "ppl" in out and "latency_ms" in out and "extra-trees" in out
    with Store(path) as store:
        cards = store.query("SELECT metric, model, kendall_tau FROM surrogate_cards WHERE supernet_id = 'pretrained'")
    assert set(cards["metric"]) >= {"ppl", "latency_ms"}

    jsonl = tmp_path / "archs.jsonl"
    jsonl.write_text("\n".join(json.dumps({"arch_id": "x", "arch": a}) for a in archs[:2]) + "\n")
    assert main(["query", str(SPACE), "--file", str(jsonl), "--metrics", "ppl,params,cost_s", *common,
                 "--models", "extra-trees"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["arch_id"] for r in lines] == [arch_id(space.canonical(a)) for a in archs[:2]]
    assert all(r["source"] == "table" and r["params"] == space.params(a) for r, a in zip(lines, archs))

    assert main(["query", space.name, "--arch", json.dumps(archs[0]), "--metrics", "ppl", "--interval", *common,
                 "--models", "extra-trees"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["ppl_lower"] == line["ppl"] == line["ppl_upper"] and line["source"] == "table"
    assert main(["query", space.name, "--arch", json.dumps(dict(archs[0], n_layers=99)), *common]) == 2
    assert "n_layers" in capsys.readouterr().err
    assert main(["query", space.name, *common]) == 2
    assert "give exactly one" in capsys.readouterr().err
    assert main(["fit", "--space", space.name, "--models", "svm", *common]) == 2
    assert "--models" in capsys.readouterr().err

    assert main(["bench", "query", "--space", space.name, *common, "--metrics", "ppl", "--n-batch", "500",
                 "--n-single", "3"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["bench"] == "query" and result["batch_configs_per_s"] > 0 and result["single_query_ms"] > 0
    assert result["vs_syne_tune_add_surrogate"] > 0


def test_cli_compare_report_and_pareto(bench_db, tmp_path, capsys) -> None:
    from nasbench.pareto import non_dominated_mask
    from nasbench.store import connect_read_only

    path, space, _ = bench_db
    common = ["--db", str(path), "--supernet", "trained", "--cache", str(tmp_path / "c"), "--models", "extra-trees"]
    runs_db = tmp_path / "runs.duckdb"
    args = ["compare", space.name, "--methods", "rs,nsga2", "--seeds", "2", "--max-evals", "15", "--processes", "1",
            "--runs-db", str(runs_db), "--report", str(tmp_path / "report"), *common]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "hv_norm" in out and "nsga2" in out
    con = connect_read_only(runs_db)
    runs = con.execute("SELECT method, seed, n_evals, hv_norm, supernet_id FROM runs ORDER BY 1, 2").fetchall()
    n_traces = con.execute("SELECT count(*) FROM run_traces").fetchone()[0]
    con.close()
    assert [(r[0], r[1], r[2], r[4]) for r in runs] == [("nsga2", 0, 15, "trained"), ("nsga2", 1, 15, "trained"),
                                                        ("rs", 0, 15, "trained"), ("rs", 1, 15, "trained")]
    assert all(0 < r[3] <= 1 for r in runs) and n_traces == 60
    for name in ("hv_vs_time.png", "hv_vs_evals.png", "fronts.png", "hv_table.md"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    assert main(args) == 0  # a rerun skips every stored run
    con = connect_read_only(runs_db)
    assert con.execute("SELECT count(*) FROM run_traces").fetchone()[0] == 60
    con.close()
    capsys.readouterr()
    assert main(["compare", space.name, "--methods", "rs,nsga2", "--seeds", "1", "--max-evals", "30", "--mode",
                 "surrogate", "--processes", "1", "--runs-db", str(runs_db), *common]) == 0
    assert "hv" in capsys.readouterr().out
    con = connect_read_only(runs_db)
    ids = con.execute("SELECT t.arch_id FROM run_traces t JOIN runs USING (run_id) WHERE mode = 'surrogate'").fetchall()
    con.close()
    assert len(ids) == 60 and all(i[0] is not None for i in ids)  # every suggestion was repaired into the space
    assert main(["compare", space.name, "--methods", "rs,cmaes", "--runs-db", str(runs_db), *common]) == 2
    assert "--methods" in capsys.readouterr().err

    assert main(["pareto", "--db", str(path), "--space", space.name, "--supernet", "trained", "--objectives",
                 "ppl,latency_ms,acc_avg", "--format", "json"]) == 0
    front = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    y = np.array([[r["metric_ppl"], r["metric_latency_ms"], r["metric_acc_avg"]] for r in front])
    assert non_dominated_mask(y, [True, True, False]).all() and sum(r["knee"] for r in front) == 1
    # each line carries its arch: the output is an --archs file of profile and build
    assert all(arch_id(space.check(r["arch"])) == r["arch_id"] for r in front)
    assert main(["pareto", "--db", str(path), "--space", space.name, "--supernet", "trained", "--where",
                 "metric_latency_ms <", "--plot", str(tmp_path / "f.png")]) == 2
    assert "--where" in capsys.readouterr().err


def test_invalid_suggestions_are_repaired_to_the_nearest_valid_arch() -> None:
    from nasbench.optimize.searchers import DiscreteSpace, nearest_valid

    space = load_space(SPACE)
    config_space = space.to_syne_tune()
    discrete = DiscreteSpace(config_space)
    def valid(config: dict) -> bool:
        try:
            space.from_syne_tune(config)
        except IllegalSubNetworkError:
            return False
        return True

    good = {k: v for k, v in space.largest().items()}
    assert nearest_valid(discrete, good, valid) is good
    broken = dict(good, n_heads=2, n_kv_groups=3)
    repaired = nearest_valid(discrete, broken, valid)
    assert valid(repaired) and not valid(broken)
    changed = [k for k in broken if broken[k] != repaired[k]]
    assert len(changed) == 1 and changed[0] in ("n_heads", "n_kv_groups")


def test_default_metrics_leave_out_a_metric_too_few_archs_have(bench_db, tmp_path) -> None:
    import shutil

    path, space, archs = bench_db
    few = tmp_path / "few.duckdb"
    shutil.copy(path, few)
    keep = [arch_id(space.canonical(a)) for a in archs[:5]]
    with Store(few) as store:  # accuracy on 5 archs only, as after a first accuracy pass
        store.con.execute("DELETE FROM measurements WHERE metric LIKE 'acc%' AND NOT list_contains(?, arch_id)", [keep])
    bm = Benchmark.open(few, space.name, "pretrained", cache=None, models=FAST)
    assert "acc_avg" in bm.metrics and "acc_avg" not in bm.default_metrics and "ppl" in bm.default_metrics
    assert {c.metric for c in bm.fit()} == set(bm.default_metrics) - {"params", "flops", "cost_s"}
    with pytest.raises(NasBenchError, match="at least"):
        bm.fit(["acc_avg"])  # asked for by name, the rule still says why not


# ------------------------------------------------------------------------------------------- latency noise
def _stored_latency(path, aid):
    """(latency_rel value, its spread, the median of every row's reference time) as stored."""
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    value, spread = con.execute("SELECT value, spread FROM measurements WHERE metric = 'latency_rel' AND "
                                "arch_id = ?", [aid]).fetchone()
    [median] = con.execute("SELECT median(CAST(json_extract(extra, '$.reference_ms') AS DOUBLE)) FROM measurements "
                           "WHERE metric = 'latency_rel'").fetchone()
    con.close()
    return value, spread, median


def test_without_noise_a_latency_is_its_measured_value_and_spread(bench_db, tmp_path) -> None:
    path, _, archs = bench_db
    bm = _open(bench_db, tmp_path)
    out = bm.query(archs[:3], ["ppl", "latency_ms", "latency_wall_ms", "latency_rel"], mode="table")
    for row in out.itertuples():
        value, spread, median = _stored_latency(path, row.arch_id)
        assert row.metric_latency_ms == pytest.approx(value * median, rel=1e-12)  # drift-cancelled milliseconds
        assert row.metric_latency_ms_spread == pytest.approx(spread * median, rel=1e-12)
        assert row.metric_latency_rel == value and row.metric_latency_rel_spread == spread
        assert row.metric_latency_wall_ms_spread == 0.5
    assert "metric_ppl_spread" not in out  # a perplexity does not vary from one measurement to the next
    # drift-cancelled: latency_ms ranks the archs exactly as latency_rel does
    every = bm.query(archs, ["latency_ms", "latency_rel"], mode="table")
    assert (every["metric_latency_ms"].rank() == every["metric_latency_rel"].rank()).all()


def test_noisy_readings_are_seeded_and_spread_as_the_measurement(bench_db, tmp_path) -> None:
    _, space, archs = bench_db
    bm = _open(bench_db, tmp_path)
    plain = bm.query(archs[:5], ["ppl", "latency_ms"], mode="table")
    a = bm.query(archs[:5], ["ppl", "latency_ms"], mode="table", noise=True, seed=7)
    b = bm.query(archs[:5], ["ppl", "latency_ms"], mode="table", noise=True, seed=7)
    c = bm.query(archs[:5], ["ppl", "latency_ms"], mode="table", noise=True, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["metric_latency_ms"], plain["metric_latency_ms"])
    assert not np.allclose(a["metric_latency_ms"], c["metric_latency_ms"])
    np.testing.assert_array_equal(a["metric_ppl"], plain["metric_ppl"])  # measured and not timed: as measured
    np.testing.assert_array_equal(a["metric_latency_ms_spread"], plain["metric_latency_ms_spread"])
    # many readings of one arch: their median is the value and their interquartile range the spread
    bb = bm.blackbox(["ppl", "latency_ms"], mode="table", noise=True, seed=3)
    config = {k: archs[0][k] for k in bb.configuration_space}
    readings = np.array([bb.evaluate(config)[1] for _ in range(3000)])
    value, spread = plain.loc[0, "metric_latency_ms"], plain.loc[0, "metric_latency_ms_spread"]
    q1, median, q3 = np.quantile(readings, [0.25, 0.5, 0.75])
    assert median == pytest.approx(value, rel=0.01) and q3 - q1 == pytest.approx(spread, rel=0.1)
    assert bb.expected(config)[1] == value  # what a comparison scores the evaluation by
    # a run's sequence: the same seed gives the same readings, one arch evaluated twice gives two readings
    bb.reseed(5)
    first = [bb.evaluate(config)[1] for _ in range(3)]
    bb.reseed(5)
    assert [bb.evaluate(config)[1] for _ in range(3)] == first and len(set(first)) == 3


def test_an_unmeasured_arch_gets_the_surrogates_spread(bench_db, tmp_path) -> None:
    _, space, archs = bench_db
    bm = _open(bench_db, tmp_path)
    measured = {arch_id(a) for a in archs}
    new = [a for a in space.sample(30, seed=21) if arch_id(a) not in measured][:10]
    out = bm.query(new, ["latency_ms"])
    assert (out["source"] == "surrogate").all()
    _, std = bm.surrogate("latency_ms").predict_dist(space.encode(new))
    # log-normal with the predicted median: its quartiles are median x exp(+-0.674 std)
    want = out["metric_latency_ms"] * (np.exp(0.6744897501960817 * std) - np.exp(-0.6744897501960817 * std))
    np.testing.assert_allclose(out["metric_latency_ms_spread"], want, rtol=1e-9)
    assert (out["metric_latency_ms_spread"] > 0).all()
    missing = bm.query(new, ["latency_ms"], mode="table")
    assert missing["metric_latency_ms"].isna().all() and missing["metric_latency_ms_spread"].isna().all()


def test_compare_with_noise_is_reproducible_and_scored_on_the_values(bench_db, tmp_path) -> None:
    from nasbench.optimize import CompareSettings, make_truth, run_one
    from nasbench.optimize.compare import run_id

    bm = _open(bench_db, tmp_path)
    settings = CompareSettings(space=bm.space.name, objectives=("ppl", "latency_ms"), methods=("rs",), seeds=(0,),
                               max_evals=12, supernet_id="pretrained", noise=True)
    noisy = bm.blackbox(["ppl", "latency_ms"], mode="table", noise=True)
    truth = make_truth(settings, noisy.configuration_space, noisy.table)
    first = run_one(noisy, settings, "rs", 0, truth)
    again = run_one(bm.blackbox(["ppl", "latency_ms"], mode="table", noise=True), settings, "rs", 0, truth)
    assert [t["objectives"] for t in first.traces] == [t["objectives"] for t in again.traces]
    table = noisy.table.set_index("arch_id")
    for trace in first.traces:
        scored = json.loads(trace["objectives"])
        assert scored["metric_latency_ms"] == table.loc[trace["arch_id"], "metric_latency_ms"]  # the value
        assert scored["observed"]["metric_latency_ms"] != scored["metric_latency_ms"]  # the reading it saw
        assert scored["observed"]["metric_ppl"] == scored["metric_ppl"]
    plain = CompareSettings(**{**settings.__dict__, "noise": False})
    assert run_id(settings, "rs", 0, truth.fingerprint) != run_id(plain, "rs", 0, truth.fingerprint)
    with pytest.raises(NasBenchError, match="^noise: "):
        run_one(bm.blackbox(["ppl", "latency_ms"], mode="table"), settings, "rs", 0, truth)


def test_cli_compare_noise_runs_apart_from_the_noise_free_runs(bench_db, tmp_path, capsys) -> None:
    from nasbench.store import connect_read_only

    path, space, _ = bench_db
    runs_db = tmp_path / "runs.duckdb"
    args = ["compare", space.name, "--db", str(path), "--supernet", "pretrained", "--cache", str(tmp_path / "c"),
            "--models", "extra-trees", "--methods", "rs", "--seeds", "1", "--max-evals", "8", "--processes", "1",
            "--runs-db", str(runs_db)]
    assert main(args) == 0 and main([*args, "--noise"]) == 0
    assert "(noisy readings)" in capsys.readouterr().out
    con = connect_read_only(runs_db)
    configs = [json.loads(c) for (c,) in con.execute("SELECT config FROM runs ORDER BY created_at").fetchall()]
    con.close()
    assert len(configs) == 2 and "noise" not in configs[0] and configs[1]["noise"] is True


def test_a_gp_transfer_fit_is_capped_at_the_gps_row_limit(monkeypatch) -> None:
    """A GP chosen on a small supernet is not refitted on every other supernet's rows (thousands: a matrix of GBs)."""
    from nasbench.surrogate import _fit

    real, sizes = _fit.make_regressor, []

    class Recorder:
        def __init__(self, name, seed):
            self.inner = real(name, seed)

        def fit(self, x, y):
            sizes.append(len(y))
            self.inner.fit(x[:50], y[:50])  # the size is what is checked; a small fit keeps the test fast
            return self

        def __getattr__(self, name):
            return getattr(self.inner, name)

    monkeypatch.setattr(_fit, "make_regressor", Recorder)
    rng = np.random.default_rng(0)
    x, others_x = rng.random((30, 3)), rng.random((_fit.GP_MAX_ROWS + 500, 3))
    _fit.fit_surrogate(x, x.sum(1), np.full(30, np.nan), space="s", supernet="a", metric="m", transform="identity",
                       data_hash="h", others=(others_x, others_x.sum(1)), candidates=("gp",), folds=3)
    assert max(sizes) == _fit.GP_MAX_ROWS  # the transfer fit, capped; every other fit is on this supernet's rows
