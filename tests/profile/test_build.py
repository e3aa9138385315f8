"""nasbench build: a seeded plan cut into shard DBs, resumable, merged into the benchmark DB."""

from __future__ import annotations

import json

import pytest

from nasbench.cli import main
from nasbench.errors import NasBenchError
from nasbench.profile.build import plan_archs, shard_path
from nasbench.profile import ProfileConfig
from nasbench.space import arch_id
from nasbench.store import connect_read_only

FAST = dict(metrics=("ppl",), ppl_tokens=256, seq_len=64, dtype="float32")


def test_plan_is_seeded_and_puts_the_bands_first(tiny_with_data, tmp_path):
    space, _ = tiny_with_data
    band = tmp_path / "band.jsonl"
    mine = space.sample(2, seed=9)
    band.write_text("".join(json.dumps({"arch": a}) + "\n" for a in mine))
    plan = plan_archs(space, total=12, seed=1, grid=4, grid_bins=2, bands=(band,))
    assert [arch_id(a) for a in plan[:2]] == [arch_id(a) for a in mine]
    assert len(plan) == len({arch_id(a) for a in plan}) == 12
    assert plan == plan_archs(space, total=12, seed=1, grid=4, grid_bins=2, bands=(band,))
    # an arch file (a measured front) goes after the bands; archs the plan holds anyway only move earlier
    front = tmp_path / "front.jsonl"
    moved = [plan[-1], plan[5]]
    front.write_text("".join(json.dumps({"arch_id": arch_id(a), "arch": a}) + "\n" for a in moved))
    first = plan_archs(space, total=12, seed=1, grid=4, grid_bins=2, bands=(band,), arch_files=(front,))
    assert [arch_id(a) for a in first[:4]] == [arch_id(a) for a in (*mine, *moved)]
    assert {arch_id(a) for a in first} == {arch_id(a) for a in plan}
    front.write_text('{"arch": {"n_layers": 2}\n')
    with pytest.raises(NasBenchError, match="front.jsonl:1"):
        plan_archs(space, total=12, seed=1, grid=4, grid_bins=2, arch_files=(front,))


def test_build_profiles_shards_resumes_and_merges(tiny_with_data, tmp_path, capsys):
    from nasbench.profile.build import build

    space, data = tiny_with_data
    shards, db = tmp_path / "shards", tmp_path / "bench.duckdb"
    config = ProfileConfig(**FAST)
    stopped = build(space, supernet=None, db=db, shards=shards, config=config, total=5, per_shard=2, grid=0,
                    minutes=0.0, data_dir=data, progress=False)
    assert stopped.stopped and stopped.profiled == 0 and stopped.shards == 3
    first = build(space, supernet=None, db=db, shards=shards, config=config, total=5, per_shard=2, grid=0,
                  data_dir=data, progress=False)
    assert not first.stopped and first.done_shards == [0, 1, 2]
    # merged completely: the DB is their record, the shard files are gone
    assert not any(shard_path(shards, space, "pretrained", k).is_file() for k in range(3))
    con = connect_read_only(db)
    n = con.execute("SELECT count(DISTINCT arch_id) FROM measurements WHERE metric = 'ppl'").fetchone()[0]
    con.close()
    assert n >= 5  # the plan, plus the smallest and largest in the first shard
    again = build(space, supernet=None, db=db, shards=shards, config=config, total=5, per_shard=2, grid=0,
                  data_dir=data, progress=False)
    assert again.profiled == 0 and again.merged is None and again.done_shards == [0, 1, 2]
    # a metric the DB lacks makes the shards work again; keep_shards leaves their files
    more = build(space, supernet=None, db=db, shards=shards,
                 config=ProfileConfig(**{**FAST, "metrics": ("ppl", "memory")}), total=5, per_shard=2, grid=0,
                 data_dir=data, progress=False, keep_shards=True)
    assert more.profiled >= 5 and all(shard_path(shards, space, "pretrained", k).is_file() for k in range(3))
    assert main(["build", space.path, "--db", str(db), "--shards", str(shards), "--total", "5", "--per-shard", "2",
                 "--grid", "0", "--metrics", "ppl", "--ppl-tokens", "256", "--seq-len", "64", "--dtype", "float32",
                 "--data-dir", str(data)]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["complete_shards"] == [0, 1, 2]


def test_build_refuses_missing_arch_files_before_any_work(tiny_with_data, tmp_path, capsys):
    space, data = tiny_with_data
    capsys.readouterr()
    for flag in ("--bands", "--archs"):
        assert main(["build", space.path, "--db", str(tmp_path / "b.duckdb"), "--shards", str(tmp_path / "s"), flag,
                     str(tmp_path / "nope.jsonl"), "--data-dir", str(data)]) == 2
        err = capsys.readouterr().err
        assert f"{flag}: no such file" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "b.duckdb").exists() and not (tmp_path / "s").exists()
