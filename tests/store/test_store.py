"""The DuckDB store: schema, round trip, idempotent writes, wide views, read-only SQL."""

from __future__ import annotations

import json

import duckdb
import pytest

from nasbench.errors import StoreError
from nasbench.space import arch_id, load_space
from nasbench.store import SCHEMA_VERSION, Measurement, Store, connect_read_only, view_name

from conftest import SPACES


@pytest.fixture
def space():
    return load_space(SPACES / "smollm2-135m.yaml")


def test_schema_is_created_and_versioned(tmp_path) -> None:
    path = tmp_path / "b.duckdb"
    with Store(path):
        pass
    con = connect_read_only(path)
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {"meta", "spaces", "supernets", "architectures", "measurements"} <= tables
    assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)


def test_newer_schema_is_refused(tmp_path) -> None:
    path = tmp_path / "b.duckdb"
    with Store(path) as store:
        store.con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
    with pytest.raises(StoreError, match="newer nasbench"):
        Store(path)


def test_round_trip_architectures_and_measurements(tmp_path, space) -> None:
    archs = space.sample(4, seed=0)
    with Store(tmp_path / "b.duckdb") as store:
        store.add_space(space)
        ids = store.add_architectures(space, archs)
        assert ids == [arch_id(a) for a in archs]
        assert store.architectures(space.name) == sorted(archs, key=arch_id)
        new = store.add_measurements(space.name, [
            Measurement(ids[0], "pretrained", "ppl", 21.5, "perplexity", seq_len=512, cost_s=3.0),
            Measurement(ids[0], "pretrained", "acc", 0.61, "accuracy", task="arc_easy", cost_s=9.0),
            Measurement(ids[1], "pretrained", "latency_ms", 12.0, "ms", device="cpu", dtype="bfloat16", batch=1,
                        seq_len=512, spread=0.3, n_repeats=10, software={"torch": "2.13.0"}),
        ])
        assert new == 3
        wide = store.query(f"SELECT * FROM {view_name(space.name)} WHERE arch_id = ?", [ids[0]])
        assert wide.loc[0, "metric_ppl"] == 21.5 and wide.loc[0, "metric_acc_arc_easy"] == 0.61
        assert wide.loc[0, "metric_params"] == space.params(archs[0])
        assert wide.loc[0, "hp_embed_dim"] == archs[0]["embed_dim"]
        assert {c for c in wide.columns if c.startswith("hp_")} >= {f"hp_{d}" for d in archs[0]}


def test_wide_view_averages_accuracy_and_its_distance_from_chance(tmp_path, space) -> None:
    from nasbench.metrics import CHANCE
    from nasbench.profile.accuracy import PRIMARY_METRIC, TASKS

    # every task scored by acc has a chance level (truthfulqa_mc2 is scored by mc2)
    assert {t for t in TASKS if PRIMARY_METRIC[t] == "acc"} == set(CHANCE)
    archs = space.sample(3, seed=2)
    with Store(tmp_path / "b.duckdb") as store:
        store.add_space(space)
        ids = store.add_architectures(space, archs)
        store.add_measurements(space.name, [Measurement(ids[0], "pretrained", "ppl", 30.0, "perplexity")])
        assert "metric_acc_avg" not in store.query(f"SELECT * FROM {view_name(space.name)}").columns  # no acc rows
        store.add_measurements(space.name, [
            Measurement(ids[0], "pretrained", "acc", 0.40, "accuracy", task="arc_easy"),
            Measurement(ids[0], "pretrained", "acc", 0.75, "accuracy", task="piqa"),
            Measurement(ids[0], "pretrained", "acc_norm", 0.99, "accuracy", task="piqa"),  # not averaged
            Measurement(ids[0], "other", "acc", 0.25, "accuracy", task="arc_easy"),
            Measurement(ids[1], "pretrained", "ppl", 40.0, "perplexity"),
        ])
        wide = store.query(f"SELECT * FROM {view_name(space.name)} ORDER BY arch_id, supernet_id")
    row = wide[(wide.arch_id == ids[0]) & (wide.supernet_id == "pretrained")].iloc[0]
    assert row.metric_acc_avg == pytest.approx(0.575)
    assert row.metric_acc_chance_avg == pytest.approx(((0.40 - 0.25) / 0.75 + (0.75 - 0.5) / 0.5) / 2)
    assert row.acc_tasks == "arc_easy,piqa"
    other = wide[(wide.arch_id == ids[0]) & (wide.supernet_id == "other")].iloc[0]
    assert other.metric_acc_avg == pytest.approx(0.25) and other.metric_acc_chance_avg == pytest.approx(0.0)
    unmeasured = wide[wide.arch_id == ids[1]].iloc[0]
    assert unmeasured.metric_ppl == 40.0 and unmeasured.metric_acc_avg != unmeasured.metric_acc_avg  # NaN
    assert len(wide) == len(wide[["arch_id", "supernet_id"]].drop_duplicates())  # the join adds no rows


