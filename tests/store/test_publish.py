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
N_ARCHS = 12


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def bench_db(tmp_path, write_space):
    """A small benchmark: 12 archs of a tiny space; ppl on two supernets, latency (wall clock and latency_rel, whose
    reference times 40..50 ms have the median 45) on the first 11 archs (measured once, on `pretrained`'s weights: a
    weight-free value), acc on `pretrained`'s first 10, and a 2:4 baseline of the first arch; one value per row with
    a distinct cost."""
    doc = tiny_space_doc()
    doc["data"]["finetune"] = {"kind": "instructions", "path": "finetune/alpaca_gpt4_en_demo_999.json"}
    doc["objectives"] = [{"name": "ppl", "minimize": True, "unit": "perplexity"},
                         {"name": "latency_ms", "minimize": True, "unit": "ms"}]
    space = load_space(write_space(doc))
    archs = space.sample(N_ARCHS, seed=1)
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
            if i < 10:
                rows.append(Measurement(aid, "pretrained", "acc", float(rng.uniform(0.2, 0.8)), "accuracy",
                                        task="arc_easy", device="cpu", dtype="bfloat16", cost_s=20.0,
                                        extra={"limit_items": 20}))
            if i < N_ARCHS - 1:
                rows.append(Measurement(aid, "pretrained", "latency_ms", float(rng.uniform(1, 9)), "ms",
                                        device="cpu", dtype="bfloat16", batch=1, seq_len=128, n_repeats=10,
                                        cost_s=0.5, extra={"threads": 2, "cpu": "test-cpu"},
                                        software={"torch": "2.13.0"}))
                rows.append(Measurement(aid, "pretrained", "latency_rel", float(rng.uniform(0.2, 1)),
                                        "x full model", device="cpu", dtype="bfloat16", batch=1, seq_len=128,
                                        spread=0.01, n_repeats=10, cost_s=1.5,
                                        extra={"threads": 2, "reference_ms": 40.0 + i}, software={"torch": "2.13.0"}))
            store.add_results(space, arch, rows)
        store.add_supernet("baseline-magnitude-2:4", space.name, space.model.source, strategy="magnitude-2:4")
        store.add_results(space, archs[0], [Measurement(arch_id(space.canonical(archs[0])), "baseline-magnitude-2:4",
                                                        "ppl", 99.0, "perplexity", device="cpu", dtype="bfloat16",
                                                        seq_len=512, cost_s=3.0)])
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
    # every stored row (ppl, acc, wall clock, latency_rel, the baseline's ppl) and a derived latency_ms per latency_rel
    assert summary["archs"] == N_ARCHS and summary["measurements"] == N_ARCHS * 2 + 10 + 3 * (N_ARCHS - 1) + 1

    con = duckdb.connect(str(db), read_only=True)
    stored = con.execute("SELECT arch_id, supernet_id, metric, task, value, cost_s FROM measurements").df()
    con.close()
    assert set(stored.loc[stored.metric == "latency_ms", "supernet_id"]) == {""}  # weight-free: stored once
    # what readers see: the stored wall clock is latency_wall_ms, latency_ms is latency_rel x the median reference
    truth = stored.assign(metric=stored.metric.replace({"latency_ms": "latency_wall_ms"}))
    rel = stored[stored.metric == "latency_rel"]
    truth = pd.concat([truth, rel.assign(metric="latency_ms", value=rel.value * 45.0)], ignore_index=True)

    # pandas: the tables hold the DB's rows and values exactly, under the readers' names
    measurements = pd.read_parquet(out / "measurements.parquet")
    assert len(measurements) == len(truth)
    merged = measurements.merge(truth, on=["arch_id", "supernet_id", "metric", "task"], suffixes=("", "_db"))
    assert len(merged) == len(truth) and np.allclose(merged["value"], merged["value_db"], rtol=1e-12)
    assert set(measurements.loc[measurements.metric == "latency_ms", "unit"]) == {"ms"}
    assert len(pd.read_parquet(out / "architectures.parquet")) == N_ARCHS  # the baseline's arch is one of these
    assert list(pd.read_parquet(out / "baseline_archs.parquet")["supernet_id"]) == ["baseline-magnitude-2:4"]
    for supernet in SUPERNETS:  # the weight-free latency appears in every supernet's wide file
        wide = pd.read_parquet(out / "wide" / space.name / f"{supernet}.parquet")
        assert len(wide) == N_ARCHS and wide["metric_latency_ms"].notna().sum() == N_ARCHS - 1
        assert "metric_acc_arc_easy" in wide if supernet == "pretrained" else "metric_acc_arc_easy" not in wide

    # DuckDB: plain SQL over the files; the space's archs join their measurements
    [(n, archs)] = duckdb.connect().execute(
        f"SELECT count(*), count(DISTINCT arch_id) FROM '{out / 'architectures.parquet'}' a JOIN "
        f"'{out / 'measurements.parquet'}' m USING (space, arch_id) WHERE m.metric = 'ppl'").fetchall()
    assert n == N_ARCHS * 2 + 1 and archs == N_ARCHS

    # Syne Tune's own deserializer: one blackbox per (supernet, objective set), no NaN, the DB's values
    card = json.loads((out / "croissant.json").read_text())
    entries = {(e["supernet_id"], e["objective_set"]): e for e in card["nasbench"]["syne_tune"]}
    assert set(entries) == {("pretrained", "ppl"), ("trained-a", "ppl"), ("pretrained", "acc")}
    latency = truth[truth.metric == "latency_ms"].set_index("arch_id")["value"]
    wall = truth[truth.metric == "latency_wall_ms"].set_index("arch_id")["value"]
    for (supernet, objective_set), entry in entries.items():
        path = out / entry["path"]
        bb = _deserialize(path)[supernet]
        meta = json.loads((path / "metadata.json").read_text())
        names = bb.objectives_names
        assert names[-1] == meta["metric_elapsed_time"] == "metric_cost_s"
        assert "metric_latency_ms" in names and "metric_params" in names
        assert not np.isnan(bb.objectives_evaluations).any()
        assert len(bb.hyperparameters) == (10 if objective_set == "acc" else N_ARCHS - 1)  # the one without latency
        for i, aid in enumerate(meta["arch_ids"]):
            config = bb.hyperparameters.iloc[i].to_dict()
            assert arch_id(space.check(space.from_syne_tune(config))) == aid
            got = bb.objective_function(config, fidelity={"step": 1}, seed=0)
            own = truth[(truth.arch_id == aid) & (truth.supernet_id == supernet)].set_index("metric")
            assert got["metric_ppl"] == own.loc["ppl", "value"]
            assert got["metric_latency_ms"] == pytest.approx(latency[aid], rel=1e-12)
            assert got["metric_latency_wall_ms"] == wall[aid]
            cost = own.loc["ppl", "cost_s"] + 0.5 + 1.5 + (20.0 if objective_set == "acc" else 0.0)
            assert got["metric_cost_s"] == pytest.approx(cost)  # ppl + both latencies (+ the accuracy pass)
        assert meta["objectives_directions"]["metric_ppl"] == "minimize"
        constraints = meta["constraints"]
        valid = pd.read_parquet(path / constraints["valid_configs"])
        assert len(valid) == constraints["valid_archs"] and list(valid.columns[:6]) == list(bb.configuration_space)
        assert all(space.is_valid(space.from_syne_tune(r)) for r in valid.head(50).to_dict("records"))
    assert entries[("pretrained", "acc")]["objectives"][0] == "metric_acc_avg"

    # the card: checksums, units and directions, provenance, licences, citation
    for f in card["distribution"]:
        assert hashlib.sha256((out / f["contentUrl"]).read_bytes()).hexdigest() == f["sha256"], f["contentUrl"]
    metrics = {(m["metric"], m["task"]): m for m in card["nasbench"]["metrics"]}
    assert metrics[("ppl", "")]["unit"] == "perplexity" and metrics[("ppl", "")]["direction"] == "minimize"
    assert metrics[("acc", "arc_easy")]["direction"] == "maximize"
    latency_provenance = next(p for p in card["nasbench"]["provenance"] if p["metric"] == "latency_wall_ms")
    assert latency_provenance["supernet_id"] == ""
    assert latency_provenance["settings"] == {"threads": 2, "cpu": "test-cpu"}
    assert latency_provenance["software"] == [{"torch": "2.13.0"}]
    derived = next(p for p in card["nasbench"]["provenance"] if p["metric"] == "latency_ms")
    assert derived["settings"] == {"threads": 2, "reference_median_ms": 45.0} and derived["rows"] == N_ARCHS - 1
    assert "drift-cancelled" in card["nasbench"]["protocol"]["latency_ms"]
    assert metrics[("latency_ms", "")]["column"] == "metric_latency_ms" and metrics[("latency_ms", "")]["unit"] == "ms"
    sources = {d["path"]: d for d in card["nasbench"]["data_sources"]}
    assert sources["wikitext-2-raw/wiki.test.raw"]["license"].startswith("CC BY-SA 3.0")
    assert sources["finetune/alpaca_gpt4_en_demo_999.json"]["non_commercial"] is True
    trained = next(s for s in card["nasbench"]["supernets"] if s["id"] == "trained-a")
    assert trained["artifact_sha256"] == {"manifest_sha256": "ab" * 32}
    assert "2410.06479" in card["citeAs"]
    assert (out / "README.md").read_text().startswith("---\nlicense: apache-2.0\n")


