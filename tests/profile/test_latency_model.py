"""The op-level latency model: the shapes a space needs, prediction as a sum of ops plus overhead, the fit, the DB
round trip and the CLI verb. Timings use one round over tiny shapes (seconds)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from nasbench.cli import main
from nasbench.errors import NasBenchError
from nasbench.profile.latency_model import (CLASSES, MAX_WIDTHS, PHASES, PROBE_LAYERS, OpTable, arch_ops, fit,
                                            in_model_factor, load_table, measure_ops, predict, probe_ops, save_table,
                                            space_ops)
from nasbench.space import load_space

from conftest import tiny_space_doc


def _space(tmp_path: Path, family: str = "llama", **dimensions: dict) -> object:
    doc = tiny_space_doc(family)
    doc["dimensions"].update(dimensions)
    path = tmp_path / f"space-{family}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return load_space(path)


def _synthetic(space, overhead: tuple[float, float] = (0.0, 0.0)) -> OpTable:
    """A table with made-up times for every shape (distinct per op), so the sums are checked without a clock."""
    ms = {(phase, op, shape): (1 + k) * (2.0 if phase == "prefill" else 0.5) * 1e-3
          for k, (op, shape) in enumerate(space_ops(space)) for phase in PHASES}
    return OpTable(space=space.name, family=space.family, device="cpu", dtype="float32", threads=1, cpu="test",
                   cpu_flags="", gpu="", seq_len=128, context=136, vocab_size=space.reference.vocab_size, rounds=1,
                   ms=ms, overhead={"prefill": overhead, "decode": (0.0, 0.0)})


@pytest.fixture(scope="module")
def timed(tmp_path_factory) -> tuple[object, OpTable]:
    """The tiny llama space (choice widths) and its table, timed once: one round, fp32, short batches."""
    space = _space(tmp_path_factory.mktemp("space"), intermediate_size={"choice": [24, 48, 96]})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return space, measure_ops(space, rounds=1, dtype="float32", seq_len=16, context=20, min_ms=0.01)
    finally:
        torch.set_num_threads(threads)


def test_the_table_times_every_shape_the_space_needs(timed) -> None:
    space, table = timed
    assert set(table.ms) == {(phase, *op) for phase in PHASES for op in space_ops(space) + probe_ops(space)}
    assert all(ms > 0 for ms in table.ms.values())
    assert (table.device, table.dtype, table.threads, table.seq_len, table.context) == ("cpu", "float32", 1, 16, 20)
    ops = set(space_ops(space))
    # the reference's block: q 48 -> 6x8, k and v 48 -> 2x8, o 48 -> 48, GQA 6 heads over 2 groups, MLP 48 x 96
    assert {("linear", (48, 48)), ("linear", (48, 16)), ("attention", (6, 2, 8)), ("mlp", (48, 96)),
            ("norm", (48,)), ("embedding", (48,)), ("head", (48,))} <= ops
    assert ("attention", (4, 1, 8)) not in ops  # 4 query heads on one kv group: more than the reference's 3
    for arch in [*space.sample(30, seed=0), space.largest(), space.smallest()]:
        assert set(arch_ops(space.family, arch)) <= ops


def test_a_fused_qkv_family_times_one_projection(tmp_path) -> None:
    space = _space(tmp_path, "gpt_neox")
    ops = space_ops(space)
    assert ("linear", (48, 3 * 48)) in ops and ("attention", (6, 6, 8)) in ops
    counts = arch_ops(space.family, space.largest())
    assert counts[("linear", (48, 144))] == 3 and counts[("linear", (48, 48))] == 3  # qkv and o, per layer


def test_prediction_is_the_sum_of_ops_plus_overhead(timed) -> None:
    _, table = timed
    table = dataclasses.replace(table, overhead={"prefill": (0.25, 1.5), "decode": (0.125, 0.5)})
    arch = {"embed_dim": 32, "n_layers": 2, "n_heads": 4, "head_size": 8, "n_kv_groups": 2, "intermediate_size": 48}
    for phase, (per_layer, constant) in table.overhead.items():
        def t(op: str, *shape: int, phase: str = phase) -> float:
            return table.ms[(phase, op, shape)]

        block = (2 * t("norm", 32) + t("linear", 32, 32) + 2 * t("linear", 32, 16) + t("attention", 4, 2, 8)
                 + t("linear", 32, 32) + t("mlp", 32, 48)) * in_model_factor(table, phase, 32)
        by_hand = t("embedding", 32) + t("norm", 32) + t("head", 32) + 2 * block + 2 * per_layer + constant
        assert predict(table, [arch], phase)[0] == pytest.approx(by_hand, rel=1e-12)


def test_probes_are_whole_models_and_scale_the_blocks_by_their_in_model_factor(timed) -> None:
    space, table = timed
    probes = probe_ops(space)
    assert {shape[0] for _, shape in probes} == set(space.dimensions["embed_dim"].candidates())
    assert {shape[-1] for _, shape in probes} == set(PROBE_LAYERS)
    for phase in PHASES:  # a deeper model takes longer: the timings are the models'
        for _, (e, h, g, d, i, layers) in probes:
            if layers == PROBE_LAYERS[0]:
                assert table.ms[(phase, "model", (e, h, g, d, i, PROBE_LAYERS[1]))] > table.ms[
                    (phase, "model", (e, h, g, d, i, layers))]
    # a made-up probe pair: per layer exactly 3x the probe block's ops -> factor 3, and a block's ops count 3x
    e, h, g, d, i, _ = probes[0][1]
    block = sum(table.ms[("prefill", *op)] for op in
                [("norm", (e,)), ("norm", (e,)), ("attention", (h, g, d)), ("mlp", (e, i))]
                + [op for op in arch_ops(space.family, {"embed_dim": e, "n_layers": 1, "n_heads": h,
                                                        "n_kv_groups": g, "head_size": d, "intermediate_size": i})
                   if op[0] == "linear" for _ in range(arch_ops(space.family, {
                       "embed_dim": e, "n_layers": 1, "n_heads": h, "n_kv_groups": g, "head_size": d,
                       "intermediate_size": i})[op])])
    ms = {k: v for k, v in table.ms.items() if not (k[0] == "prefill" and k[1] == "model" and k[2][0] == e)}
    ms[("prefill", "model", (e, h, g, d, i, 2))] = 10.0
    ms[("prefill", "model", (e, h, g, d, i, 12))] = 10.0 + 10 * 3 * block
    made = dataclasses.replace(table, ms=ms)
    assert in_model_factor(made, "prefill", e) == pytest.approx(3.0, rel=1e-9)
    arch = {"embed_dim": e, "n_layers": 2, "n_heads": h, "n_kv_groups": g, "head_size": d, "intermediate_size": i}
    plain = dataclasses.replace(table, ms={k: v for k, v in ms.items() if k[1] != "model"})
    assert in_model_factor(plain, "prefill", e) == 1.0  # a table without probes: the ops alone
    stem = sum(table.ms[("prefill", op, (e,))] for op in ("embedding", "norm", "head"))
    assert predict(made, [arch])[0] - stem == pytest.approx(3 * (predict(plain, [arch])[0] - stem), rel=1e-9)


def test_per_layer_archs_sum_their_layers(tmp_path) -> None:
    space = _space(tmp_path, n_heads={"choice": [2, 4, 6], "per_layer": True},
                   intermediate_size={"choice": [24, 48, 96], "per_layer": True})
    table = _synthetic(space)
    arch = {"embed_dim": 48, "n_layers": 2, "n_heads": [6, 2], "head_size": 8, "n_kv_groups": 2,
            "intermediate_size": [96, 24]}
    one = {**arch, "n_layers": 1, "n_heads": 6, "intermediate_size": 96}
    two = {**arch, "n_layers": 1, "n_heads": 2, "intermediate_size": 24}
    shared = sum(table.ms[("prefill", op, (48,))] for op in ("embedding", "norm", "head"))
    expected = predict(table, [one])[0] + predict(table, [two])[0] - shared
    assert predict(table, [arch])[0] == pytest.approx(expected, rel=1e-12)
    assert np.isfinite(predict(table, space.sample(20, seed=1), "decode")).all()


def test_a_wide_intermediate_range_is_timed_on_a_grid_and_interpolated(tmp_path) -> None:
    space = _space(tmp_path)  # intermediate_size log_int 8..96: 89 widths
    widths = sorted({shape[1] for op, shape in space_ops(space) if op == "mlp"})
    assert len(widths) <= MAX_WIDTHS + 2 and (widths[0], widths[-1]) == (8, 96)
    table = _synthetic(space)
    low, high = next((a, b) for a, b in zip(widths, widths[1:]) if b - a > 1)
    arch = {"embed_dim": 16, "n_layers": 1, "n_heads": 2, "head_size": 8, "n_kv_groups": 1}
    at = {w: predict(table, [{**arch, "intermediate_size": w}])[0] for w in (low, high, (low + high) // 2)}
    share = ((low + high) // 2 - low) / (high - low)
    assert at[(low + high) // 2] == pytest.approx(at[low] + share * (at[high] - at[low]), rel=1e-9)
    assert np.isfinite(predict(table, space.sample(50, seed=0))).all()


def test_a_round_that_ran_slow_is_cancelled_out() -> None:
    from nasbench.profile.latency_model import _drift_cancelled

    rng = np.random.default_rng(0)
    true = {("prefill", "linear", (k, k)): 0.1 * (k + 1) for k in range(200)}
    # 10 rounds, each with a speed of its own (10% spread, the machine's drift) and 3% noise per visit
    drift = np.exp(0.1 * rng.standard_normal(10))
    times = {key: [ms * drift[r] * np.exp(0.03 * rng.standard_normal()) for r in range(10)] for key, ms in true.items()}

    def spread(table: dict) -> float:  # how far the shapes' medians disagree with the truth, beyond one common scale
        ratio = np.array([np.median(table[k]) / true[k] for k in true])
        return float(ratio.std() / ratio.mean())

    assert spread(_drift_cancelled(times)) < 0.8 * spread(times)
    # a round that ran uniformly slow is no different from any other after cancelling
    slowed = {k: [v * (1.5 if r == 0 else 1.0) for r, v in enumerate(vs)] for k, vs in times.items()}
    np.testing.assert_allclose([np.median(v) for v in _drift_cancelled(slowed).values()],
                               [np.median(v) for v in _drift_cancelled(times).values()], rtol=0.02)
    assert _drift_cancelled({"a": [2.0]}) == {"a": [2.0]}  # one round: nothing to cancel


def test_a_timed_projection_reads_other_weights_each_call(tmp_path) -> None:
    from nasbench.families import family
    from nasbench.profile.latency_model import WEIGHT_POOL_BYTES, _Builder

    builder = _Builder(family("llama"), torch.device("cpu"), torch.float32, 64, 20)
    for shape in ((48, 16), (576, 1536)):
        nxt = builder.rotating(*shape)
        first = nxt()
        cycle = [first]
        while (w := nxt()).data_ptr() != first.data_ptr():
            cycle.append(w)
        assert all(w.shape == shape for w in cycle) and len({w.data_ptr() for w in cycle}) == len(cycle)
        # one cycle reads more than a core's L2 holds, from one shared pool
        assert len(cycle) * first.numel() * first.element_size() >= 16 * 2**20
        assert all(w.untyped_storage().data_ptr() == builder.pool.untyped_storage().data_ptr() for w in cycle)
    assert builder.pool.numel() * builder.pool.element_size() == WEIGHT_POOL_BYTES


def test_a_weight_larger_than_the_pool_gets_its_own(monkeypatch) -> None:
    from nasbench.families import family
    from nasbench.profile import latency_model

    monkeypatch.setattr(latency_model, "WEIGHT_POOL_BYTES", 4096)  # 1,024 fp32 values; the weight has 768
    builder = latency_model._Builder(family("llama"), torch.device("cpu"), torch.float32, 64, 20)
    nxt = builder.rotating(48, 16)
    assert nxt().shape == (48, 16) and nxt().untyped_storage().data_ptr() != builder.pool.untyped_storage().data_ptr()


def test_fit_recovers_a_known_overhead(tmp_path) -> None:
    space = _space(tmp_path)
    table = _synthetic(space)
    archs = space.sample(40, seed=3)
    layers = np.array([a["n_layers"] for a in archs])
    assert len(set(layers)) > 1
    measured = predict(table, archs) + 0.7 * layers + 1.3
    fitted = fit(table, archs, measured)
    assert fitted.overhead["prefill"] == pytest.approx((0.7, 1.3), rel=1e-6)
    assert fitted.scale["prefill"] == pytest.approx({c: 1.0 for c in CLASSES}, rel=1e-6)
    assert fitted.overhead["decode"] == (0.0, 0.0) and fitted.fitted_n == {"prefill": 40}
    np.testing.assert_allclose(predict(fitted, archs), measured, rtol=1e-9)
    # ops that take half as long inside the model: a factor of 0.5, no negative overhead
    halved = fit(table, archs, predict(table, archs) * 0.5)
    assert halved.scale["prefill"] == pytest.approx({c: 0.5 for c in CLASSES}, rel=1e-6)
    assert halved.overhead["prefill"] == pytest.approx((0.0, 0.0), abs=1e-9)
    with pytest.raises(NasBenchError, match="measured"):
        fit(table, archs, measured[:-1])


def test_each_op_class_gets_its_own_factor(tmp_path) -> None:
    space = _space(tmp_path)
    table = _synthetic(space)
    archs = space.sample(60, seed=4)
    truth = dataclasses.replace(table, scale={"prefill": {"linear": 0.5, "attention": 2.0, "attention_gqa": 1.5,
                                                          "mlp": 0.75, "other": 1.25}},
                                overhead={"prefill": (0.2, 0.4), "decode": (0.0, 0.0)})
    fitted = fit(table, archs, predict(truth, archs))
    assert fitted.scale["prefill"] == pytest.approx(truth.scale["prefill"], rel=1e-6)
    assert fitted.overhead["prefill"] == pytest.approx((0.2, 0.4), rel=1e-6)
    # attention with grouped kv heads (6 heads on 2 groups) is scaled apart from attention without (2 on 2)
    assert (fitted.scale["prefill"]["attention"], fitted.scale["prefill"]["attention_gqa"]) == pytest.approx((2.0, 1.5))
    held_out = space.sample(20, seed=9)
    np.testing.assert_allclose(predict(fitted, held_out), predict(truth, held_out), rtol=1e-9)
    # archs that cannot tell the classes apart (one shape each): one factor for all, still exact on them
    same = [space.largest()] * 2 + [space.smallest()] * 2
    one = fit(table, same, predict(truth, same))
    assert len(set(one.scale["prefill"].values())) == 1
    np.testing.assert_allclose(predict(one, same), predict(truth, same), rtol=1e-9)


def test_the_table_round_trips_through_the_db(timed, tmp_path) -> None:
    from nasbench.store import SCHEMA_VERSION, Store, connect_read_only

    space, table = timed
    table = fit(table, space.sample(10, seed=0), np.linspace(1.0, 3.0, 10))
    db = tmp_path / "bench.duckdb"
    save_table(table, db)
    save_table(table, db)  # the same space, device, hardware, dtype and threads: replaced, not doubled
    assert load_table(db, space.name) == table
    assert load_table(db, space.name, "cpu", "float32").hardware == table.cpu
    con = connect_read_only(db)
    assert con.execute("SELECT count(*) FROM latency_ops").fetchone()[0] == len(table.ms)
    assert con.execute("SELECT count(*) FROM latency_models").fetchone()[0] == 1
    con.close()
    with pytest.raises(NasBenchError, match="holds no latency model"):
        load_table(db, space.name, "cpu", "bfloat16")
    with Store(db) as store:
        assert store.query("SELECT value FROM meta WHERE key = 'schema_version'").iloc[0, 0] == str(SCHEMA_VERSION)


def test_a_schema_3_db_opens_and_gains_the_empty_tables(tmp_path) -> None:
    import duckdb

    from nasbench.store import SCHEMA_VERSION, Store
    from nasbench.store.schema import SCHEMA

    old = tmp_path / "old.duckdb"
    con = duckdb.connect(str(old))
    con.execute(SCHEMA.split("-- schema 4")[0])
    con.execute("INSERT INTO meta VALUES ('schema_version', '3')")
    con.close()
    with pytest.raises(NasBenchError, match="holds no latency model"):
        load_table(old, "tiny-llama")  # read-only: no migration, no table, the same error
    with Store(old) as store:
        assert store.query("SELECT value FROM meta WHERE key = 'schema_version'").iloc[0, 0] == str(SCHEMA_VERSION)
        assert store.query("SELECT count(*) FROM latency_models").iloc[0, 0] == 0
        assert store.query("SELECT count(*) FROM latency_ops").iloc[0, 0] == 0


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("flags, fragment", [
    (("--rounds", "0"), "--rounds: must be >= 1 (got 0)"),
    (("--metric", "ppl"), "--metric: must be one of latency_ms, latency_wall_ms, latency_rel (got 'ppl')"),
    (("--dtype", "int8"), "--dtype: must be one of auto, bfloat16, float32, float16 (got 'int8')"),
    (("--device", "tpu"), "--device: must be cpu or an available CUDA device (cuda, cuda:N) (got 'tpu')"),
    (("--validate", "--metric", "flops"), "--metric: must be one of latency_ms, latency_wall_ms, latency_rel, "
                                          "decode_ms_per_token, decode_wall_ms_per_token, decode_rel (got 'flops')"),
    (("--validate",), "--db: holds no latency model of space 'tiny-llama' on cpu"),
    (("--refit",), "--db: holds no latency model of space 'tiny-llama' on cpu"),
    (("--refit", "--validate"), "--refit: stores a fit, --validate scores one: give one of them"),
    (("--refit", "--rounds", "3"), "--rounds: times a new table: leave it out with --refit (got 3)"),
    (("--splits", "3"), "--splits: scores held-out halves: it needs --validate (got 3)"),
])
def test_cli_errors_are_one_line(capsys, tmp_path, flags, fragment) -> None:
    space = _space(tmp_path)
    db = tmp_path / "bench.duckdb"
    save_table(_synthetic(_space(tmp_path, "gpt_neox")), db)  # a DB with another space's table only
    code, out, err = _run(capsys, "bench", "latency-model", space.path, "--db", db, *flags)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nasbench: error: ") and fragment in lines[0], err


def test_cli_measures_stores_and_validates(capsys, tmp_path) -> None:
    from nasbench.space import arch_id
    from nasbench.store import Measurement, Store

    space = _space(tmp_path, intermediate_size={"choice": [24, 48]})
    db = tmp_path / "bench.duckdb"
    code, out, _ = _run(capsys, "bench", "latency-model", space.path, "--db", db, "--rounds", "1", "--dtype",
                        "float32")
    first = json.loads(out)
    assert code == 0 and first["ops"] == 2 * len(space_ops(space) + probe_ops(space)) and first["fitted_n"] == {}
    table = load_table(db, space.name)
    archs = space.sample(30, seed=5)
    truth = predict(table, archs) + 0.4 * np.array([a["n_layers"] for a in archs]) + 0.8
    with Store(db) as store:
        for arch, ms in zip(archs, truth):
            store.add_results(space, arch, [Measurement(arch_id=arch_id(arch), supernet_id="", metric="latency_ms",
                                                        value=float(ms), unit="ms", device="cpu", dtype="float32",
                                                        batch=1, seq_len=128)])
    # the profiler stores the wall clock as latency_ms: readers call it latency_wall_ms
    code, out, _ = _run(capsys, "bench", "latency-model", space.path, "--db", db, "--validate", "--metric",
                        "latency_wall_ms")
    result = json.loads(out)
    assert code == 0 and out.count("\n") == 1
    assert result["n_fit"] + result["n_test"] == len({arch_id(a) for a in archs})
    assert result["kendall_tau"] == pytest.approx(1.0) and result["within_10pct"] == 1.0
    assert result["overhead_ms"] == {"per_layer": pytest.approx(0.4, abs=1e-4), "constant": pytest.approx(0.8,
                                                                                                         abs=1e-4)}
    code, out, _ = _run(capsys, "bench", "latency-model", space.path, "--db", db, "--validate", "--metric",
                        "latency_wall_ms", "--splits", "3")
    splits = json.loads(out)["kendall_tau_splits"]
    assert code == 0 and splits["seeds"] == [0, 1, 2] and splits["tau"][0] == pytest.approx(result["kendall_tau"],
                                                                                             abs=1e-4)
    assert splits["min"] == min(splits["tau"]) and len(splits["tau"]) == 3
    # --refit times nothing: the stored table's op times stay, its overheads are fitted on every measured arch
    code, out, _ = _run(capsys, "bench", "latency-model", space.path, "--db", db, "--refit", "--metric",
                        "latency_wall_ms")
    refitted = load_table(db, space.name)
    assert code == 0 and json.loads(out)["refit"] is True and refitted.ms == table.ms
    assert refitted.overhead["prefill"] == pytest.approx((0.4, 0.8), abs=1e-4)
    assert refitted.fitted_n["prefill"] == len({arch_id(a) for a in archs})


def test_a_table_stored_with_one_factor_reads_it_for_every_class() -> None:
    from nasbench.profile.latency_model import _stored_factors

    assert _stored_factors([0.1, 0.2, 0.5]) == {c: 0.5 for c in CLASSES}  # fitted before the classes had their own
    assert _stored_factors([0.1, 0.2]) == {c: 1.0 for c in CLASSES}
    assert _stored_factors([0.1, 0.2, {"mlp": 2.0}]) == {**{c: 1.0 for c in CLASSES}, "mlp": 2.0}
    # fitted before grouped attention had a class: its one attention factor for both
    assert _stored_factors([0.1, 0.2, {"attention": 3.0}]) == {**{c: 1.0 for c in CLASSES}, "attention": 3.0,
                                                              "attention_gqa": 3.0}


def test_a_class_no_arch_has_keeps_its_factor(tmp_path) -> None:
    space = _space(tmp_path)
    table = _synthetic(space)
    archs = [a for a in space.sample(600, seed=4) if a["n_heads"] == a["n_kv_groups"]]  # no grouped attention
    assert len(archs) >= 20
    truth = dataclasses.replace(table, scale={"prefill": {"linear": 0.5, "attention": 2.0, "mlp": 0.75,
                                                          "other": 1.25}})
    fitted = fit(table, archs, predict(truth, archs))
    assert len(set(fitted.scale["prefill"].values())) > 1  # the classes it has are told apart
    assert fitted.scale["prefill"] == pytest.approx({**truth.scale["prefill"], "attention_gqa": 1.0}, rel=1e-6)