def test_writes_are_idempotent(tmp_path, space) -> None:
    archs = space.sample(3, seed=1)
    m = Measurement(arch_id(archs[0]), "pretrained", "ppl", 30.0, "perplexity", seq_len=512)
    with Store(tmp_path / "b.duckdb") as store:
        for _ in range(2):
            store.add_space(space)
            store.add_architectures(space, archs)
        assert store.add_measurements(space.name, [m]) == 1
        assert store.add_measurements(space.name, [m, m]) == 0
        assert store.has_measurement(space.name, m.arch_id, "pretrained", "ppl")
        assert not store.has_measurement(space.name, m.arch_id, "other-supernet", "ppl")
        counts = store.con.execute("SELECT (SELECT count(*) FROM spaces), (SELECT count(*) FROM architectures), "
                                   "(SELECT count(*) FROM measurements)").fetchone()
        assert counts == (1, 3, 1)


def test_failed_transaction_changes_nothing(tmp_path, space) -> None:
    with Store(tmp_path / "b.duckdb") as store:
        store.add_architectures(space, space.sample(2, seed=0))
        with pytest.raises(RuntimeError):
            with store.transaction() as con:
                con.execute("DELETE FROM architectures")
                raise RuntimeError("killed mid-write")
        assert store.con.execute("SELECT count(*) FROM architectures").fetchone()[0] == 2


def test_supernet_rows_upsert(tmp_path, space) -> None:
    with Store(tmp_path / "b.duckdb") as store:
        store.add_supernet("sn1", space.name, space.model.source, strategy="sandwich", steps=10, config={"lr": 1e-4})
        store.add_supernet("sn1", space.name, space.model.source, steps=20, checkpoint="ckpt/step-20")
        row = store.con.execute("SELECT strategy, steps, checkpoint, config FROM supernets").fetchall()
        assert row == [("sandwich", 20, "ckpt/step-20", '{"lr": 0.0001}')]
        with pytest.raises(StoreError, match="unknown column"):
            store.add_supernet("sn1", space.name, "x", colour="red")


def test_read_only_connection_refuses_writes(tmp_path, space) -> None:
    path = tmp_path / "b.duckdb"
    with Store(path) as store:
        store.add_architectures(space, space.sample(2, seed=0))
    con = connect_read_only(path)
    with pytest.raises(duckdb.Error, match="read-only"):
        con.execute("DELETE FROM architectures")
    assert con.execute("SELECT count(*) FROM architectures").fetchone()[0] == 2


def test_missing_db_is_a_store_error(tmp_path) -> None:
    with pytest.raises(StoreError, match="not found"):
        connect_read_only(tmp_path / "nope.duckdb")


# ------------------------------------------------------------------------------------------------ schema 3 layout
def _v2_db(path, space, archs, rows) -> None:
    """A DB as schema 2 wrote it (what older shard DBs are): weight-free rows under the supernet that measured them,
    a baseline's archs in architectures."""
    from nasbench.space import canonical_json
    from nasbench.store.schema import SCHEMA, _now

    con = duckdb.connect(str(path))
    con.execute(SCHEMA.split("-- schema 3")[0])
    con.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    con.execute("INSERT INTO spaces VALUES (?, ?, ?, ?, ?, ?)", [space.name, space.version, space.hash,
                                                                  space.yaml_text, space.path, _now()])
    for arch in archs:
        c = space.canonical(arch)
        con.execute("INSERT INTO architectures VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
                    [arch_id(c), space.name, *[c[d] for d in ("embed_dim", "n_layers", "n_heads", "head_size",
                                                              "n_kv_groups", "intermediate_size")],
                     canonical_json(c), space.params(c), _now()])
    for aid, supernet, metric, value in rows:
        con.execute("INSERT INTO measurements (space, arch_id, supernet_id, metric, device, value, unit, cost_s, "
                    "created_at) VALUES (?, ?, ?, ?, 'cpu', ?, 'u', 1.0, ?)", [space.name, aid, supernet, metric,
                                                                              value, _now()])
    con.close()