def test_every_config_of_the_dataset_card_loads_with_datasets(capsys, tmp_path, bench_db, monkeypatch) -> None:
    """The README's configs are what `datasets` reads: a name with `:` (a baseline's id) broke every one of them."""
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    db, space = bench_db
    out = tmp_path / "published"
    assert run(capsys, "publish", db, "--out", out)[0] == 0
    front = yaml.safe_load((out / "README.md").read_text().split("---\n")[1])
    names = [c["config_name"] for c in front["configs"]]
    assert f"wide--{space.name}--baseline-magnitude-2_4" in names
    for config in front["configs"]:
        loaded = datasets.load_dataset(str(out), config["config_name"], cache_dir=str(tmp_path / "hf"))
        rows = pq_rows(out / config["data_files"])
        assert loaded["train"].num_rows == rows, config


def pq_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


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


REPO = SPACES.parent
SHIPPED = REPO / "results" / "published" / "smollm2-135m"


@pytest.fixture(scope="module")
def fresh_publication(tmp_path_factory) -> Path:
    """The shipped DB published afresh (what CI checks the committed publication and the example against)."""
    from nasbench.store.publish import publish

    out = tmp_path_factory.mktemp("published") / "smollm2-135m"
    publish(REPO / "results" / "smollm2-135m.duckdb", out)
    return out


