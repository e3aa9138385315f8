"""The shipped benchmark's invariants: whatever stage its build is at, what it holds is consistent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nasbench.space import arch_id, load_space
from nasbench.store import connect_read_only

REPO = Path(__file__).resolve().parents[1]
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