def test_an_old_db_is_migrated_on_open_and_weight_free_rows_get_one_home(tmp_path, space) -> None:
    archs = space.sample(3, seed=2)
    a, b, c = (arch_id(space.canonical(x)) for x in archs)
    path = tmp_path / "old.duckdb"
    _v2_db(path, space, archs, [
        (a, "s1", "ppl", 20.0), (a, "s1", "latency_ms", 5.0), (a, "s1", "flops", 1e8),
        (a, "s2", "ppl", 30.0), (a, "s2", "flops", 1e8),  # the same FLOPs again, under another supernet
        (b, "s2", "ppl", 40.0), (b, "s2", "latency_ms", 6.0),
        (c, "baseline-wanda-2:4", "ppl", 50.0), (c, "baseline-wanda-2:4", "latency_ms", 7.0)])
    with Store(path) as store:
        assert store.query("SELECT value FROM meta WHERE key = 'schema_version'").iloc[0, 0] == str(SCHEMA_VERSION)
        rows = store.query("SELECT arch_id, supernet_id, metric, value FROM measurements ORDER BY ALL")
        assert store.has_measurement(space.name, a, "any-new-supernet", "latency_ms", device="cpu")
        assert not store.has_measurement(space.name, a, "any-new-supernet", "ppl", device="cpu")
        # the stored latency_ms rows are wall clock: the view calls them latency_wall_ms (no latency_rel, no
        # drift-cancelled latency_ms)
        wide = store.query(f"SELECT arch_id, supernet_id, metric_ppl, metric_latency_wall_ms AS metric_latency_ms, "
                           f"metric_flops FROM {view_name(space.name)} ORDER BY ALL")
        assert "metric_latency_ms" not in set(store.query(f"DESCRIBE {view_name(space.name)}")["column_name"])
        baselines = store.query("SELECT supernet_id, arch_id, in_space FROM baseline_archs")
        archs_left = set(store.query("SELECT arch_id FROM architectures")["arch_id"])
    shared = rows[rows.metric.isin(["latency_ms", "flops"]) & (rows.supernet_id != "baseline-wanda-2:4")]
    assert set(shared["supernet_id"]) == {""} and len(shared) == 3  # latency of a and b, FLOPs of a once
    assert len(rows[rows.metric == "ppl"]) == 4
    # every supernet's row of the wide view shows the arch's weight-free values; a baseline keeps its own
    by = {(r.arch_id, r.supernet_id): r for r in wide.itertuples()}
    assert by[(a, "s1")].metric_latency_ms == by[(a, "s2")].metric_latency_ms == 5.0
    assert by[(a, "s2")].metric_flops == 1e8 and by[(b, "s2")].metric_latency_ms == 6.0
    assert by[(c, "baseline-wanda-2:4")].metric_latency_ms == 7.0
    # the arch only the baseline measured is listed apart: a plain join gives the space's archs
    assert list(baselines.itertuples(index=False, name=None)) == [("baseline-wanda-2:4", c, True)]
    assert archs_left == {a, b}


