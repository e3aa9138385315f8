"""The shipped benchmark's invariants: whatever stage its build is at, what it holds is consistent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nasbench.space import arch_id, load_space
from nasbench.store import connect_read_only

REPO = Path(__file__).resolve().parents[2]
DB = REPO / "results" / "smollm2-135m.duckdb"
SPACE = REPO / "spaces" / "smollm2-135m.yaml"


@pytest.fixture(scope="module")
def con():
    if not DB.is_file():
        pytest.skip("no shipped benchmark DB")
    connection = connect_read_only(DB)
    yield connection
    connection.close()


def test_the_shipped_db_is_of_the_shipped_space(con):
    space = load_space(SPACE)
    assert con.execute("SELECT hash FROM spaces WHERE name = ?", [space.name]).fetchall() == [(space.hash,)]
    rows = con.execute("SELECT arch_id, arch FROM architectures WHERE space = ?", [space.name]).fetchall()
    assert rows
    for aid, arch in rows:  # every arch is a network of the space, constraints included, under its own id
        assert arch_id(space.check(json.loads(arch))) == aid


def test_no_value_is_missing_where_a_metric_was_measured(con):
    nulls = con.execute("SELECT metric, count(*) FROM measurements WHERE value IS NULL AND metric <> 'energy_j' "
                        "GROUP BY metric").fetchall()
    assert nulls == []
    tokens = con.execute("SELECT DISTINCT json_extract(extra, '$.tokens')::INTEGER FROM measurements "
                         "WHERE metric = 'ppl'").fetchall()
    assert tokens == [(4096,)]  # one perplexity protocol in the whole benchmark


def test_packed_supernets_match_their_committed_artifacts(con):
    rows = con.execute("SELECT id, checkpoint, config FROM supernets WHERE config IS NOT NULL").fetchall()
    checked = 0
    for supernet_id, checkpoint, config in rows:
        config = json.loads(config)
        if "sha256" not in config:
            continue
        manifest = json.loads((REPO / checkpoint / "manifest.json").read_text())
        assert manifest["id"] == supernet_id and manifest["files"]["trainable.safetensors"] == config["sha256"]
        checked += 1
    assert checked >= 1


def test_every_band_arch_is_measured_on_every_supernet_with_a_full_model_row(con):
    """(The pruning baselines prune the full model only: they have no band rows.)"""
    space = load_space(SPACE)
    bands = [arch_id(space.check(json.loads(line)["arch"]))
             for path in sorted((REPO / "results" / "bands").glob("smollm2-135m-[0-9]*.jsonl"))
             for line in path.read_text().splitlines() if line.strip()]
    full = arch_id(space.largest())
    for (supernet_id,) in con.execute("SELECT DISTINCT supernet_id FROM measurements WHERE metric = 'ppl' "
                                      "AND arch_id = ? AND supernet_id NOT LIKE 'baseline-%'", [full]).fetchall():
        measured = {r[0] for r in con.execute("SELECT arch_id FROM measurements WHERE metric = 'ppl' AND "
                                              "supernet_id = ?", [supernet_id]).fetchall()}
        assert set(bands) <= measured, supernet_id


def test_the_benchmark_covers_2000_archs_on_its_most_trained_supernet(con):
    """[benchmark]: >= 2,000 archs with ppl, latency, params, FLOPs and memory on the trained supernet. Latency, memory
    and FLOPs do not depend on weights: one row per arch under supernet_id '', in every supernet's wide view."""
    weight_free = ("latency_ms", "decode_ms_per_token", "latency_rel", "memory_mb", "weights_mb", "kv_bytes_per_token",
                   "flops")
    trained = con.execute(
        "SELECT s.id, s.tokens, count(DISTINCT m.arch_id) FROM supernets s JOIN measurements m ON m.supernet_id = s.id "
        "WHERE m.metric = 'ppl' AND s.tokens > 0 AND s.id NOT LIKE 'baseline-%' GROUP BY ALL").fetchall()
    full = [(sid, tokens) for sid, tokens, n in trained if n >= 2000]
    assert full, trained
    # the most trained packed supernet is among them: the benchmark is rebuilt on each continuation it ships
    assert max(full, key=lambda r: r[1])[1] == max(tokens for _, tokens, _ in trained)
    for sid, _ in full:
        # the built archs; an arch a baseline also trained alone (S6's standalone models) is the experiment's, not
        # the build's: timed with the baselines, on the machine of their latency pass
        missing = con.execute(
            "SELECT m.arch_id, w.metric FROM (SELECT DISTINCT arch_id FROM measurements WHERE supernet_id = ? AND "
            "metric = 'ppl' AND arch_id NOT IN (SELECT arch_id FROM measurements WHERE supernet_id LIKE "
            "'baseline-sliced-recovered-%')) m CROSS JOIN (SELECT unnest(?) AS metric) w WHERE NOT EXISTS (SELECT 1 "
            "FROM measurements x WHERE x.arch_id = m.arch_id AND x.metric = w.metric AND x.value IS NOT NULL AND "
            "x.supernet_id = '') LIMIT 5", [sid, list(weight_free)]).fetchall()
        assert missing == [], sid
    # no supernet keeps weight-free rows of its own (a baseline's model is not a sub-network: it keeps them)
    assert con.execute("SELECT count(*) FROM measurements WHERE metric IN (SELECT unnest(?)) AND supernet_id <> '' "
                       "AND supernet_id NOT LIKE 'baseline-%'", [list(weight_free)]).fetchone()[0] == 0


