"""The benchmark as its users meet it on the command line: SPACE as a name or a file, the main supernet as the default,
lines that run as printed, errors that keep their hints and name what exists."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest

from nasbench.cli import main
from nasbench.space import arch_id
from nasbench.store import Measurement, Store, connect_read_only

REPO = Path(__file__).resolve().parents[2]
SHIPPED_DB = REPO / "results" / "smollm2-135m.duckdb"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()  # what fixtures printed (a tiny model's progress bars) is not this command's
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nasbench: error: "), err
    return lines[0]


@pytest.fixture
def tiny_bench(tmp_path, tiny_with_data):
    """A tiny benchmark DB: 12 archs with ppl on the base model (`pretrained`, its main supernet) and on a second
    supernet, latency (wall clock and latency_rel) measured once (weight-free)."""
    space, _ = tiny_with_data
    archs = [space.canonical(a) for a in space.sample(12, seed=5)]
    db = tmp_path / "tiny.duckdb"
    rng = np.random.default_rng(1)
    with Store(db) as store:
        store.add_space(space)
        for arch in archs:
            aid, p = arch_id(arch), space.params(arch)
            store.add_results(space, arch, [
                Measurement(aid, "pretrained", "ppl", float(1e5 / p * rng.uniform(0.9, 1.1)), "perplexity",
                            device="cpu", seq_len=512, cost_s=2.0, extra={"tokens": 1024}),
                Measurement(aid, "other", "ppl", float(2e5 / p), "perplexity", device="cpu", seq_len=512, cost_s=2.0),
                Measurement(aid, "pretrained", "latency_ms", float(p / 1e3 * rng.uniform(0.9, 1.1)), "ms",
                            device="cpu", batch=1, seq_len=128, cost_s=0.5),
                Measurement(aid, "pretrained", "latency_rel", float(p / 1e5), "x full model", device="cpu", batch=1,
                            seq_len=128, cost_s=0.5, extra={"reference_ms": 100.0})])
        store.set_main_supernet(space.name, "pretrained")
    return space, db, archs


def test_space_is_a_name_or_a_file_in_every_verb(capsys, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    code, by_name, err = run(capsys, "space", "show", "smollm2-135m")
    assert code == 0, err
    assert run(capsys, "space", "show", "spaces/smollm2-135m.yaml")[1] == by_name
    code, out, err = run(capsys, "space", "sample", "smollm2-135m", "--n", "2")
    assert code == 0 and len(out.splitlines()) == 2, err
    assert run(capsys, "cost", "smollm2-135m", "--format", "json")[0] == 0
    code, _, err = run(capsys, "space", "show", "smollm2-999m")
    assert code == 2 and "SPACE: neither a file nor the name of a space in spaces/" in one_line(err)
    assert "smollm2-135m" in err  # the names that exist


def test_query_defaults_to_the_space_benchmark_and_its_main_supernet(capsys, monkeypatch) -> None:
    if not SHIPPED_DB.is_file():
        pytest.skip("no shipped benchmark DB")
    monkeypatch.chdir(REPO)
    con = connect_read_only(SHIPPED_DB)
    aid, arch = con.execute("SELECT arch_id, arch FROM architectures ORDER BY arch_id LIMIT 1").fetchone()
    con.close()
    code, out, err = run(capsys, "query", "smollm2-135m", "--arch", arch, "--mode", "table", "--interval",
                         "--metrics", "ppl,latency_ms,memory_mb")
    assert code == 0, err
    row = json.loads(out)
    assert row["arch_id"] == aid and row["supernet_id"] == "smollm2-135m-recovery-3" and row["source"] == "table"
    for metric in ("ppl", "latency_ms", "memory_mb"):  # weight-free values answer on the main supernet too
        assert row[f"{metric}_lower"] == row[metric] == row[f"{metric}_upper"] > 0
    code, _, err = run(capsys, "query", "smollm2-135m", "--arch", arch, "--mode", "table", "--supernet", "nope")
    line = one_line(err)
    assert code == 2 and line.startswith("nasbench: error: --supernet: must be one of")
    assert "smollm2-135m-recovery-3" in line and "pretrained" in line and "(got 'nope')" in line


def test_sql_errors_keep_duckdbs_hints(capsys, tiny_bench) -> None:
    space, db, _ = tiny_bench
    view = f"wide_{space.name.replace('-', '_')}"
    code, _, err = run(capsys, "sql", f"SELECT latency FROM {view}", "--db", db)
    assert code == 2 and 'Candidate bindings: "metric_latency_ms"' in one_line(err)
    code, _, err = run(capsys, "sql", f"SELECT * FROM {view[:-3]}", "--db", db)
    assert code == 2 and f'Did you mean "{view}"' in one_line(err)


def test_pareto_prints_an_export_line_that_runs_as_printed(capsys, tiny_bench, tmp_path, monkeypatch) -> None:
    space, db, _ = tiny_bench
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "pareto", space.path, "--db", db)
    assert code == 0, err
    line = next(x for x in out.splitlines() if x.startswith("knee: "))
    command = shlex.split(line.split(" -> ", 1)[1])
    assert command[:2] == ["nasbench", "export"] and "--supernet" in command and "pretrained" in command
    code, out, err = run(capsys, *command[1:])
    assert code == 0, err
    exported = json.loads((tmp_path / command[command.index("--out") + 1] / "nasbench.json").read_text())
    assert exported["arch_id"] == line.split()[1]


def test_export_names_the_supernets_that_exist(capsys, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    code, _, err = run(capsys, "export", "smollm2-135m", "--supernet", "nope", "--arch", "{}", "--out", "/dev/null")
    line = one_line(err)
    assert code == 2 and line.startswith("nasbench: error: --supernet: no such directory")
    assert "pretrained" in line and "smollm2-135m-recovery-3" in line


def test_compare_writes_its_runs_beside_the_benchmark_never_into_it(capsys, tiny_bench, tmp_path) -> None:
    space, db, _ = tiny_bench
    args = ["compare", space.path, "--db", db, "--methods", "rs", "--seeds", "1", "--max-evals", "5", "--mode",
            "table", "--processes", "1", "--no-cache"]
    code, out, err = run(capsys, *args)
    assert code == 0, err
    runs_db = db.parent / f"{space.name}-runs.duckdb"
    assert f"runs -> {runs_db}" in err
    con = connect_read_only(runs_db)
    assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
    con.close()
    con = connect_read_only(db)
    assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
    con.close()
    code, _, err = run(capsys, *args, "--runs-db", db)
    assert code == 2 and one_line(err).startswith("nasbench: error: --runs-db: must not be the benchmark DB")


def test_model_card_says_how_to_write_the_task_files(capsys, tiny_with_data, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("NASBENCH_DATA_DIR", raising=False)
    space, _ = tiny_with_data
    arch = space.canonical(space.sample(1, seed=4)[0])
    assert run(capsys, "export", space.path, "--arch", json.dumps(arch), "--out", tmp_path / "sub")[0] == 0
    card = (tmp_path / "sub" / "README.md").read_text()
    assert "nasbench tasks lm_eval_tasks --data-dir DATA" in card  # `nasbench tasks`, found from the card
    assert "lm_eval --model hf --model_args pretrained=. --include_path lm_eval_tasks --tasks arc_easy" in card
    assert not (tmp_path / "sub" / "lm_eval_tasks").exists()


@pytest.mark.slow
def test_the_model_cards_lm_eval_line_runs_as_printed(capsys, tiny_with_data, shared_data, tmp_path) -> None:
    space, _ = tiny_with_data
    arch = space.canonical(space.sample(1, seed=4)[0])
    code, _, err = run(capsys, "export", space.path, "--arch", json.dumps(arch), "--out", tmp_path / "sub",
                       "--data-dir", shared_data)
    assert code == 0, err
    card = (tmp_path / "sub" / "README.md").read_text()
    line = next(x for x in card.splitlines() if x.startswith("lm_eval "))
    assert "--include_path lm_eval_tasks" in line and (tmp_path / "sub" / "lm_eval_tasks" / "arc_easy.yaml").is_file()
    lm_eval = Path(sys.executable).with_name("lm_eval")
    argv = [str(lm_eval), *shlex.split(line)[1:], "--limit", "2"]  # as printed, on 2 items to keep CI short
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(argv, cwd=tmp_path / "sub", env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "arc_easy" in done.stdout and "acc" in done.stdout


def test_supernets_lists_and_records_the_main_one(capsys, tiny_bench) -> None:
    space, db, _ = tiny_bench
    code, out, err = run(capsys, "supernets", "--db", db)
    assert code == 0, err
    first = out.splitlines()[1].split()
    assert first[1] == "pretrained" and first[-1] == "*"
    assert run(capsys, "supernets", space.path, "--db", db, "--set-main", "other")[0] == 0
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT value FROM meta WHERE key = ?", [f"main_supernet:{space.name}"]).fetchone() == \
        ("other",)
    con.close()
    code, _, err = run(capsys, "supernets", "--db", db, "--set-main", "nope")
    assert code == 2 and "one of other, pretrained" in one_line(err)