def test_merge_brings_old_and_new_shards_into_the_current_layout(tmp_path, space) -> None:
    from nasbench.cli import main

    archs = space.sample(4, seed=3)
    ids = [arch_id(space.canonical(x)) for x in archs]
    target = tmp_path / "bench.duckdb"
    with Store(target) as store:  # the benchmark: latency measured once, on s1's weights
        store.add_space(space)
        store.add_results(space, archs[0], [
            Measurement(ids[0], "s1", "ppl", 20.0, "perplexity", device="cpu"),
            Measurement(ids[0], "s1", "latency_ms", 5.0, "ms", device="cpu"),
            Measurement(ids[0], "s1", "flops", 1e8, "flop/token", device="cpu")])
        store.set_main_supernet(space.name, "s1")
    old = tmp_path / "factorial-old.duckdb"  # a profile shard written by schema 2: ppl + the flops that ride along
    _v2_db(old, space, archs[:2], [(ids[0], "arm", "ppl", 25.0), (ids[0], "arm", "flops", 1e8),
                                   (ids[1], "arm", "ppl", 26.0), (ids[1], "arm", "flops", 2e8)])
    new = tmp_path / "factorial-new.duckdb"  # the same from this schema
    with Store(new) as store:
        store.add_space(space)
        store.add_results(space, archs[2], [Measurement(ids[2], "arm2", "ppl", 27.0, "perplexity", device="cpu"),
                                            Measurement(ids[2], "arm2", "flops", 3e8, "flop/token", device="cpu")])
    assert main(["merge", str(target), str(old), str(new)]) == 0
    assert main(["merge", str(target), str(old), str(new)]) == 0  # again: nothing new
    with connect_read_only(old) as con:  # a source is read, never changed
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "2"
    con = connect_read_only(target)
    rows = con.execute("SELECT arch_id, supernet_id, metric, value FROM measurements ORDER BY ALL").fetchall()
    main_row = con.execute("SELECT value FROM meta WHERE key = ?", [f"main_supernet:{space.name}"]).fetchone()
    wide = con.execute(f"SELECT arch_id, supernet_id, metric_flops FROM {view_name(space.name)} "
                       "WHERE supernet_id = 'arm' ORDER BY arch_id").fetchall()
    con.close()
    assert sorted(r for r in rows if r[2] == "flops") == sorted(
        [(ids[0], "", "flops", 1e8), (ids[1], "", "flops", 2e8), (ids[2], "", "flops", 3e8)])
    assert {r[1] for r in rows if r[2] == "ppl"} == {"s1", "arm", "arm2"} and len(rows) == 8
    assert main_row == ("s1",)  # the target's own record: merges never change it
    assert sorted(wide) == sorted([(ids[0], "arm", 1e8), (ids[1], "arm", 2e8)])


# --------------------------------------------------------------------------------- the latencies readers see
def _latency_db(path, space, reference_ms=(60.0, 70.0, 90.0)):
    """Three archs with wall clock (stored as latency_ms) and latency_rel rows whose reference times are
    ``reference_ms``; a baseline timed by wall clock only, on the first arch."""
    archs = space.sample(3, seed=4)
    ids = [arch_id(space.canonical(a)) for a in archs]
    common = dict(device="cpu", dtype="bfloat16", batch=1, seq_len=128, n_repeats=10)
    rels, walls = (0.3, 0.6, 0.5), (30.0, 35.0, 60.0)  # wall clock ranks them otherwise: the machine drifted
    with Store(path) as store:
        store.add_space(space)
        for k, (aid, arch, rel, wall, ref) in enumerate(zip(ids, archs, rels, walls, reference_ms)):
            store.add_results(space, arch, [
                Measurement(aid, "s1", "ppl", 20.0, "perplexity"),
                Measurement(aid, "s1", "latency_ms", wall, "ms", spread=2.0, cost_s=1.0, **common),
                Measurement(aid, "s1", "latency_rel", rel, "x full model", spread=0.02, cost_s=3.0,
                            extra={"reference_ms": ref, "cv": 0.01}, **common),
                # decode: the wall clock is stored as decode_ms_per_token, the ratio as decode_rel
                Measurement(aid, "s1", "decode_ms_per_token", DECODE_WALLS[k], "ms", **common),
                Measurement(aid, "s1", "decode_rel", DECODE_RELS[k], "x full model", spread=0.04, cost_s=3.0,
                            extra={"reference_ms": DECODE_REFERENCE_MS[k]}, **common)])
        store.add_results(space, archs[0], [
            Measurement(ids[0], "baseline-magnitude-2:4", "ppl", 50.0, "perplexity"),
            Measurement(ids[0], "baseline-magnitude-2:4", "latency_ms", 80.0, "ms", spread=4.0, **common),
            Measurement(ids[0], "baseline-magnitude-2:4", "decode_ms_per_token", 9.0, "ms", **common)])
    return ids, rels, walls


DECODE_WALLS, DECODE_RELS, DECODE_REFERENCE_MS = (4.0, 3.0, 5.0), (0.4, 0.5, 0.8), (12.0, 8.0, 10.0)


