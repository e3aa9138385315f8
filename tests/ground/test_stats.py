"""Optimizer statistics: Holm, Friedman, ranks, the Nemenyi CD, Wilcoxon against random search."""

from __future__ import annotations

import numpy as np
import pytest

from nasbench.stats import average_ranks, cd_diagram, friedman, holm, nemenyi_cd, versus_baseline


def test_holm_matches_the_step_down_procedure():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]).max() <= 1.0


def test_a_method_that_is_better_on_every_seed_is_found_and_ties_are_not(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 0.7, size=20)
    x = np.column_stack([base, base + 0.1 + rng.uniform(0, 0.01, 20), base + rng.normal(0, 0.01, 20)])
    methods = ["rs", "good", "same"]
    assert friedman(x)[1] < 1e-4
    np.testing.assert_allclose(average_ranks(x)[1], 1.0)
    result = {v.method: v for v in versus_baseline(x, methods, "rs")}
    assert result["good"].significant and result["good"].wins == 20
    assert not result["same"].significant
    assert friedman(np.column_stack([base, base, base])) == (0.0, 1.0)
    assert nemenyi_cd(3, 20) == pytest.approx(2.343 * np.sqrt(3 * 4 / (6 * 20)))
    assert cd_diagram(average_ranks(x), methods, nemenyi_cd(3, 20), tmp_path / "cd.png").stat().st_size > 0
    with pytest.raises(ValueError):
        versus_baseline(x, methods, "cmaes")


def test_bench_retest_pairs_rows_by_key_and_reports_the_tau_ceiling(tmp_path, capsys):
    import json

    from nasbench.cli import main
    from nasbench.models import tiny_space
    from nasbench.space import arch_id
    from nasbench.store import Measurement, Store

    space = tiny_space(tmp_path / "s", "llama")
    archs = space.sample(6, seed=0)
    noise = [1.0, 1.3, 0.8, 1.1, 0.9, 1.2]
    for name, scale in (("a", [1.0] * 6), ("b", noise)):
        with Store(tmp_path / f"{name}.duckdb") as store:
            store.add_space(space)
            for i, (arch, k) in enumerate(zip(archs, scale)):
                store.add_results(space, arch, [Measurement(arch_id=arch_id(arch), supernet_id="x", metric="latency_ms",
                                                            value=10.0 * (i + 1) * k, unit="ms", device="cpu")])
    args = ["bench", "retest", str(tmp_path / "a.duckdb"), str(tmp_path / "b.duckdb"), "--space", space.name]
    # the stored latency_ms rows are wall clock: readers (and retest) call them latency_wall_ms
    assert main([*args, "--metrics", "latency_wall_ms"]) == 0
    out = json.loads(capsys.readouterr().out)["latency_wall_ms"]
    assert out["n"] == 6 and out["kendall_tau"] < 1.0
    assert np.isclose(out["median_rel_diff"], np.median([abs(1 / k - 1) for k in noise]))
    assert "cv_median" not in out  # wall-clock rows carry no pairs
    assert main([*args, "--metrics", "latency_rel"]) == 2
    assert "needs >= 3 archs measured in both DBs" in capsys.readouterr().err
    for name, cv in (("a", 0.08), ("b", 0.03)):  # timed in pairs: each pass's pairs' spread is printed beside
        with Store(tmp_path / f"{name}.duckdb") as store:
            store.add_measurements(space.name, [Measurement(
                arch_id=arch_id(arch), supernet_id="x", metric="latency_rel", value=0.1 * (i + 1), unit="x full model",
                device="cpu", extra={"cv": cv * (1 + i / 10), "reference_ms": 50.0}) for i, arch in enumerate(archs)])
    assert main([*args, "--metrics", "latency_rel"]) == 0
    out = json.loads(capsys.readouterr().out)["latency_rel"]
    assert np.isclose(out["kendall_tau"], 1.0) and np.isclose(out["cv_median"]["db"], 0.08 * 1.25)
    assert np.isclose(out["cv_median"]["other"], 0.03 * 1.25)
    assert "reference_speed_r" not in out  # the full model ran at one speed throughout: nothing to follow


def test_bench_retest_says_how_far_the_disagreement_follows_the_machines_speed(tmp_path, capsys):
    import json

    from nasbench.cli import main
    from nasbench.models import tiny_space
    from nasbench.space import arch_id
    from nasbench.store import Measurement, Store

    space = tiny_space(tmp_path / "s", "llama")
    archs = space.sample(8, seed=0)
    slow = [1.0, 1.2, 0.9, 1.1, 1.05, 0.95, 1.3, 1.0]  # the second pass's machine speed beside each arch
    noise = [1.01, 0.99, 1.0, 1.02, 0.98, 1.0, 0.99, 1.01]  # and its own pairs' noise
    for name, speeds, follows, jitter in (("a", [1.0] * 8, 0.0, [1.0] * 8), ("b", slow, 0.5, noise),
                                          ("c", slow, 0.0, noise)):
        with Store(tmp_path / f"{name}.duckdb") as store:
            store.add_space(space)
            store.add_measurements(space.name, [Measurement(
                arch_id=arch_id(arch), supernet_id="", metric="latency_rel", unit="x full model", device="cpu",
                # a slow machine slows this arch by speed^1.5 and the full model by speed: the ratio by speed^0.5
                value=0.1 * (i + 1) * speed ** follows * jitter[i], extra={"cv": 0.05, "reference_ms": 50.0 * speed})
                for i, (arch, speed) in enumerate(zip(archs, speeds))])
    args = ["bench", "retest", str(tmp_path / "a.duckdb"), "--space", space.name, "--metrics", "latency_rel"]
    assert main([*args[:3], str(tmp_path / "b.duckdb"), *args[3:]]) == 0
    assert json.loads(capsys.readouterr().out)["latency_rel"]["reference_speed_r"] > 0.95
    assert main([*args[:3], str(tmp_path / "c.duckdb"), *args[3:]]) == 0  # the ratio does not follow the speed
    assert abs(json.loads(capsys.readouterr().out)["latency_rel"]["reference_speed_r"]) < 0.5
