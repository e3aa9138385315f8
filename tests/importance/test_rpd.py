"""The RPD study on a tiny model: per-arch rows in DuckDB, resumable, and the RPD arithmetic."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nasbench.supernet import PRETRAINED
from nasbench.importance import run_rpd, variant_id
from nasbench.store import connect_read_only


def test_rpd_rows_arithmetic_and_resume(tiny_with_data, tmp_path) -> None:
    space, data = tiny_with_data
    db = tmp_path / "rpd.duckdb"
    kwargs = dict(n=4, seed=0, tokens=256, ppl_tokens=256, seq_len=64, schemes=["mean-mean", "var-var"],
                  layer_schemes=["block-importance"], data_dir=data, db=db, progress=False)
    result = run_rpd([space], **kwargs)
    assert set(result.rpd) == {f"{space.name}/mean-mean/block-importance", f"{space.name}/var-var/block-importance"}
    rows = result.per_arch
    assert len(rows) == 4 * 3
    before = {json.dumps(r["arch"]): r["ppl"] for r in rows if r["supernet_id"] == PRETRAINED}
    after = [r for r in rows if r["supernet_id"] == variant_id("mean-mean", "block-importance")]
    expected = np.mean([(before[json.dumps(r["arch"])] - r["ppl"]) / before[json.dumps(r["arch"])] for r in after])
    assert result.rpd[f"{space.name}/mean-mean/block-importance"] == pytest.approx(expected)
    con = connect_read_only(db)
    assert con.execute("SELECT count(*) FROM measurements WHERE metric = 'ppl' AND task = 'wikitext2-256'"
                       ).fetchone()[0] == 12
    assert con.execute("SELECT count(*) FROM supernets").fetchone()[0] == 3
    con.close()
    again = run_rpd([space], **kwargs)  # everything stored: nothing is evaluated, nothing added, same figures
    assert again.rpd == result.rpd
    assert all(r["seconds"] is None for r in again.per_arch)
    con = connect_read_only(db)
    assert con.execute("SELECT count(*) FROM measurements").fetchone()[0] == 12
