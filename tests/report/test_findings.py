"""The report's supporting findings: RPD with intervals and supernet fronts compared by paired bootstrap, on tiny
DBs whose answer is known."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from nasbench.report.findings import compare_supernets, importance_section, training_section
from nasbench.models import tiny_space
from nasbench.space import arch_id
from nasbench.stats import bootstrap_ci
from nasbench.store import Measurement, Store


def _ppl(space, store, supernet, archs, value_of, task=""):
    for arch in archs:
        store.add_results(space, arch, [Measurement(arch_id=arch_id(arch), supernet_id=supernet, metric="ppl",
                                                    value=value_of(arch), unit="perplexity", seq_len=512, task=task)])


def test_bootstrap_interval_is_seeded_and_covers_a_mean():
    x = np.random.default_rng(3).normal(2.0, 1.0, 200)
    a = bootstrap_ci(lambda idx: float(x[idx].mean()), len(x))
    assert a == bootstrap_ci(lambda idx: float(x[idx].mean()), len(x))
    assert a[0] < x.mean() < a[1] and a[1] - a[0] < 0.5


def _fronts_db(tmp_path, n_archs, seed, supernets):
    """A DB whose supernets' perplexities are ``scale * full params / params`` on their first ``count`` archs;
    ``supernets``: ``(id, strategy or None for an untrained one, tokens, count, scale)``."""
    space = tiny_space(tmp_path / "s", "llama")
    archs = space.sample(n_archs, seed=seed)
    full = space.params(space.largest())
    db = tmp_path / "b.duckdb"
    with Store(db) as store:
        store.add_space(space)
        for sid, strategy, tokens, count, scale in supernets:
            if strategy is not None:
                store.add_supernet(sid, space.name, "tiny", strategy=strategy, kd="kl", tokens=tokens, steps=3)
            _ppl(space, store, sid, archs[:count], lambda a, scale=scale: scale * full / space.params(a))
    return space, archs, db


def test_a_better_supernet_wins_significantly(tmp_path):
    # trained-a is 3x better on every arch; trained-b 1.5x worse than the pretrained model on none: 1.2x better
    space, archs, db = _fronts_db(tmp_path, 60, 4, [("pretrained", None, 0, 60, 50.0),
                                                    ("trained-a", "sandwich", 1000, 60, 50.0 / 3),
                                                    ("trained-b", "random", 1000, 60, 50.0 / 1.2)])
    compared = compare_supernets([("tiny", db)], space)
    fronts, n, diffs = compared[0].fronts, compared[0].shared, compared[0].diffs
    assert [f.supernet for f in fronts] == ["trained-a", "trained-b", "pretrained"] and n == len(
        {arch_id(a) for a in archs} - {arch_id(space.largest())})
    d, low, high = diffs["pretrained"]
    assert d == fronts[2].hv - fronts[0].hv and high < 0  # significantly worse
    assert math.isclose(fronts[0].points[0, 1] - fronts[2].points[0, 1], -math.log(3))
    text = training_section(compared, space, tmp_path)
    assert "significantly worse" in text and (tmp_path / "supernet-fronts-0.png").stat().st_size > 0
    # every supernet's perplexity is a multiple of 1 / params here: each ranks the archs exactly as the best
    assert "(Kendall tau of perplexity on the" in text and "`trained-b` (random, kd kl, 1,000 tokens) 1.000" in text
    assert training_section(compared, space, tmp_path) == text  # the same bytes every run


def test_rpd_section_reads_pretrained_and_sorted_rows(tmp_path):
    space = tiny_space(tmp_path / "s", "llama")
    archs = space.sample(20, seed=5)
    db = tmp_path / "rpd.duckdb"
    with Store(db) as store:
        store.add_space(space)
        _ppl(space, store, "pretrained", archs, lambda a: 1000.0, task="wikitext2-512")
        store.add_supernet("sorted-mean-mean-block-importance", space.name, "tiny", strategy="importance-sorted")
        _ppl(space, store, "sorted-mean-mean-block-importance", archs, lambda a: 100.0, task="wikitext2-512")
    text = importance_section(db, tmp_path)
    assert "| mean-mean-block-importance | 20 | 0.9 [0.9, 0.9] | 0.9 | 100% |" in text
    assert "for 1 of 1" in text and (tmp_path / "importance-rpd.png").stat().st_size > 0
    assert "not answered" in importance_section(None, tmp_path)


def test_datasheet_names_what_is_measured_and_what_is_missing(tmp_path):
    from nasbench.report.datasheet import cards_section, limits_section, provenance_section

    space = tiny_space(tmp_path / "s", "llama")
    archs = space.sample(5, seed=6)
    db = tmp_path / "d.duckdb"
    with Store(db) as store:
        store.add_space(space)
        store.add_supernet("trained-a", space.name, "tiny", strategy="sandwich", kd="kl", peft="lora", tokens=1000,
                           config={"sha256": "ab" * 32})
        for arch in archs:
            store.add_results(space, arch, [Measurement(
                arch_id=arch_id(arch), supernet_id="trained-a", metric="ppl", value=10.0, unit="perplexity",
                seq_len=512, device="cpu", dtype="float32", cost_s=30.0,
                software={"cpu": "TestCPU", "threads": "2", "torch": "2.13.0"}),
                Measurement(arch_id=arch_id(arch), supernet_id="trained-a", metric="latency_ms", value=5.0, unit="ms",
                            device="cpu", dtype="float32", extra={"cv": 0.05}, software={"cpu": "TestCPU"})])
    assert "No surrogate cards" in cards_section(db, space)
    card = dict(space=space.name, metric="ppl", model="gp", transform="log", n_train=4, n_test=1, spearman_rho=0.9,
                r2=0.8, mae=1.0, coverage_90=0.9, loso_kendall_tau=None, loso_n=0, cv={}, data_hash="h")
    with Store(db) as store:
        store.add_cards([SimpleNamespace(**card, supernet_id=s, kendall_tau=t) for s, t in (("a", 0.9), ("b", 0.5))])
    goals = cards_section(db, space).splitlines()[-1]
    assert goals == "Goals: `a` ppl tau 0.900 >= 0.85; `b` ppl tau 0.500 < 0.85; no card for latency_ms, " \
                    "latency_rel, acc_avg (not enough measured archs)."
    prov = provenance_section(db, space)
    assert "| `trained-a` | ppl | - | cpu | float32 | 5 | cpu TestCPU, threads 2, torch 2.13.0 | 2.5 |" in prov
    assert "sandwich, kd kl, lora, 1,000 training tokens, artifact sha256 `abababababababab…`" in prov
    limits = limits_section(db, space)
    assert f"Archs with perplexity on `trained-a`: {len({arch_id(a) for a in archs})}" in limits
    assert "no arch of the trained supernet has accuracy rows yet" in limits
    assert "median coefficient of variation of 5.0% (90th percentile 5.0%" in limits


def test_datasheet_reads_the_continued_supernet_and_borrows_its_latency(tmp_path):
    """Two trained supernets with perplexity on the same archs: the one trained on more tokens is the benchmark's,
    and its latency lines come from the rows measured beside the other (latency is shape-only, stored once per arch);
    on the old rule (most archs of any metric) the piece with the latency rows won and the continued one was never
    named."""
    from nasbench.report.datasheet import limits_section

    space = tiny_space(tmp_path / "s", "llama")
    archs = space.sample(6, seed=7)
    db = tmp_path / "d.duckdb"
    with Store(db) as store:
        store.add_space(space)
        store.add_supernet("piece-1", space.name, "tiny", strategy="sandwich", kd="kl", tokens=1000)
        store.add_supernet("piece-2", space.name, "tiny", strategy="sandwich", kd="kl", tokens=3000)
        for arch in archs:
            aid = arch_id(arch)
            store.add_results(space, arch, [
                Measurement(arch_id=aid, supernet_id=s, metric="ppl", value=v, unit="perplexity", seq_len=512)
                for s, v in (("piece-1", 20.0), ("piece-2", 15.0))] + [
                Measurement(arch_id=aid, supernet_id="piece-1", metric="latency_ms", value=5.0, unit="ms",
                            device="cpu", dtype="float32", extra={"cv": 0.04}, software={"cpu": "TestCPU"})])
    limits = limits_section(db, space)
    n = len({arch_id(a) for a in archs})
    assert f"Archs with perplexity on `piece-2`: {n}" in limits
    # latency is shape-only: the store keeps it once per arch (supernet ''), and it counts for piece-2 too
    assert f"{n} archs measured once per arch for every supernet" in limits and "cpu TestCPU" in limits
    assert "median coefficient of variation of 4.0%" in limits


def test_a_supernet_on_few_of_the_shared_archs_is_left_out_and_named(tmp_path, monkeypatch):
    """A continuation piece measured on its band archs only must not cut the others' comparison down to them: a
    supernet joins only if the group keeps a tenth of the best-covered supernet's archs (when any supernet with
    MIN_SHARED in common joined, the 30 shared archs became 6); an untrained reference on a third of them joins."""
    from nasbench.report import findings

    monkeypatch.setattr(findings, "MIN_SHARED", 3)
    space, archs, db = _fronts_db(tmp_path, 90, 8, [("trained-a", "sandwich", 1000, 90, 20.0),
                                                    ("pretrained", None, 0, 30, 50.0),
                                                    ("piece-b", "sandwich", 2000, 6, 10.0)])
    (c,) = compare_supernets([("tiny", db)], space)
    n = len({arch_id(a) for a in archs[:30]} - {arch_id(space.largest())})
    assert [f.supernet for f in c.fronts] == ["trained-a", "pretrained"] and c.shared == n
    assert c.left_out == {"piece-b": len({arch_id(a) for a in archs[:6]})}
    text = training_section([c], space, tmp_path)
    assert f"{n} shared archs" in text and "Left out (" in text and "`piece-b` (" in text