def test_shipped_publication_matches_the_shipped_db(fresh_publication) -> None:
    def digest(directory: Path) -> dict[str, str]:
        return {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(directory.rglob("*")) if p.is_file()}

    assert digest(SHIPPED) == digest(fresh_publication), (
        "results/published/smollm2-135m is stale: rerun "
        "`nasbench publish results/smollm2-135m.duckdb --out results/published/smollm2-135m`")
    # a size guard, not a format rule: the publication is committed and travels with every copy of the checkout, so
    # it stays small. One Syne Tune blackbox per (supernet, objective set) holds only its measured archs and complete
    # columns (the earlier single mostly-NaN array of every supernet x arch x objective took 6.35 MB), and the card is
    # not indented past its records (indentation was 45% of its 1.5 MB)
    assert sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file()) < 4 * 2**20
    card = json.loads((SHIPPED / "croissant.json").read_text())
    main_supernet = card["nasbench"]["main_supernets"]["smollm2-135m"]
    assert main_supernet == "smollm2-135m-recovery-3"
    from nasbench.store import connect_read_only

    con = connect_read_only(REPO / "results" / "smollm2-135m.duckdb")
    n_archs = con.execute("SELECT count(*) FROM architectures WHERE space = 'smollm2-135m'").fetchone()[0]
    con.close()
    wide = pd.read_parquet(SHIPPED / "wide" / "smollm2-135m" / f"{main_supernet}.parquet")
    assert len(wide) == 2000 <= n_archs  # the build's archs (the space's also holds the experiments' archs, S6's)
    for column in ("metric_ppl", "metric_latency_ms", "metric_memory_mb", "metric_params", "metric_flops"):
        assert wide[column].notna().all(), column  # weight-free columns in the main supernet's own file
    entries = [e for e in card["nasbench"]["syne_tune"] if e["supernet_id"] == main_supernet]
    assert {e["objective_set"]: e["archs"] for e in entries} == {"ppl": 2000, "acc": 500}
    for entry in card["nasbench"]["syne_tune"]:
        bb = _deserialize(SHIPPED / entry["path"])[entry["supernet_id"]]
        assert not np.isnan(bb.objectives_evaluations).any(), entry["path"]
        assert {"metric_ppl", "metric_latency_ms", "metric_params", "metric_cost_s"} <= set(bb.objectives_names)


