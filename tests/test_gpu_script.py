"""The prepared GPU run (tools/gpu/) end to end on CPU: prepare -> the device calls (each on its own copy of the tree
with only its carried part, the staged files in one folder as on a warm machine) -> fetch, with a tiny model, a tiny
artifact and, in every subprocess, the imports the device machine lacks made to fail."""

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
from nasbench.space import load_space
from nasbench.train import train
from nasbench.train.artifact import pack, read_manifest

REPO = Path(__file__).resolve().parents[1]
GPU = REPO / "tools" / "gpu"
#: Not on the device machine (gguf arrives as a wheel and is only read for GGUF models; the tiny model is not one).
BLOCKED = ("duckdb", "lm_eval", "syne_tune", "gguf", "fastparquet", "pymoo", "dill")
SITECUSTOMIZE = f"""
import importlib.abc, sys
class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError("not on the device machine: " + name)
sys.meta_path.insert(0, _Blocked())
"""


def _run(args, cwd, env, check=True):
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(f"{args} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


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

    # prepare: ~150 KB per call left beside a (pretended) full tree -> the blob travels in 3 parts
    limit = 64 << 20
    out = _run(["bash", str(GPU / "prepare.sh"), "results/supernets/tiny-art", "--space", "space.yaml",
                "--base", str(blob), "--package", "nasbench_gpu_standin", "--file", "model.gguf",
                "--tree-bytes", str(limit - 150_000), "--margin-mib", "0", "--min-part-mib", "0.1"],
               repo, dict(env, NASBENCH_GPU_NO_WHEELS="1"))
    calls = json.loads((repo / ".gpu-carry" / "calls.json").read_text(encoding="utf-8"))
    assert len(calls) == 3, out.stdout
    assert all(c["bytes"] <= limit for c in calls)
    assert calls[-1]["command"].startswith("bash tools/gpu/remote.sh train results/supernets/tiny-art")
    assert "remote.sh train" in out.stdout and "carry=['.gpu-carry/p3']" in out.stdout

    stage = tmp_path / "stage"
    device = dict(env, NASBENCH_GPU_STAGE=str(stage), NASBENCH_GPU_SPACE="space.yaml",
                  NASBENCH_GPU_PROBES="probes.jsonl", NASBENCH_GPU_PRECISION="fp32", NASBENCH_GPU_SEQ_LEN="32",
                  NASBENCH_GPU_EVAL_EVERY="2", NASBENCH_GPU_CHECKPOINT_EVERY="2", NASBENCH_GPU_POLL_S="0.5",
                  NASBENCH_GPU_SOFT_S="0", NASBENCH_GPU_HARD_S="240")
    device.pop("NASBENCH_DATA_DIR")  # the device machine has no data directory: part 1 brings the text

    def call(i: int, command: str, carry: list[str], check: bool = True) -> tuple[subprocess.CompletedProcess, Path]:
        """One device call: a fresh copy of the tree (no .gpu-carry) plus the carried paths, an empty $OUT."""
        tree = tmp_path / f"device{i}"
        shutil.copytree(repo, tree, ignore=shutil.ignore_patterns(".gpu-carry"))
        for path in carry:
            shutil.copytree(repo / path, tree / path)
        out_dir = tmp_path / f"out{i}"
        out_dir.mkdir()
        done = _run(["bash", "-c", command.replace("tools/gpu/", f"{GPU}/")], tree, dict(device, OUT=str(out_dir)),
                    check=check)
        return done, out_dir

    # the training call on a machine that saw none of the stage calls fails at once, naming what is missing
    cold, _ = call(0, calls[-1]["command"], calls[-1]["carry"], check=False)
    assert cold.returncode == 3 and "MISSING base parts [1, 2]" in cold.stderr
    shutil.rmtree(stage)

    first, out1 = call(1, calls[0]["command"], calls[0]["carry"])
    assert "parts [1] of 3 staged" in first.stdout
    preflight = json.loads((out1 / "preflight.json").read_text(encoding="utf-8"))
    assert preflight["preflight"] == "ok", preflight
    second, _ = call(2, calls[1]["command"], calls[1]["carry"])
    assert "parts [1, 2] of 3 staged" in second.stdout
    # the last call: steps and batch as arguments; the soft deadline (0 s) stops it after its first checkpoint
    last, out3 = call(3, calls[2]["command"] + " 1000 2", calls[2]["carry"])
    joined = stage / "pkg" / "nasbench_gpu_standin" / "model.gguf"
    assert joined.read_bytes() == blob.read_bytes() and (joined.parent / "__init__.py").is_file()
    assert len(list(out3.iterdir())) <= 8 and all(f.stat().st_size < 16 << 20 for f in out3.iterdir())
    timing = json.loads((out3 / "timing.json").read_text(encoding="utf-8"))
    assert timing["stopped_by"] == "deadline" and timing["steps"] >= 2 and timing["tokens"] == 64 * timing["steps"]
    assert timing["tokens_per_s"] > 0 and timing["max_steps"] == 1000 and timing["batch_size"] == 2
    assert timing["torch"] and timing["gpu"]
    curve = [json.loads(x) for x in (out3 / "run-curve.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {p["role"] for p in curve} == {"full", "probe0", "probe1"}

    # fetch: parts checked and joined into results/supernets/<id>, the manifest verified
    fetched = _run(["bash", str(GPU / "fetch.sh"), str(out3), "--space", "space.yaml"], repo, env)
    artifact = repo / "results" / "supernets" / "tiny-art-h200"
    manifest = read_manifest(artifact)
    assert manifest["id"] == "tiny-art-h200" and len(manifest["training"]["chain"]) == 2
    assert manifest["training"]["tokens_total"] == 2 * 2 * 32 + timing["tokens"]
    assert "nasbench profile space.yaml --supernet" in fetched.stdout
    assert (repo / "results" / "gpu-runs" / "tiny-art-h200" / "timing.json").is_file()
    again = _run(["bash", str(GPU / "fetch.sh"), str(out3)], repo, env, check=False)
    assert again.returncode != 0 and "exists" in again.stderr
