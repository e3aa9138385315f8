"""Profiling into DuckDB on a tiny model: rows, resume without duplicates, shards + merge, the wide view."""

from __future__ import annotations

import json

import pytest

from nasbench.cli import main
from nasbench.errors import NasBenchError
from nasbench.profile import ProfileConfig, parse_shard, profile, select_archs
from nasbench.space import arch_id
from nasbench.store import Store, connect_read_only


FAST = dict(ppl_tokens=256, seq_len=64, latency_seq_len=16, latency_repeats=3, dtype="float32")


def rows(db, sql="SELECT count(*) FROM measurements"):
    con = connect_read_only(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_select_archs_dedups_adds_extremes_and_shards(tiny_with_data) -> None:
    space, _ = tiny_with_data
    config = ProfileConfig(n=12, seed=1)
    archs = select_archs(space, config)
    ids = [arch_id(a) for a in archs]
    assert len(ids) == len(set(ids))
    assert arch_id(space.smallest()) in ids and arch_id(space.largest()) in ids
    shards = [select_archs(space, ProfileConfig(n=12, seed=1, shard=(i, 3))) for i in range(3)]
    assert sorted(arch_id(a) for s in shards for a in s) == sorted(ids)
    with pytest.raises(NasBenchError, match="^shard: "):
        parse_shard("3/3")


def test_explicit_archs_come_first_and_are_checked(tiny_with_data) -> None:
    from nasbench.errors import IllegalSubNetworkError

    space, _ = tiny_with_data
    mine = space.sample(2, seed=7)
    archs = select_archs(space, ProfileConfig(n=0, archs=tuple(mine)))
    assert [arch_id(a) for a in archs[:2]] == [arch_id(space.canonical(a)) for a in mine]
    assert len(archs) == len({arch_id(a) for a in [*mine, space.smallest(), space.largest()]})
    with pytest.raises(IllegalSubNetworkError, match=r"^archs\[0\]\.n_layers"):
        select_archs(space, ProfileConfig(n=0, archs=(dict(mine[0], n_layers=99),)))


def test_profile_writes_every_metric_and_resumes_without_duplicates(tiny_with_data, tmp_path) -> None:
    space, data = tiny_with_data
    db = tmp_path / "b.duckdb"
    config = ProfileConfig(n=3, seed=0, metrics=("ppl", "latency", "memory", "energy"), **FAST)
    first = profile(space, db, config, data_dir=data, progress=False)
    n_archs = first.archs
    per_arch = {"flops", "ppl", "latency_ms", "memory_mb", "weights_mb", "kv_bytes_per_token", "energy_j"}
    assert first.rows == n_archs * len(per_arch)
    # memory: exact weight bytes (= params x dtype bytes), exact KV bytes per token, a measured prefill peak on top
    size = {"bfloat16": 2, "float32": 4}[config.dtype]
    for aid, params, layers, kv, head, weights, kv_bytes, total in rows(db, """
            SELECT a.arch_id, a.params, a.n_layers, a.n_kv_groups, a.head_size, w.value, k.value, m.value
            FROM architectures a JOIN measurements w ON w.arch_id = a.arch_id AND w.metric = 'weights_mb'
            JOIN measurements k ON k.arch_id = a.arch_id AND k.metric = 'kv_bytes_per_token'
            JOIN measurements m ON m.arch_id = a.arch_id AND m.metric = 'memory_mb'"""):
        assert weights == params * size / 2**20
        assert kv_bytes == 2 * layers * kv * head * size
        assert total >= weights  # a tiny model's prefill may fit in pages the allocator already holds
    stored = rows(db, "SELECT metric, count(*) FROM measurements GROUP BY metric")
    assert dict(stored) == {m: n_archs for m in per_arch}
    assert rows(db, "SELECT count(*) FROM measurements WHERE metric = 'energy_j' AND value IS NULL")[0][0] == n_archs
    # a second run finds everything stored: nothing is measured, nothing added
    again = profile(space, db, config, data_dir=data, progress=False)
    assert again.profiled == 0 and again.rows == 0
    assert rows(db)[0][0] == first.rows
    # an arch lost in flight (its rows gone) is measured again, and only it
    victim = arch_id(space.largest())
    with Store(db) as store:
        store.con.execute("DELETE FROM measurements WHERE arch_id = ?", [victim])
    third = profile(space, db, config, data_dir=data, progress=False)
    assert third.profiled == 1 and rows(db)[0][0] == first.rows


def test_remeasure_replaces_old_rows_once_and_resumes(tiny_with_data, tmp_path) -> None:
    import time
    from datetime import datetime, timezone

    space, data = tiny_with_data
    db = tmp_path / "b.duckdb"
    config = ProfileConfig(n=2, seed=0, metrics=("ppl", "latency"), **FAST)
    first = profile(space, db, config, data_dir=data, progress=False)
    before = dict(rows(db, "SELECT arch_id || metric, created_at FROM measurements"))
    time.sleep(0.01)
    cut = datetime.now(timezone.utc).replace(tzinfo=None).isoformat()
    redo = ProfileConfig(n=2, seed=0, metrics=("latency",), remeasure_before=cut, **FAST)
    # a kill after one arch: that arch's latency is new, the others' still the old rows (none lost, none doubled)
    one = profile(space, db, ProfileConfig(**{**redo.__dict__, "shard": (0, first.archs)}), data_dir=data,
                  progress=False)
    assert one.profiled == 1 and rows(db)[0][0] == first.rows
    second = profile(space, db, redo, data_dir=data, progress=False)
    assert second.profiled == first.archs - 1 and rows(db)[0][0] == first.rows
    after = dict(rows(db, "SELECT arch_id || metric, created_at FROM measurements"))
    for key, when in after.items():  # latency (and the flops riding along) replaced, ppl kept
        assert (when > before[key]) == (not key.endswith("ppl")), key
    assert profile(space, db, redo, data_dir=data, progress=False).profiled == 0  # resumed: nothing left
    with pytest.raises(NasBenchError, match="^remeasure_before: "):
        ProfileConfig(remeasure_before="yesterday")


def test_perplexity_in_the_db_equals_the_dense_model(tiny_with_data, tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    from nasbench.models import load_tokenizer
    from nasbench.perplexity import perplexity, tokenize_corpus, windows
    from nasbench.supernet import Supernet

    space, data = tiny_with_data
    db = tmp_path / "b.duckdb"
    profile(space, db, ProfileConfig(n=2, seed=3, metrics=("ppl",), **FAST), data_dir=data, progress=False)
    supernet = Supernet(AutoModelForCausalLM.from_pretrained(space.model.hf), space)
    text = (data / "wikitext-2-raw/wiki.test.raw").read_text()
    ids = windows(tokenize_corpus(load_tokenizer(space.model), text), 64, 256)
    for aid, value in rows(db, "SELECT arch_id, value FROM measurements WHERE metric = 'ppl'"):
        arch = json.loads(rows(db, f"SELECT arch FROM architectures WHERE arch_id = '{aid}'")[0][0])
        dense = supernet.extract(arch)
        assert value == pytest.approx(perplexity(dense, ids).ppl, rel=1e-5)


def test_shards_merge_into_the_single_run(tiny_with_data, tmp_path, capsys) -> None:
    space, data = tiny_with_data
    config = dict(n=4, seed=2, metrics=("ppl",), **FAST)
    whole = tmp_path / "whole.duckdb"
    profile(space, whole, ProfileConfig(**config), data_dir=data, progress=False)
    parts = [tmp_path / f"shard{i}.duckdb" for i in range(2)]
    for i, part in enumerate(parts):
        profile(space, part, ProfileConfig(**config, shard=(i, 2)), data_dir=data, progress=False)
    merged = tmp_path / "merged.duckdb"
    assert main(["merge", str(merged), *map(str, parts)]) == 0
    assert main(["merge", str(merged), *map(str, parts)]) == 0  # again: no duplicates
    out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out[-1])["new_rows"]["measurements"] == 0
    key = "SELECT arch_id, metric, round(value, 6) FROM measurements ORDER BY 1, 2"
    assert rows(merged, key) == rows(whole, key)
    view = rows(merged, "SELECT count(*), count(metric_ppl), count(metric_params) FROM wide_tiny_llama")[0]
    assert view[0] == view[1] == view[2] == len(rows(whole, "SELECT DISTINCT arch_id FROM measurements"))


def test_accuracy_rows_from_lm_eval(tiny_with_data, tmp_path, shared_data) -> None:
    space, data = tiny_with_data
    for source in ("commonsense_eval", "mmlu", "truthfulqa", "lambada"):
        (data / source).symlink_to(shared_data / source)
    db = tmp_path / "b.duckdb"
    config = ProfileConfig(n=1, seed=0, metrics=("acc",), tasks=("arc_easy", "winogrande", "truthfulqa_mc2"),
                           limit_items=3, **FAST)
    summary = profile(space, db, config, data_dir=data, progress=False)
    got = rows(db, "SELECT task, metric, value, extra FROM measurements WHERE task <> '' ORDER BY 1, 2")
    assert {(t, m) for t, m, _, _ in got} == {("arc_easy", "acc"), ("arc_easy", "acc_norm"), ("winogrande", "acc"),
                                              ("truthfulqa_mc2", "mc2")}
    for _, _, value, extra in got:
        assert 0.0 <= value <= 1.0 and json.loads(extra)["items"] == 3 and json.loads(extra)["scorer"] == "packed"
    view = rows(db, "SELECT metric_acc_arc_easy, metric_mc2_truthfulqa_mc2 FROM wide_tiny_llama "
                    "WHERE metric_acc_arc_easy IS NOT NULL")
    assert len(view) == summary.archs


def test_profile_cli_bad_flags(capsys, tiny_with_data) -> None:
    space, data = tiny_with_data
    capsys.readouterr()  # the fixture's own output
    for argv, fragment in ((["--metrics", "ppl,speed"], "--metrics"), (["--shard", "x"], "--shard"),
                           (["--tasks", "arc_easy,nope", "--metrics", "acc"], "--tasks")):
        code = main(["profile", space.path, "--n", "1", "--data-dir", str(data), "--db",
                     str(data / "x.duckdb"), *argv])
        err = capsys.readouterr().err
        assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err


def test_relative_latency_times_the_pair_alternately_and_cancels_a_slow_down() -> None:
    import time
    from types import SimpleNamespace

    import torch

    from nasbench.profile.latency import measure_relative_latency

    class Sleeper(torch.nn.Module):
        """A 'model' whose call takes ``ms`` times the machine's current slowness."""

        def __init__(self, ms, clock):
            super().__init__()
            self.ms, self.clock, self.w = ms, clock, torch.nn.Parameter(torch.zeros(1))
            self.config = SimpleNamespace(vocab_size=10)

        def forward(self, input_ids, use_cache=False):
            self.clock["calls"] += 1
            time.sleep(self.ms * (3.0 if self.clock["calls"] > 8 else 1.0) / 1000)  # the machine slows 3x midway

    clock = {"calls": 0}
    rel = measure_relative_latency(Sleeper(4, clock), Sleeper(8, clock), seq_len=4, repeats=8)
    assert 0.4 < rel.ratio < 0.6 and rel.repeats == 8  # 0.5 despite the slow-down
    assert rel.model_ms > 6  # the raw time saw the slow-down: a plain median would have mixed both speeds


def test_profile_latency_rel_is_relative_to_the_full_model(tiny_with_data, tmp_path) -> None:
    space, data = tiny_with_data
    db = tmp_path / "b.duckdb"
    config = ProfileConfig(n=3, seed=0, metrics=("latency_rel",), **FAST)
    summary = profile(space, db, config, data_dir=data, progress=False)
    stored = rows(db, "SELECT arch_id, value, unit, extra FROM measurements WHERE metric = 'latency_rel'")
    assert len(stored) == summary.archs == summary.profiled
    full = arch_id(space.largest())
    for aid, value, unit, extra in stored:
        assert unit == "x full model" and value > 0 and json.loads(extra)["reference"] == full
        if aid == full:
            assert value == 1.0
    from nasbench.store import reference_drift

    drift = reference_drift(db, space.name)  # the full model re-timed beside every arch: the machine's drift
    assert drift["rows"] == len(stored) and 0 < drift["p5"] <= drift["median"] <= drift["p95"]
    assert not rows(db, "SELECT count(*) FROM measurements WHERE metric = 'decode_rel'")[0][0]
    # with --decode-tokens the decode time per token is timed the same way: a decode_rel row beside each
    config = ProfileConfig(n=3, seed=0, metrics=("latency_rel",), decode_tokens=2, **FAST)
    again = profile(space, db, config, data_dir=data, progress=False)
    assert again.profiled == summary.archs  # decode_rel was missing for every arch
    decode = rows(db, "SELECT arch_id, value, unit, n_repeats, extra FROM measurements WHERE metric = 'decode_rel'")
    assert len(decode) == len(stored)
    for aid, value, unit, n, extra in decode:
        extra = json.loads(extra)
        assert unit == "x full model" and value > 0 and n == 3 and extra["decode_tokens"] == 2
        assert extra["reference"] == full and extra["reference_ms"] > 0 and extra["model_ms"] > 0
        if aid == full:
            assert value == 1.0


def test_pooled_visits_take_the_median_of_every_pair_and_keep_each_visits_median() -> None:
    from nasbench.profile.latency import RelativeLatency, pool_visits

    def visit(ratios, seconds=1.0):
        pairs = tuple((r * 10, 10.0) for r in ratios)
        return RelativeLatency(sorted(ratios)[len(ratios) // 2], 0.0, 0.0, len(ratios), 0.0, 10.0, threads=2,
                               seconds=seconds, pairs=pairs,
                               decode=RelativeLatency(1.0, 0.0, 0.0, 1, 20.0, 20.0, threads=2, pairs=((20.0, 20.0),)))

    pooled = pool_visits([visit([0.5, 0.6, 0.7]), visit([0.8, 0.9, 1.0]), visit([0.55, 0.65, 0.75], 2.0)])
    assert pooled.ratio == pytest.approx(0.7) and pooled.repeats == 9  # the median of all 9, not of the 3 medians
    assert pooled.visits == pytest.approx((0.6, 0.9, 0.65)) and pooled.seconds == 4.0
    assert pooled.decode.repeats == 3 and pooled.decode.visits == (1.0, 1.0, 1.0)
    assert pool_visits([visit([0.5, 0.6, 0.7])]).visits == ()  # one visit is not "pooled"
    with pytest.raises(ValueError, match="threads"):
        pool_visits([visit([0.5]), RelativeLatency(1.0, 0, 0, 1, 1, 1, threads=1, pairs=((1.0, 1.0),))])


def test_latency_visits_revisit_the_archs_and_pool_their_pairs(tiny_with_data, tmp_path, capsys) -> None:
    space, data = tiny_with_data
    db = tmp_path / "s.duckdb"
    config = ProfileConfig(n=3, seed=0, metrics=("latency_rel",), decode_tokens=2, latency_visits=3,
                           **dict(FAST, latency_repeats=6))
    summary = profile(space, db, config, data_dir=data, progress=False)
    full = arch_id(space.largest())
    for metric, pairs in (("latency_rel", 6), ("decode_rel", 3)):  # prefill 6 / 3 visits, decode max(3, 2) / 3
        stored = rows(db, f"SELECT arch_id, value, n_repeats, extra FROM measurements WHERE metric = '{metric}'")
        assert len(stored) == summary.archs == summary.profiled
        for aid, value, n, extra in stored:
            extra = json.loads(extra)
            assert n == pairs and len(extra["visits"]) == 3 and extra["reference"] == full
            assert min(extra["visits"]) <= value <= max(extra["visits"]) or aid == full
            if aid == full:
                assert value == 1.0
    assert profile(space, db, config, data_dir=data, progress=False).profiled == 0  # resumes: nothing missing
    with pytest.raises(NasBenchError, match="latency_rel alone"):
        ProfileConfig(metrics=("latency_rel", "ppl"), latency_visits=2)
    # decode's pairs: a third of prefill's by default, or as many as asked for
    assert ProfileConfig(latency_repeats=30).decode_pairs == 10 and ProfileConfig(latency_repeats=3).decode_pairs == 3
    assert ProfileConfig(latency_repeats=30, decode_repeats=24).decode_pairs == 24
    with pytest.raises(NasBenchError, match="decode_repeats"):
        ProfileConfig(decode_repeats=0)
    more = ProfileConfig(n=0, metrics=("latency_rel",), decode_tokens=2, latency_visits=2, decode_repeats=5,
                         remeasure_before="2999-01-01", **dict(FAST, latency_repeats=6))
    assert profile(space, db, more, data_dir=data, progress=False).profiled == 2  # the smallest and the largest
    assert {n for (n,) in rows(db, "SELECT n_repeats FROM measurements WHERE metric = 'decode_rel' AND arch_id = "
                                   f"'{full}'")} == {6}  # 5 pairs in 2 visits: 3 each
    capsys.readouterr()
    code = main(["profile", space.path, "--n", "1", "--data-dir", str(data), "--db", str(db), "--latency-visits",
                 "0", "--metrics", "latency_rel"])
    err = capsys.readouterr().err
    assert code == 2 and "--latency-visits: must be >= 1" in err and len(err.strip().splitlines()) == 1, err


def test_export_verify_ppl_reloads_the_model_and_matches_the_benchmark_row(tiny_with_data, tmp_path, capsys) -> None:
    space, data = tiny_with_data
    db = tmp_path / "b.duckdb"
    arch = space.sample(1, seed=4)[0]
    profile(space, db, ProfileConfig(n=0, archs=(arch,), metrics=("ppl",), endpoints=False, **FAST), data_dir=data,
            progress=False)
    args = ["export", space.path, "--arch", json.dumps(arch), "--out", str(tmp_path / "sub"), "--db", str(db),
            "--verify-ppl", "--data-dir", str(data)]
    assert main(args) == 0
    check = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert check["verify_ppl"] == arch_id(space.canonical(arch)) and abs(check["rel_diff"]) <= 1e-3
    assert check["tokens"] == FAST["ppl_tokens"] and check["dtype"] == "float32"
    assert main(args[:6] + ["--verify-ppl"]) == 2  # no --db: nothing to check against
    assert "needs --db" in capsys.readouterr().err