@pytest.mark.slow
def test_the_syne_tune_example_runs_morea_on_the_fresh_publication(fresh_publication, tmp_path, monkeypatch) -> None:
    """examples/syne_tune_moo.py as shipped: Tuner + simulator + MOREA on ppl and latency, the blackbox as
    published (no renaming, no patching); every evaluated arch is valid and every objective finite."""
    import runpy

    monkeypatch.setenv("SYNETUNE_FOLDER", str(tmp_path / "syne-tune"))
    example = runpy.run_path(str(REPO / "examples" / "syne_tune_moo.py"), run_name="example")
    space = load_space(SPACES / "smollm2-135m.yaml")
    card = json.loads((fresh_publication / "croissant.json").read_text())
    main_ppl = next(e for e in card["nasbench"]["syne_tune"] if e["main"] and e["objective_set"] == "ppl")
    measured = set(json.loads((fresh_publication / main_ppl["path"] / "metadata.json").read_text())["arch_ids"])
    for surrogate in (False, True):
        summary = example["main"]([str(fresh_publication), "--trials", "30", "--seed", "1",
                                   *(["--surrogate"] if surrogate else [])])
        assert summary["trials"] == 30 and summary["supernet_id"] == "smollm2-135m-recovery-3"
        assert summary["sim_time_s"] > 0 and summary["front"]
        for evaluation in summary["evaluated"]:
            arch = space.check(space.from_syne_tune(evaluation["config"]))  # raises for an invalid arch
            assert surrogate or arch_id(arch) in measured  # the table answers measured archs only
            assert np.isfinite([evaluation["metric_ppl"], evaluation["metric_latency_ms"]]).all()


@pytest.mark.slow
def test_every_config_of_the_shipped_card_loads_with_datasets(tmp_path, monkeypatch) -> None:
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    front = yaml.safe_load((SHIPPED / "README.md").read_text().split("---\n")[1])
    assert len(front["configs"]) >= 20
    for config in front["configs"]:
        loaded = datasets.load_dataset(str(SHIPPED), config["config_name"], cache_dir=str(tmp_path / "hf"))
        assert loaded["train"].num_rows == pq_rows(SHIPPED / config["data_files"]), config


def test_the_card_is_json_with_one_record_per_line() -> None:
    from nasbench.store.publish import _lines

    card = {"name": "x", "recordSet": [{"@id": "a", "field": [{"name": "f", "dataType": "sc:Text"}]}, {"@id": "b"}],
            "nasbench": {"provenance": [{"metric": "ppl", "rows": 3}], "empty": []}}
    text = _lines(card)
    assert json.loads(text) == card
    lines = text.splitlines()
    # containers below the third level sit whole on their line: a record's fields, a provenance row
    assert '      "field": [{"name": "f", "dataType": "sc:Text"}]' in lines
    assert '      {"metric": "ppl", "rows": 3}' in lines
    assert '    "empty": []' in lines and lines[0] == "{" and lines[-1] == "}"
