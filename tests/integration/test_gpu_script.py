"""The GPU run (tools/gpu/) end to end on CPU: prepare -> the GPU machine's steps (each on its own copy of the
checkout holding one prepared part, as with a transfer capped by --part-mib; the staging folder shared, as on one
machine) -> fetch, with a tiny model, a tiny artifact and, in every subprocess, the imports a GPU machine with only
the training wheels lacks made to fail."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from nasbench.importance import sort_model
from nasbench.models import tiny_space
from nasbench.space import arch_id, load_space
from nasbench.train import train
from nasbench.supernet.artifact import pack, read_manifest

REPO = Path(__file__).resolve().parents[2]
GPU = REPO / "tools" / "gpu"
#: Not on the GPU machine (gguf arrives as a wheel and is only read for GGUF models; the tiny model is not one).
BLOCKED = ("duckdb", "lm_eval", "syne_tune", "gguf", "fastparquet", "pymoo", "dill")
SITECUSTOMIZE = f"""
import importlib.abc, sys
class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError("not on the GPU machine: " + name)
sys.meta_path.insert(0, _Blocked())
"""


def _run(args, cwd, env, check=True):
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(f"{args} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def _gpu_step(repo: Path, tree: Path, out_dir: Path, env: dict, command: str, parts: list[str],
              check: bool = True) -> tuple[subprocess.CompletedProcess, Path]:
    """One command on the GPU machine: a fresh copy of the checkout (no prepared parts) plus the given parts, an
    empty output folder."""
    shutil.copytree(repo, tree, ignore=shutil.ignore_patterns(".gpu-carry*"))
    for path in parts:
        shutil.copytree(repo / path, tree / path)
    out_dir.mkdir()
    done = _run(["bash", "-c", command.replace("tools/gpu/", f"{GPU}/")], tree,
                dict(env, NASBENCH_GPU_OUT=str(out_dir)), check=check)
    return done, out_dir


def _tiny_repo(tmp_path: Path) -> tuple[Path, Path]:
    """A tree like the repository's: a tiny space with data sources, its probes and a packed artifact."""
    repo, data = tmp_path / "repo", tmp_path / "data"
    space = tiny_space(repo, "llama", seed=2)
    rng = np.random.default_rng(0)
    for name in ("train.txt", "wikitext-2-raw/wiki.test.raw"):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_text(" ".join(f"w{i}" for i in rng.integers(3, 96, 4500)), encoding="utf-8")
    doc = yaml.safe_load(Path(space.path).read_text(encoding="utf-8"))
    doc["data"] = {"calibration": {"kind": "text", "path": "train.txt"},
                   "recovery": {"kind": "text", "path": "train.txt"},
                   "perplexity": {"kind": "text", "path": "wikitext-2-raw/wiki.test.raw"}}
    Path(space.path).write_text(yaml.safe_dump(doc), encoding="utf-8")
    space = load_space(space.path)
    sort_model(space, tmp_path / "sorted", tokens=256, seq_len=32, data_dir=data, progress=False)
    train(space, strategy="importance-grid-params", kd="kl", peft="lora", preset="recovery", out=tmp_path / "run0",
          sorted_supernet=tmp_path / "sorted", data_dir=data, max_steps=2, batch_size=2, seq_len=32,
          precision="fp32", eval_every=0, grid_bins=2, grid_trials=200, progress=False)
    pack(space, tmp_path / "run0", repo / "results" / "supernets" / "tiny-art")
    (repo / "probes.jsonl").write_text("".join(json.dumps({"arch": a}) + "\n" for a in space.sample(2, seed=1)),
                                       encoding="utf-8")
    return repo, data