def test_the_default_latency_is_latency_rel_times_the_reference_median_and_the_wall_clock_is_named(tmp_path,
                                                                                                 space) -> None:
    from nasbench.store.readings import READINGS

    path = tmp_path / "b.duckdb"
    ids, rels, walls = _latency_db(path, space)
    con = connect_read_only(path)
    wide = con.execute(f"SELECT arch_id, supernet_id, metric_latency_ms, metric_latency_wall_ms, metric_latency_rel "
                       f"FROM {view_name(space.name)}").df()
    readings = con.execute(f"SELECT arch_id, supernet_id, metric, value, spread, cost_s, extra FROM ({READINGS}) "
                           "WHERE metric LIKE 'latency%'").df()
    stored = set(con.execute("SELECT DISTINCT metric FROM measurements").df()["metric"])
    con.close()
    assert {"latency_ms", "latency_rel"} <= stored and "latency_wall_ms" not in stored  # storage keeps its names
    by = {(r.arch_id, r.supernet_id): r for r in wide.itertuples()}
    for aid, rel, wall in zip(ids, rels, walls):
        assert by[(aid, "s1")].metric_latency_ms == pytest.approx(rel * 70.0)  # the median of 60, 70 and 90
        assert by[(aid, "s1")].metric_latency_wall_ms == wall and by[(aid, "s1")].metric_latency_rel == rel
    derived = readings[readings.metric == "latency_ms"].set_index("arch_id")
    assert list(derived["spread"]) == pytest.approx([0.02 * 70.0] * 3) and set(derived["cost_s"]) == {3.0}
    assert {json.loads(e)["reference_median_ms"] for e in derived["extra"]} == {70.0}
    # the baseline measured wall clock only: it keeps it, named as such, and gets no latency_ms of its own
    baseline = readings[readings.supernet_id == "baseline-magnitude-2:4"]
    assert list(baseline["metric"]) == ["latency_wall_ms"] and list(baseline["value"]) == [80.0]
    row = by[(ids[0], "baseline-magnitude-2:4")]
    assert row.metric_latency_wall_ms == 80.0 and row.metric_latency_ms == pytest.approx(rels[0] * 70.0)


def test_the_default_decode_latency_is_decode_rel_times_its_reference_median(tmp_path, space) -> None:
    from nasbench.store.readings import READINGS

    path = tmp_path / "b.duckdb"
    ids, _, _ = _latency_db(path, space)
    con = connect_read_only(path)
    wide = con.execute(f"SELECT arch_id, supernet_id, metric_decode_ms_per_token, metric_decode_wall_ms_per_token, "
                       f"metric_decode_rel FROM {view_name(space.name)}").df()
    derived = con.execute(f"SELECT arch_id, spread, extra FROM ({READINGS}) WHERE metric = 'decode_ms_per_token' "
                          "ORDER BY arch_id").df()
    baseline = con.execute(f"SELECT metric, value FROM ({READINGS}) WHERE supernet_id = 'baseline-magnitude-2:4' "
                           "AND metric LIKE 'decode%'").fetchall()
    con.close()
    by = {(r.arch_id, r.supernet_id): r for r in wide.itertuples()}
    for aid, wall, rel in zip(ids, DECODE_WALLS, DECODE_RELS):
        assert by[(aid, "s1")].metric_decode_ms_per_token == pytest.approx(rel * 10.0)  # median of 12, 8 and 10
        assert by[(aid, "s1")].metric_decode_wall_ms_per_token == wall and by[(aid, "s1")].metric_decode_rel == rel
    assert list(derived["spread"]) == pytest.approx([0.04 * 10.0] * 3)
    assert {json.loads(e)["reference_median_ms"] for e in derived["extra"]} == {10.0}
    # the prefill's reference median is not the decode's: each ratio is scaled by its own reference
    assert by[(ids[0], "s1")].metric_decode_ms_per_token != pytest.approx(DECODE_RELS[0] * 70.0)
    assert baseline == [("decode_wall_ms_per_token", 9.0)]  # wall clock only: never passed off as drift-cancelled


def test_a_schema_4_db_gets_views_with_the_drift_cancelled_latency_on_migration(tmp_path, space) -> None:
    from nasbench.cli import main

    path = tmp_path / "b.duckdb"
    ids, rels, _ = _latency_db(path, space)
    with Store(path) as store:  # what schema 4 left: a view whose latency_ms is the wall clock
        store.con.execute(f"CREATE OR REPLACE VIEW {view_name(space.name)} AS SELECT arch_id, value AS "
                          "metric_latency_ms FROM measurements WHERE metric = 'latency_ms'")
        store.con.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema 6"):
        from nasbench.store.publish import publish

        publish(path, tmp_path / "published")
    assert main(["migrate", str(path)]) == 0
    con = connect_read_only(path)
    got = dict(con.execute(f"SELECT arch_id, metric_latency_ms FROM {view_name(space.name)} "
                           "WHERE supernet_id = 's1'").fetchall())
    con.close()
    assert got == pytest.approx(dict(zip(ids, (r * 70.0 for r in rels))))
