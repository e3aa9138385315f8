"""nasbench publish (Parquet + Croissant-style card + Syne Tune layout) and the model card of nasbench export."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml

from nasbench.cli import main
from nasbench.space import arch_id, load_space
from nasbench.store import Measurement, Store

from conftest import SPACES, tiny_space_doc

SUPERNETS = ("pretrained", "trained-a")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def bench_db(tmp_path, write_space):
    """A small benchmark: 6 archs of a tiny space; ppl on two supernets, latency and acc on `pretrained` only
    (the last arch has no latency), one value per row with a distinct cost."""
    doc = tiny_space_doc()
    doc["data"]["finetune"] = {"kind": "instructions", "path": "finetune/alpaca_gpt4_en_demo_999.json"}
    space = load_space(write_space(doc))
    archs = space.sample(6, seed=1)
    db = tmp_path / "bench.duckdb"
    rng = np.random.default_rng(0)
    with Store(db) as store:
        store.add_space(space)
        store.add_supernet("pretrained", space.name, space.model.source)
        store.add_supernet("trained-a", space.name, space.model.source, strategy="sandwich", steps=3,
                           config={"manifest_sha256": "ab" * 32})
        for i, arch in enumerate(archs):
            aid = arch_id(space.canonical(arch))
            rows = [Measurement(aid, s, "ppl", float(rng.uniform(10, 1e4)), "perplexity", device="cpu",
                                dtype="bfloat16", seq_len=512, cost_s=1.0 + i, extra={"tokens": 1024, "nll": 5.0 + i})
                    for s in SUPERNETS]
            rows.append(Measurement(aid, "pretrained", "acc", float(rng.uniform(0.2, 0.8)), "accuracy",
                                    task="arc_easy", device="cpu", dtype="bfloat16", cost_s=2.0,
                                    extra={"limit_items": 20}))
            if i < 5:
                rows.append(Measurement(aid, "pretrained", "latency_ms", float(rng.uniform(1, 9)), "ms",
                                        device="cpu", dtype="bfloat16", batch=1, seq_len=128, n_repeats=10,
                                        cost_s=0.5, extra={"threads": 2, "cpu": "test-cpu"},
                                        software={"torch": "2.13.0"}))
            store.add_results(space, arch, rows)
    return db, space


def _deserialize(path: Path):
    from syne_tune.blackbox_repository.blackbox_tabular import deserialize

    with warnings.catch_warnings():  # pandas deprecates the fastparquet engine Syne Tune 0.16 reads with
        warnings.simplefilter("ignore")
        return deserialize(str(path))


def test_publish_loads_in_syne_tune_pandas_and_duckdb(capsys, tmp_path, bench_db) -> None:
    db, space = bench_db
    out = tmp_path / "published"
    code, stdout, err = run(capsys, "publish", db, "--out", out)
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["archs"] == 6 and summary["measurements"] == 6 * 2 + 6 + 5

    con = duckdb.connect(str(db), read_only=True)
    truth = con.execute("SELECT arch_id, supernet_id, metric, task, value FROM measurements").df()
    con.close()

    # pandas: the tables hold the DB's rows and values exactly
    measurements = pd.read_parquet(out / "measurements.parquet")
    assert len(measurements) == len(truth)
    merged = measurements.merge(truth, on=["arch_id", "supernet_id", "metric", "task"], suffixes=("", "_db"))
    assert len(merged) == len(truth) and (merged["value"] == merged["value_db"]).all()
    assert len(pd.read_parquet(out / "architectures.parquet")) == 6
    wide = pd.read_parquet(out / "wide" / space.name / "trained-a.parquet")
    assert len(wide) == 6 and "metric_ppl" in wide and "metric_latency_ms" not in wide  # all-NULL columns dropped

    # DuckDB: plain SQL over the files
    [(n,)] = duckdb.connect().execute(
        f"SELECT count(*) FROM '{out / 'architectures.parquet'}' a JOIN '{out / 'measurements.parquet'}' m "
        "USING (space, arch_id) WHERE m.metric = 'ppl'").fetchall()
    assert n == 12

    # Syne Tune's own deserializer: one task per supernet, values as in the DB, shape metrics borrowed
    blackboxes = _deserialize(out / "syne_tune" / space.name)
    assert sorted(blackboxes) == sorted(SUPERNETS)
    meta = json.loads((out / "syne_tune" / space.name / "metadata.json").read_text())
    first = meta["arch_ids"][0]
    for supernet, bb in blackboxes.items():
        config = bb.hyperparameters.iloc[0].to_dict()
        assert space.canonical(space.from_syne_tune(config)) is not None
        assert arch_id(space.from_syne_tune(config)) == first
        got = bb.objective_function(config, fidelity={"step": 1}, seed=0)
        expected = truth[(truth.arch_id == first) & (truth.supernet_id == supernet) & (truth.metric == "ppl")]
        assert got["metric_ppl"] == expected["value"].item()
        latency = truth[(truth.arch_id == first) & (truth.metric == "latency_ms")]["value"]
        if len(latency):
            assert got["metric_latency_ms"] == latency.item()  # trained-a borrows pretrained's latency
        else:
            assert np.isnan(got["metric_latency_ms"])
    assert meta["objectives_directions"]["metric_acc_arc_easy"] == "maximize"
    assert meta["objectives_directions"]["metric_ppl"] == "minimize"

    # the card: checksums, units and directions, provenance, licences, citation
    card = json.loads((out / "croissant.json").read_text())
    for f in card["distribution"]:
        assert hashlib.sha256((out / f["contentUrl"]).read_bytes()).hexdigest() == f["sha256"], f["contentUrl"]
    metrics = {(m["metric"], m["task"]): m for m in card["nasbench"]["metrics"]}
    assert metrics[("ppl", "")]["unit"] == "perplexity" and metrics[("ppl", "")]["direction"] == "minimize"
    assert metrics[("acc", "arc_easy")]["direction"] == "maximize"
    latency = next(p for p in card["nasbench"]["provenance"] if p["metric"] == "latency_ms")
    assert latency["settings"] == {"threads": 2, "cpu": "test-cpu"} and latency["software"] == [{"torch": "2.13.0"}]
    sources = {d["path"]: d for d in card["nasbench"]["data_sources"]}
    assert sources["wikitext-2-raw/wiki.test.raw"]["license"].startswith("CC BY-SA 3.0")
    assert sources["finetune/alpaca_gpt4_en_demo_999.json"]["non_commercial"] is True
    trained = next(s for s in card["nasbench"]["supernets"] if s["id"] == "trained-a")
    assert trained["artifact_sha256"] == {"manifest_sha256": "ab" * 32}
    assert "2410.06479" in card["citeAs"]
    assert (out / "README.md").read_text().startswith("---\nlicense: apache-2.0\n")


def test_publish_is_deterministic_and_replaces_an_earlier_publication(capsys, tmp_path, bench_db) -> None:
    db, _ = bench_db

    def digest(directory: Path) -> dict[str, str]:
        return {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(directory.rglob("*")) if p.is_file()}

    assert run(capsys, "publish", db, "--out", tmp_path / "a")[0] == 0
    (tmp_path / "a" / "stale.txt").write_text("left from an older publication")
    assert run(capsys, "publish", db, "--out", tmp_path / "a")[0] == 0
    assert run(capsys, "publish", db, "--out", tmp_path / "b")[0] == 0
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert not (tmp_path / "a" / "stale.txt").exists()


def test_publish_errors_are_one_line(capsys, tmp_path, bench_db) -> None:
    db, _ = bench_db
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    code, _, err = run(capsys, "publish", db, "--out", busy)
    assert code == 2 and err.startswith("nasbench: error: --out: must be a new or empty directory")
    assert (busy / "notes.txt").read_text() == "mine"
    code, _, err = run(capsys, "publish", tmp_path / "missing.duckdb", "--out", tmp_path / "x")
    assert code == 2 and "database file not found" in err and len(err.strip().splitlines()) == 1


def test_exported_model_card_shows_the_db_row(capsys, tiny_with_data, tmp_path) -> None:
    space, _ = tiny_with_data
    arch = space.canonical(space.sample(1, seed=4)[0])
    aid = arch_id(arch)
    db = tmp_path / "bench.duckdb"
    ppl = 1234.567890123
    with Store(db) as store:
        store.add_space(space)
        store.add_results(space, arch, [
            Measurement(aid, "pretrained", "ppl", ppl, "perplexity", device="cpu", dtype="bfloat16", seq_len=512,
                        extra={"tokens": 1024}),
            Measurement(aid, "other-supernet", "ppl", 99.0, "perplexity", device="cpu", dtype="bfloat16",
                        seq_len=512, extra={"tokens": 1024})])
    code, out, err = run(capsys, "export", space.path, "--arch", json.dumps(arch), "--out", tmp_path / "sub",
                         "--db", db)
    assert code == 0, err
    assert "1 measured values" in out
    text = (tmp_path / "sub" / "README.md").read_text()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["library_name"] == "transformers" and "nasbench" in front["tags"] and front["license"]
    metric = front["model-index"][0]["results"][0]["metrics"][0]
    assert metric["type"] == "perplexity" and metric["value"] == ppl  # the DB row, not the other supernet's
    assert metric["args"] == {"tokens": 1024, "seq_len": 512, "dtype": "bfloat16", "device": "cpu"}
    assert aid in text and f"{space.params(arch):,}" in text and f"{space.flops(arch):,}" in text
    assert "lm_eval --model hf" in text and "AutoModelForCausalLM" in text

    # without --db the card is written all the same, without measurements
    code, _, err = run(capsys, "export", space.path, "--arch", json.dumps(arch), "--out", tmp_path / "bare")
    assert code == 0, err
    bare = (tmp_path / "bare" / "README.md").read_text()
    assert "model-index" not in bare and "None recorded" in bare


def test_model_card_names_the_hub_base_model_and_licences() -> None:
    from nasbench.cards import model_card

    space = load_space(SPACES / "smollm2-135m.yaml")
    arch = space.smallest()
    card = model_card(space, arch, arch_id=arch_id(arch), params=space.params(arch), flops=space.flops(arch),
                      supernet_id="x", weights="w", data_roles=("perplexity", "finetune"))
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and front["license"] == "apache-2.0"
    assert "CC BY-NC 4.0 **non-commercial**" in card and "CC BY-SA 3.0" in card


def test_shipped_publication_matches_the_shipped_db(tmp_path) -> None:
    from nasbench.store.publish import publish

    repo = SPACES.parent
    shipped = repo / "results" / "published" / "smollm2-135m"
    publish(repo / "results" / "smollm2-135m.duckdb", tmp_path / "fresh")

    def digest(directory: Path) -> dict[str, str]:
        return {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(directory.rglob("*")) if p.is_file()}

    assert digest(shipped) == digest(tmp_path / "fresh"), (
        "results/published/smollm2-135m is stale: rerun "
        "`nasbench publish results/smollm2-135m.duckdb --out results/published/smollm2-135m`")
    # a size guard, not a format rule: the Syne Tune blackbox is a dense float64 array of supernets x archs x
    # objectives, so every accuracy task measured on a few archs adds a mostly-NaN column (2 archs of accuracy took it
    # from 2.6 to 4.3 MB); the whole repository must stay well under what travels to a lent GPU (64 MiB). 7 MiB since
    # session 5: latency_rel on all 2,000 archs and the pretrained/sorted rows on 500 took it to 6.35 MB
    assert sum(p.stat().st_size for p in shipped.rglob("*") if p.is_file()) < 7 * 2**20
    blackboxes = _deserialize(shipped / "syne_tune" / "smollm2-135m")
    from nasbench.store import connect_read_only

    con = connect_read_only(repo / "results" / "smollm2-135m.duckdb")
    n_archs = con.execute("SELECT count(*) FROM architectures WHERE space = 'smollm2-135m'").fetchone()[0]
    con.close()
    for supernet in ("smollm2-135m-recovery-1", "smollm2-135m-recovery-3"):
        assert supernet in blackboxes
        assert len(blackboxes[supernet].hyperparameters) == n_archs
        # the benchmark's supernets answer every arch: perplexity their own, latency the shared weight-free rows
        answered = blackboxes[supernet].objectives_evaluations[:, 0, 0, :]
        names = blackboxes[supernet].objectives_names
        for column in ("metric_ppl", "metric_latency_ms", "metric_memory_mb"):
            assert not np.isnan(answered[:, names.index(column)]).any(), (supernet, column)
