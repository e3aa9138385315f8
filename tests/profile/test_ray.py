"""Profiling on a local Ray cluster with 2 worker slots: the rows equal an in-process run's, a rerun adds nothing,
and a worker killed with SIGKILL mid-profile loses no arch and duplicates no row. One cluster for the module (its
start is most of the time)."""

from __future__ import annotations

import json
import os
import signal
import threading

import psutil
import pytest
import torch

from nasbench.profile import ProfileConfig, profile, select_archs
from nasbench.space import arch_id
from nasbench.store import connect_read_only

FAST = dict(ppl_tokens=256, seq_len=64, latency_seq_len=16, latency_repeats=3, dtype="float32")
METRICS = ("ppl", "latency", "memory", "energy")
#: Exact functions of the arch and the weights: equal to the bit between engines (latency and the measured memory
#: peak are measurements: present, not equal).
EXACT = ("flops", "ppl", "weights_mb", "kv_bytes_per_token")
PER_ARCH = {"flops", "ppl", "latency_ms", "memory_mb", "weights_mb", "kv_bytes_per_token", "energy_j"}


def rows(db, sql, params=()):
    con = connect_read_only(db)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def cluster():
    from nasbench.profile.ray_engine import local_cluster

    with local_cluster(num_cpus=2) as c:
        yield c