def test_the_main_supernet_is_recorded_and_its_wide_view_has_every_column(con):
    main = con.execute("SELECT value FROM meta WHERE key = 'main_supernet:smollm2-135m'").fetchone()
    assert main == ("smollm2-135m-recovery-3",)
    counts = con.execute(
        "SELECT count(*), count(metric_ppl), count(metric_latency_ms), count(metric_memory_mb), count(metric_flops), "
        "count(metric_params) FROM wide_smollm2_135m WHERE supernet_id = ?", list(main)).fetchone()
    assert counts == (2000,) * 6
    # a plain join gives the space's archs (the build's and the experiments'): the baselines' archs are listed apart
    assert con.execute("SELECT count(DISTINCT arch_id) FROM measurements JOIN architectures USING (space, arch_id)"
                       ).fetchone()[0] == con.execute("SELECT count(*) FROM architectures").fetchone()[0] >= 2000
    assert con.execute("SELECT count(DISTINCT supernet_id) FROM baseline_archs").fetchone()[0] >= 10


def test_the_default_latency_is_drift_cancelled_and_the_wall_clock_is_named(con):
    """The wide view's latency_ms is latency_rel x the full model's median re-timed wall clock, not the wall clock."""
    [(median,)] = con.execute("SELECT median(CAST(json_extract(extra, '$.reference_ms') AS DOUBLE)) FROM measurements "
                              "WHERE metric = 'latency_rel'").fetchall()
    rows = con.execute("SELECT w.metric_latency_ms, w.metric_latency_rel, w.metric_latency_wall_ms, m.value FROM "
                       "wide_smollm2_135m w JOIN measurements m ON m.arch_id = w.arch_id AND m.metric = 'latency_ms' "
                       "AND m.supernet_id = '' WHERE w.supernet_id = 'smollm2-135m-recovery-3'").fetchall()
    assert len(rows) == 2000 and 10 < median < 500  # a 128-token prefill of a 135M model on a CPU, in ms
    assert all(abs(ms - rel * median) <= 1e-9 * ms and wall == stored for ms, rel, wall, stored in rows)
    assert sum(abs(ms - wall) > 0.05 * wall for ms, _, wall, _ in rows) > 500  # the drift the wall clock keeps


def test_the_default_decode_latency_is_drift_cancelled_on_the_retest_archs(con):
    """decode_ms_per_token is decode_rel x the full model's median decode time per token; the decode wall clock
    (stored as decode_ms_per_token) reads as decode_wall_ms_per_token."""
    [(median,)] = con.execute("SELECT median(CAST(json_extract(extra, '$.reference_ms') AS DOUBLE)) FROM measurements "
                              "WHERE metric = 'decode_rel'").fetchall()
    rows = con.execute("SELECT w.metric_decode_ms_per_token, w.metric_decode_rel, w.metric_decode_wall_ms_per_token, "
                       "m.value FROM wide_smollm2_135m w JOIN measurements m ON m.arch_id = w.arch_id AND "
                       "m.metric = 'decode_ms_per_token' AND m.supernet_id = '' WHERE w.supernet_id = "
                       "'smollm2-135m-recovery-3' AND w.metric_decode_rel IS NOT NULL").fetchall()
    assert len(rows) >= 200 and 1 < median < 200
    assert all(abs(ms - rel * median) <= 1e-9 * ms and wall == stored for ms, rel, wall, stored in rows)


def test_every_accuracy_row_states_its_items_and_stderr_and_each_arch_has_one_protocol(con):
    """[benchmark]: accuracy with stderr per row; an arch of a supernet is measured on one task set at one item count
    (what `acc_avg` averages is then the same for every arch of that supernet)."""
    bad = con.execute("SELECT supernet_id, arch_id, task FROM measurements WHERE metric IN ('acc', 'acc_norm', 'mc2') "
                      "AND (json_extract(extra, '$.stderr') IS NULL OR json_extract(extra, '$.items') IS NULL "
                      "OR value NOT BETWEEN 0 AND 1) LIMIT 5").fetchall()
    assert bad == []
    protocols = con.execute(
        "SELECT supernet_id, count(DISTINCT tasks), count(DISTINCT items), count(*) FROM (SELECT supernet_id, arch_id, "
        "string_agg(task, ',' ORDER BY task) AS tasks, min(json_extract(extra, '$.items')::INTEGER) AS items "
        "FROM measurements WHERE metric = 'acc' GROUP BY ALL) GROUP BY ALL").fetchall()
    assert protocols and all(tasks == 1 and items == 1 for _, tasks, items, _ in protocols), protocols
    most = con.execute("SELECT supernet_id, count(DISTINCT task), min(json_extract(extra, '$.items')::INTEGER) FROM "
                       "measurements WHERE metric = 'acc' GROUP BY ALL ORDER BY count(DISTINCT arch_id) DESC LIMIT 1"
                       ).fetchone()
    assert most[1] >= 5 and most[2] >= 500, most  # the benchmark's accuracy protocol: >= 5 tasks at >= 500 items