@pytest.mark.slow  # ~25 s of CPU in 8 subprocesses (each imports torch); 35-40 s wall on a busy 2-core machine
def test_prepare_stage_train_fetch_on_cpu(tmp_path):
    repo, data = _tiny_repo(tmp_path)
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    blob = tmp_path / "blob.gguf"
    blob.write_bytes(np.random.default_rng(1).bytes(200_000))  # incompressible: gzip keeps its size
    env = {k: v for k, v in os.environ.items() if not k.startswith("NASBENCH_")}
    env.update(PYTHONPATH=str(blocker), PYTHON=sys.executable, NASBENCH_GPU_PYTHON=sys.executable,
               NASBENCH_DATA_DIR=str(data), OMP_NUM_THREADS="1")
    assert _run([sys.executable, "-c", "import duckdb"], repo, env, check=False).returncode != 0  # blocker active

    # prepare: parts of 64 MiB, each transfer carrying a (pretended) checkout of all but ~150 KB of it -> the blob
    # travels in 3 parts
    limit = 64 << 20
    out = _run(["bash", str(GPU / "prepare.sh"), "results/supernets/tiny-art", "--space", "space.yaml",
                "--base", str(blob), "--package", "nasbench_gpu_standin", "--file", "model.gguf",
                "--part-mib", "64", "--tree-bytes", str(limit - 150_000), "--margin-mib", "0", "--min-part-mib", "0.1"],
               repo, dict(env, NASBENCH_GPU_NO_WHEELS="1"))
    steps = json.loads((repo / ".gpu-carry" / "parts.json").read_text(encoding="utf-8"))
    assert len(steps) == 3, out.stdout
    assert all(c["bytes"] <= limit for c in steps)
    assert steps[-1]["command"].startswith("bash tools/gpu/remote.sh train results/supernets/tiny-art")
    assert "part 3: .gpu-carry/p3" in out.stdout and "then: bash tools/gpu/remote.sh train" in out.stdout

    stage = tmp_path / "stage"
    device = dict(env, NASBENCH_GPU_STAGE=str(stage), NASBENCH_GPU_SPACE="space.yaml",
                  NASBENCH_GPU_PROBES="probes.jsonl", NASBENCH_GPU_PRECISION="fp32", NASBENCH_GPU_SEQ_LEN="32",
                  NASBENCH_GPU_EVAL_EVERY="2", NASBENCH_GPU_CHECKPOINT_EVERY="2", NASBENCH_GPU_POLL_S="0.5",
                  NASBENCH_GPU_SOFT_S="0", NASBENCH_GPU_HARD_S="240")
    device.pop("NASBENCH_DATA_DIR")  # the GPU machine has no data directory: part 1 brings the text

    def call(i: int, command: str, parts: list[str], check: bool = True) -> tuple[subprocess.CompletedProcess, Path]:
        return _gpu_step(repo, tmp_path / f"device{i}", tmp_path / f"out{i}", device, command, parts, check)

    # the training command on a machine that staged none of the other parts fails at once, naming what is missing
    cold, _ = call(0, steps[-1]["command"], [steps[-1]["path"]], check=False)
    assert cold.returncode == 3 and "MISSING base parts [1, 2]" in cold.stderr
    shutil.rmtree(stage)

    first, out1 = call(1, steps[0]["command"], [steps[0]["path"]])
    assert "parts [1] of 3 staged" in first.stdout
    preflight = json.loads((out1 / "preflight.json").read_text(encoding="utf-8"))
    assert preflight["preflight"] == "ok", preflight
    second, _ = call(2, steps[1]["command"], [steps[1]["path"]])
    assert "parts [1, 2] of 3 staged" in second.stdout
    # the last part: steps and batch as arguments; the soft deadline (0 s) stops it after its first checkpoint
    last, out3 = call(3, steps[2]["command"] + " 1000 2", [steps[2]["path"]])
    joined = stage / "pkg" / "nasbench_gpu_standin" / "model.gguf"
    assert joined.read_bytes() == blob.read_bytes() and (joined.parent / "__init__.py").is_file()
    assert len(list(out3.iterdir())) <= 8 and all(f.stat().st_size < 16 << 20 for f in out3.iterdir())
    timing = json.loads((out3 / "timing.json").read_text(encoding="utf-8"))
    assert timing["stopped_by"] == "deadline" and timing["steps"] >= 2 and timing["tokens"] == 64 * timing["steps"]
    # the steps and batch given as arguments reach the run; the deadline may shrink the schedule to what fits it
    # (at this machine's speed), never grow it
    assert "for 1000 steps x 2 x" in last.stdout + last.stderr
    assert timing["tokens_per_s"] > 0 and timing["steps"] <= timing["max_steps"] <= 1000 and timing["batch_size"] == 2
    assert timing["torch"] and timing["gpu"]
    curve = [json.loads(x) for x in (out3 / "run-curve.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {p["role"] for p in curve} == {"full", "probe0", "probe1"}

    # fetch: parts checked and joined into results/supernets/<id>, the manifest verified
    fetched = _run(["bash", str(GPU / "fetch.sh"), str(out3), "--space", "space.yaml"], repo, env)
    artifact = repo / "results" / "supernets" / "tiny-art-gpu"
    manifest = read_manifest(artifact)
    assert manifest["id"] == "tiny-art-gpu" and len(manifest["training"]["chain"]) == 2
    assert manifest["training"]["tokens_total"] == 2 * 2 * 32 + timing["tokens"]
    assert "nasbench profile space.yaml --supernet" in fetched.stdout
    assert (repo / "results" / "gpu-runs" / "tiny-art-gpu" / "timing.json").is_file()
    again = _run(["bash", str(GPU / "fetch.sh"), str(out3)], repo, env, check=False)
    assert again.returncode != 0 and "exists" in again.stderr

    # without --part-mib (no transfer cap) everything travels as one part, and its command is the training itself
    one = _run(["bash", str(GPU / "prepare.sh"), "results/supernets/tiny-art", "--space", "space.yaml",
                "--base", str(blob), "--package", "nasbench_gpu_standin", "--file", "model.gguf"],
               repo, dict(env, NASBENCH_GPU_NO_WHEELS="1"))
    single = json.loads((repo / ".gpu-carry" / "parts.json").read_text(encoding="utf-8"))
    assert [s["path"] for s in single] == [".gpu-carry/p1"], one.stdout
    assert single[0]["command"] == "bash tools/gpu/remote.sh train results/supernets/tiny-art"


# ------------------------------------------------------------------------------------------------------ bench mode
#: Not on the GPU machine and not carried by prepare-bench.sh: the bench's imports must not need them.
BENCH_BLOCKED = ("duckdb", "syne_tune", "fastparquet", "pymoo", "evaluate", "pytablewriter", "sqlitedict",
                 "word2number", "rouge_score", "nltk", "more_itertools", "zstandard", "jsonlines", "numexpr",
                 "mbstrdecoder", "chardet")
BENCH_TASKS = "arc_easy,winogrande"
#: As if not installed: imports fail and probes (importlib.util.find_spec, as datasets and torch make) find nothing.
BENCH_SITECUSTOMIZE = f"""
import importlib.machinery, sys
class _Hidden:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BENCH_BLOCKED!r}:
            return None
        return importlib.machinery.PathFinder.find_spec(name, path, target)
    def invalidate_caches(self):
        importlib.machinery.PathFinder.invalidate_caches()
    def find_distributions(self, *args, **kwargs):  # importlib.metadata looks for it on the meta path
        return importlib.machinery.PathFinder.find_distributions(*args, **kwargs)
sys.meta_path[:] = [_Hidden() if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
"""


def _bench_rows(db, sql):
    from nasbench.store import connect_read_only

    con = connect_read_only(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.mark.slow  # ~60 s of CPU: the tiny artifact, 4 subprocesses (torch, lm-eval) and one direct profile run
def test_prepare_stage_bench_fetch_on_cpu(tmp_path, shared_data):
    from nasbench.profile import ProfileConfig, profile

    repo, data = _tiny_repo(tmp_path)
    (data / "commonsense_eval").symlink_to(shared_data / "commonsense_eval")
    space = load_space(repo / "space.yaml")
    artifact = repo / "results" / "supernets" / "tiny-art"
    fast = dict(ppl_tokens=256, seq_len=32, dtype="float32")
    # the "shipped" DB: ppl of two archs on the CPU, on the trained supernet
    shipped = repo / "results" / "tiny.duckdb"
    measured = [space.largest()]  # the first arch of the build's list
    profile(space, shipped, ProfileConfig(n=0, archs=tuple(measured), endpoints=False, metrics=("ppl",), **fast),
            supernet=artifact, data_dir=data, progress=False)
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BENCH_SITECUSTOMIZE, encoding="utf-8")
    here = {k: v for k, v in os.environ.items() if not k.startswith("NASBENCH_")}
    here.update(PYTHON=sys.executable, NASBENCH_DATA_DIR=str(data), OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    blob = tmp_path / "blob.gguf"
    blob.write_bytes(np.random.default_rng(1).bytes(2_000_000))
    limit = 64 << 20
    plan_args = ("--db results/tiny.duckdb --shards= --bands= --total 6 --grid 2 --grid-bins 2 --ref-archs 2 "
                 "--overlap 1 --limit-items 3 --acc-archs 2 --ppl-tokens 256 --seq-len 32 --dtype float32 "
                 "--no-front --acc-batch 4")
    out = _run(["bash", str(GPU / "prepare-bench.sh"), "results/supernets/tiny-art", "--base", str(blob),
                "--package", "nasbench_gpu_standin", "--file", "model.gguf", "--part-mib", "64",
                "--tree-bytes", str(limit - 1_500_000), "--margin-mib", "0", "--min-part-mib", "0.05"],
               repo, dict(here, NASBENCH_GPU_NO_WHEELS="1", NASBENCH_GPU_SPACE="space.yaml",
                          NASBENCH_GPU_TASKS=BENCH_TASKS, NASBENCH_GPU_PLAN_ARGS=plan_args))
    carry = repo / ".gpu-carry-bench"
    steps = json.loads((carry / "parts.json").read_text(encoding="utf-8"))
    assert len(steps) >= 2 and all(c["bytes"] <= limit for c in steps), out.stdout
    assert steps[-1]["command"] == ("NASBENCH_GPU_CARRY=.gpu-carry-bench bash tools/gpu/remote.sh bench "
                                    "results/supernets/tiny-art")
    plan = json.loads((carry / "p1" / "plan.json").read_text(encoding="utf-8"))
    passes = {p["name"]: p for p in plan["passes"]}
    assert list(passes) == ["ppl-tiny-art", "ppl-sorted", "ppl-pretrained", "acc-tiny-art"]
    first = passes["ppl-tiny-art"]
    assert first["overlap"] == 1 and arch_id(first["archs"][0]) in {arch_id(a) for a in measured}
    assert not {arch_id(a) for a in first["archs"][1:]} & {arch_id(a) for a in measured}  # the rest lacks ppl
    assert arch_id(first["archs"][1]) == arch_id(space.smallest_admitted())  # the overlap (largest), the smallest
    assert len(passes["ppl-sorted"]["archs"]) == 2 and len(passes["acc-tiny-art"]["archs"]) == 2

    stage = tmp_path / "stage"
    device = dict(here, PYTHONPATH=str(blocker), NASBENCH_GPU_PYTHON=sys.executable, NASBENCH_GPU_STAGE=str(stage),
                  NASBENCH_GPU_PREFLIGHT="0", NASBENCH_GPU_SOFT_S="400")
    device.pop("NASBENCH_DATA_DIR")

    def call(i, command, parts):
        return _gpu_step(repo, tmp_path / f"bdevice{i}", tmp_path / f"bout{i}", device, command, parts)

    for i, c in enumerate(steps[:-1], 1):
        call(i, c["command"], [c["path"]])
    last, out_dir = call(len(steps), steps[-1]["command"], [steps[-1]["path"]])
    names = sorted(p.name for p in out_dir.iterdir())
    assert {"rows.jsonl", "bench.json", "bench.log", "SHA256SUMS"} <= set(names) and len(names) <= 8, names
    report = json.loads((out_dir / "bench.json").read_text(encoding="utf-8"))
    assert all("error" not in p and "skipped" not in p for p in report["passes"]), report["passes"]
    assert report["provenance"]["torch"] and report["plan"]["artifact_sha256"]
    assert report["measured"]["acc-tiny-art"]["archs"] == 2 and report["measured"]["ppl-sorted"]["archs"] == 2

    # fetch-bench: the rows replayed into (a copy of) the shipped DB; the overlap's CPU rows were already there
    db = tmp_path / "bench.duckdb"
    shutil.copyfile(shipped, db)
    fetched = _run(["bash", str(GPU / "fetch-bench.sh"), str(out_dir), "--db", str(db), "--space", "space.yaml",
                    "--runs", str(tmp_path / "runs")], repo, here)
    counts = json.loads(fetched.stdout.strip().splitlines()[-1])
    # skipped: the overlap arch's ppl + flops (on the CPU here, as in the DB); flops are shape-only, stored once per
    # arch: the acc pass's, the sorted pass's and the pretrained pass's flops rows (2 archs each) were already there
    assert counts["complete"] and counts["rows"] > 0 and counts["skipped"] == 2 + 2 + 2 + 2
    got = dict(_bench_rows(db, "SELECT supernet_id, count(DISTINCT arch_id) FROM measurements WHERE metric = 'ppl' "
                               "GROUP BY 1"))
    assert got == {"tiny-art": len(first["archs"]), "sorted": 2, "pretrained": 2}
    acc = _bench_rows(db, "SELECT arch_id, task, metric, value, extra FROM measurements WHERE task <> '' "
                          "ORDER BY 1, 2, 3")
    assert len(acc) == 2 * 3  # 2 archs x (arc_easy: acc, acc_norm; winogrande: acc)
    for _, _, _, value, extra in acc:
        extra = json.loads(extra)
        assert extra["items"] == 3 and extra["limit_items"] == 3 and 0 <= value <= 1
    assert (tmp_path / "runs").is_dir() and list((tmp_path / "runs").glob("bench-*/rows.jsonl.gz"))

    # the same rows as `nasbench profile` writes for one arch (ppl and accuracy, without lm-eval's request cache)
    arch = passes["acc-tiny-art"]["archs"][0]
    direct = tmp_path / "direct.duckdb"
    for source in ("mmlu", "truthfulqa", "lambada"):  # profile's write_tasks checks every task's files
        (data / source).symlink_to(shared_data / source)
    profile(space, direct, ProfileConfig(n=0, archs=(arch,), endpoints=False, metrics=("ppl", "acc"),
                                         tasks=tuple(BENCH_TASKS.split(",")), limit_items=3, batch_size=4, **fast),
            supernet=artifact, data_dir=data, progress=False)
    sql = (f"SELECT supernet_id, metric, task, device, dtype, batch, seq_len, value, unit, extra FROM measurements "
           f"WHERE arch_id = '{arch_id(arch)}' AND supernet_id = 'tiny-art' ORDER BY metric, task")
    assert _bench_rows(db, sql) == _bench_rows(direct, sql)


def test_jsonl_rows_resume_torn_line_and_import(tmp_path):
    """JsonlStore: what profile() steps, as lines; a restart knows its rows; a torn last line is skipped; the import
    goes through the Store and skips rows already there."""
    from nasbench.profile.jsonl import JsonlStore, import_rows, read_lines
    from nasbench.store import Measurement, Store

    space = tiny_space(tmp_path, "llama", seed=2)
    arch = space.sample(1, seed=0)[0]
    aid = arch_id(arch)
    rows, mirror = tmp_path / "stage" / "rows.jsonl", tmp_path / "out" / "rows.jsonl"
    mirror.parent.mkdir()
    with JsonlStore(rows, mirrors=[mirror], known_supernets=["art"]) as store:
        store.add_space(space)
        assert store.has_supernet("art") and not store.has_supernet("pretrained")
        store.add_supernet("pretrained", space.name, space.model.source)
        assert not store.has_measurement(space.name, aid, "art", "ppl", "", "cuda")
        store.add_results(space, arch, [Measurement(aid, "art", "ppl", 12.5, "perplexity", device="cuda",
                                                    software={"gpu": "X"}, extra={"tokens": 4096}),
                                        Measurement(aid, "art", "flops", 1e6, "flop/token", device="cuda")])
        assert store.count_measurements(space.name) == 2
    again = JsonlStore(rows)  # a restart on the same machine
    assert again.has_measurement(space.name, aid, "art", "ppl", "", "cuda") and again.has_supernet("pretrained")
    again.close()
    assert rows.read_text() == mirror.read_text()
    with open(rows, "a", encoding="utf-8") as f:
        f.write('{"format": "nasbench-rows/1", "kind": "arch", "spa')  # killed mid-line
    assert [r["kind"] for r in read_lines(rows)] == ["space", "supernet", "arch"]
    db = tmp_path / "x.duckdb"
    with Store(db) as store:
        assert import_rows(store, rows, {space.name: space}) == {"archs": 1, "rows": 2, "skipped": 0, "supernets": 1}
        assert import_rows(store, rows, {space.name: space})["skipped"] == 2
        got = store.query("SELECT metric, device, value, software, extra FROM measurements ORDER BY metric")
    assert list(got["metric"]) == ["flops", "ppl"] and got["value"][1] == 12.5
    assert json.loads(got["software"][1]) == {"gpu": "X"} and json.loads(got["extra"][1]) == {"tokens": 4096}


def test_slim_wheel_drops_only_builtin_tasks(tmp_path):
    import zipfile

    sys.path.insert(0, str(GPU))
    try:
        import gpu_bench
    finally:
        sys.path.remove(str(GPU))
    wheel = tmp_path / "lm_eval-0.0-py3-none-any.whl"
    names = ["lm_eval/__init__.py", "lm_eval/tasks/__init__.py", "lm_eval/tasks/manager.py",
             "lm_eval/tasks/arc/arc_easy.yaml", "lm_eval/tasks/mmlu/x/y.yaml", "lm_eval-0.0.dist-info/METADATA"]
    with zipfile.ZipFile(wheel, "w") as z:
        for n in names:
            z.writestr(n, "x")
        z.writestr("lm_eval-0.0.dist-info/RECORD", "".join(f"{n},sha256=a,1\n" for n in names))
    (tmp_path / "slim").mkdir()
    slim = gpu_bench.slim_wheel(wheel, tmp_path / "slim")
    with zipfile.ZipFile(slim) as z:
        kept = z.namelist()
        record = z.read("lm_eval-0.0.dist-info/RECORD").decode()
    assert "lm_eval/tasks/manager.py" in kept and "lm_eval/tasks/arc/arc_easy.yaml" not in kept
    assert "arc_easy" not in record and "mmlu" not in record and "lm_eval/tasks/__init__.py" in record


def test_park_moves_what_the_run_does_not_read_and_unpark_restores_it(tmp_path):
    repo, parked = tmp_path / "repo", tmp_path / "parked"
    files = {"nasbench/x.py": b"code", "results/bench.duckdb": b"d" * 5000, "results/published/a.parquet": b"p" * 300,
             "results/supernets/keep/manifest.json": b"{}", "results/supernets/keep/w.safetensors": b"w" * 900,
             "results/supernets/old/w.safetensors": b"o" * 900, "results/new-untracked.json": b"u" * 10,
             "results/bands/probes.jsonl": b"{}\n"}  # the bands are kept without --keep
    for name, data in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(data)
    (repo / ".gitignore").write_text("results/ignored.bin\n", encoding="utf-8")
    (repo / "results" / "ignored.bin").write_bytes(b"i")  # a copy from git lacks it: not parked
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    _run(["git", "init", "-q"], repo, env)
    _run(["git", "add", "nasbench", "results/bench.duckdb", "results/published", "results/supernets", "results/bands",
          ".gitignore"], repo, env)
    _run(["git", "commit", "-qm", "t"], repo, env)
    gpu = [sys.executable, str(GPU / "gpu.py")]

    done = _run(gpu + ["park", str(parked), "--keep", "results/supernets/keep"], repo, env)
    moved = {"results/bench.duckdb", "results/published/a.parquet", "results/supernets/old/w.safetensors",
             "results/new-untracked.json"}
    assert json.loads(done.stdout)["parked"] == len(moved)
    for name in files:
        assert (repo / name).exists() == (name not in moved), name
        assert (parked / name).exists() == (name in moved), name
    assert (repo / "results" / "ignored.bin").exists()
    # a second park into the same folder, or a folder inside the checkout, is refused
    assert "unpark those files first" in _run(gpu + ["park", str(parked)], repo, env, check=False).stderr
    assert "inside the checkout" in _run(gpu + ["park", "results/p"], repo, env, check=False).stderr
    # a file written again meanwhile is a conflict: nothing moves
    (repo / "results" / "bench.duckdb").write_bytes(b"new")
    failed = _run(gpu + ["unpark", str(parked)], repo, env, check=False)
    assert failed.returncode != 0 and "results/bench.duckdb" in failed.stderr
    assert (parked / "results" / "published" / "a.parquet").exists()
    (repo / "results" / "bench.duckdb").unlink()

    _run(gpu + ["unpark", str(parked)], repo, env)
    for name, data in files.items():
        assert (repo / name).read_bytes() == data, name
    assert not parked.exists()
    assert _run(["git", "status", "--porcelain", "--untracked-files=no"], repo, env).stdout == ""