def serial_run(space, db, config, data):
    """In-process with one thread, as a Ray task on one CPU: the same float sums in the same order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return profile(space, db, config, data_dir=data, progress=False)
    finally:
        torch.set_num_threads(threads)


def test_ray_rows_equal_the_in_process_rows(cluster, tiny_with_data, tmp_path) -> None:
    from nasbench.profile.ray_engine import profile_ray

    space, data = tiny_with_data
    config = ProfileConfig(n=3, seed=1, metrics=METRICS, **FAST)
    serial = serial_run(space, tmp_path / "serial.duckdb", config, data)
    summary = profile_ray(space, tmp_path / "ray.duckdb", config, data_dir=data, progress=False)
    assert summary.failures == [] and summary.archs == serial.archs and summary.rows == serial.rows
    exact = ("SELECT arch_id, metric, task, device, dtype, batch, seq_len, value, unit FROM measurements "
             f"WHERE metric IN {EXACT} ORDER BY ALL")
    assert rows(tmp_path / "ray.duckdb", exact) == rows(tmp_path / "serial.duckdb", exact)
    params = "SELECT arch_id, params, arch FROM architectures ORDER BY arch_id"
    assert rows(tmp_path / "ray.duckdb", params) == rows(tmp_path / "serial.duckdb", params)
    measured = dict(rows(tmp_path / "ray.duckdb", "SELECT metric, count(value) FROM measurements GROUP BY metric"))
    assert measured == {**{m: summary.archs for m in PER_ARCH}, "energy_j": 0}  # no GPU: energy a stated NULL
    for software, extra in rows(tmp_path / "ray.duckdb", "SELECT software, extra FROM measurements "
                                                         "WHERE metric = 'energy_j'"):
        assert json.loads(software)["engine"] == "ray" and json.loads(software)["threads"] == "1"
        assert "not a CUDA device" in json.loads(extra)["reason"]
    again = profile_ray(space, tmp_path / "ray.duckdb", config, data_dir=data, progress=False)
    assert again.profiled == 0 and again.rows == 0


def _kill_first_task_worker(stop: threading.Event, killed: list[int]) -> None:
    """SIGKILL the first worker process of this test's cluster seen running a profiling task (Ray titles a worker
    ``ray::<function>`` while it runs one), once."""
    me = psutil.Process()
    while not stop.is_set():
        for child in me.children(recursive=True):
            try:
                title = " ".join(child.cmdline())
            except psutil.Error:
                continue
            if title.startswith("ray::profile_arch"):
                os.kill(child.pid, signal.SIGKILL)
                killed.append(child.pid)
                return
        stop.wait(0.01)


def test_a_worker_killed_mid_profile_loses_and_duplicates_nothing(cluster, tiny_with_data, tmp_path) -> None:
    from nasbench.profile.ray_engine import profile_ray

    space, data = tiny_with_data
    config = ProfileConfig(n=4, seed=5, metrics=METRICS, **FAST)
    db = tmp_path / "killed.duckdb"
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_first_task_worker, args=(stop, killed), daemon=True)
    killer.start()
    try:
        summary = profile_ray(space, db, config, data_dir=data, progress=False)
    finally:
        stop.set()
        killer.join()
    assert killed, "no worker was seen running a task"
    assert not psutil.pid_exists(killed[0]) or psutil.Process(killed[0]).status() == psutil.STATUS_ZOMBIE
    assert summary.failures == []
    want = sorted((arch_id(a), m) for a in select_archs(space, config) for m in PER_ARCH)
    assert rows(db, "SELECT arch_id, metric FROM measurements ORDER BY ALL") == want  # each once: none lost, no twin
    assert summary.rows == len(want)


def test_profile_cli_engine_ray_joins_the_running_session(cluster, tiny_with_data, tmp_path, capsys) -> None:
    from nasbench.cli import main

    space, data = tiny_with_data
    capsys.readouterr()
    db = tmp_path / "cli.duckdb"
    assert main(["profile", space.path, "--n", "1", "--metrics", "ppl", "--ppl-tokens", "256", "--seq-len", "64",
                 "--dtype", "float32", "--engine", "ray", "--data-dir", str(data), "--db", str(db)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["engine"] == "ray" and out["new_rows"] == 2 * out["archs"] and "failures" not in out


def test_gpu_check_script_ray_tasks_state_the_missing_meters(cluster, tmp_path) -> None:
    import importlib.util
    from pathlib import Path

    from nasbench.models import tiny_space

    path = Path(__file__).resolve().parents[2] / "tools" / "gpucheck" / "check_paths.py"
    spec = importlib.util.spec_from_file_location("check_paths", path)
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    space = tiny_space(tmp_path, "llama", seed=0)
    out = check.measure_with_ray(space, [space.largest(), space.smallest()], "cpu", "float32", 16, 3)
    assert out["tasks"] == 2 and out["software"]["engine"] == "ray"
    for row in out["rows"]:
        assert row["latency_ms"] > 0 and row["weights_mb"] > 0 and row["energy_j"] is None
    assert any("not a CUDA device" in reason for reason in out["reasons"])


def test_build_engine_ray_rows_equal_the_in_process_build(cluster, tiny_with_data, tmp_path, capsys) -> None:
    """``build --engine ray`` runs every shard in the session already joined: the same plan, shards and exact rows
    as an in-process build with one thread (a Ray task's), and the same build again adds nothing."""
    from nasbench.cli import main
    from nasbench.profile.build import build

    space, data = tiny_with_data
    config = ProfileConfig(metrics=("ppl", "memory"), **FAST)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = build(space, supernet=None, db=tmp_path / "serial.duckdb", shards=tmp_path / "s1", config=config,
                       total=3, per_shard=2, grid=0, data_dir=data, progress=False)
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    args = ["build", space.path, "--db", str(tmp_path / "ray.duckdb"), "--shards", str(tmp_path / "s2"), "--total",
            "3", "--per-shard", "2", "--grid", "0", "--metrics", "ppl,memory", "--ppl-tokens", "256", "--seq-len",
            "64", "--latency-seq-len", "16", "--latency-repeats", "3", "--dtype", "float32", "--data-dir", str(data),
            "--engine", "ray"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["engine"] == "ray" and out["complete_shards"] == serial.done_shards == [0, 1]
    assert out["profiled"] == serial.profiled and "failures" not in out
    exact = f"SELECT arch_id, metric, value FROM measurements WHERE metric IN {EXACT} ORDER BY ALL"
    assert rows(tmp_path / "ray.duckdb", exact) == rows(tmp_path / "serial.duckdb", exact)
    software = rows(tmp_path / "ray.duckdb", "SELECT software FROM measurements WHERE metric = 'ppl'")
    assert {json.loads(s)["engine"] for (s,) in software} == {"ray"}
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["profiled"] == 0
