"""The GPU run's ``bench`` mode: the shipped benchmark's perplexity and accuracy measured on a GPU machine.

- ``plan`` (here, with duckdb): which archs each pass measures, in priority order (the build's endpoints and band
  archs, then its grid, then the rest of its arch list, then the measured front), from what the benchmark DB and the
  build's shard DBs already hold. Passes: ppl on the trained supernet for every arch that lacks it, ppl on the
  untrained sorted supernet and on the pretrained model for the first ``--ref-archs`` that lack it, then lm-eval
  accuracy on the trained supernet for every arch that lacks it; each ppl pass first re-measures ``--overlap`` archs
  already measured on the CPU (the GPU-vs-CPU check). With a time window (``bench --soft``, for a machine held for a
  fixed time) every pass has a share of it: a pass stops at its cumulative share (the arch in flight finishes), and
  the next one starts at once; without one, every pass runs to its end.
- ``run`` (on the GPU machine, no duckdb): each pass is :func:`nasbench.profile.profile` itself, unchanged, with
  ``nasbench.store`` replaced in that process by a module whose ``Store`` is :class:`nasbench.profile.jsonl.JsonlStore`:
  each arch's rows become one fsynced JSON line, in the stage folder and in the output folder (so a run that is killed
  still leaves every finished arch there). The base model is dequantized once and copied per pass; the sorted
  supernet is the base permuted by the artifact's own ``importance.json`` (what ``nasbench sort`` saved and training
  started from), saved as a directory named ``sorted`` so its rows get the id the benchmark stores it under.
- ``fetch`` (here): the returned rows checked, kept under ``results/gpu-runs/<run>/`` and replayed into the DB with
  :func:`nasbench.profile.jsonl.import_rows` (the store's own write path); prints the GPU-vs-CPU check.

Only the standard library is imported at module level.
"""

from __future__ import annotations

import copy
import functools
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

#: The tasks and items of the accuracy pass (the benchmark's acc protocol: lm-eval on nasbench/profile/tasks).
TASKS = ("arc_easy", "arc_challenge", "piqa", "hellaswag", "winogrande")
LIMIT_ITEMS = 500
#: Cumulative share of the time window at which each pass stops starting archs (ppl art, sorted, pretrained, acc).
SHARES = (0.30, 0.40, 0.50, 1.0)
ROWS = "rows.jsonl"
PLAN = "plan.json"
#: Wheels this mode needs beyond a GPU machine's torch, transformers, accelerate, pyarrow and pandas.
WHEELS = ("gguf", "peft", "lm_eval", "datasets", "dill", "multiprocess")


# ---------------------------------------------------------------------------------------------------------- plan
def _read_db(path: Path, space: str) -> tuple[set[tuple[str, str, str, str]], set[str], dict[str, str]]:
    """(arch_id, supernet_id, metric, task) of every measurement of ``space``, the supernet ids and arch_id -> arch
    JSON of ``path``; a DB held by a writer (the CPU build) is read from a copy."""
    from nasbench.errors import StoreError
    from nasbench.store import connect_read_only

    tmp = None
    try:
        con = connect_read_only(path)
    except StoreError:
        tmp = Path(tempfile.mkdtemp(prefix="nasbench-plan-"))
        for suffix in ("", ".wal"):
            if Path(f"{path}{suffix}").is_file():
                shutil.copyfile(f"{path}{suffix}", tmp / f"db.duckdb{suffix}")
        con = connect_read_only(tmp / "db.duckdb")
    try:
        keys = set(con.execute("SELECT arch_id, supernet_id, metric, task FROM measurements WHERE space = ?",
                               [space]).fetchall())
        supernets = {r[0] for r in con.execute("SELECT id FROM supernets").fetchall()}
        archs = dict(con.execute("SELECT arch_id, arch FROM architectures WHERE space = ?", [space]).fetchall())
    finally:
        con.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return keys, supernets, archs


def make_plan(space_path: str, artifact: str, db: str, *, shards: str | None = None, total: int = 2000,
              grid: int = 500, grid_bins: int = 10, seed: int = 0, bands: tuple[str, ...] = (), ref_archs: int = 500,
              overlap: int = 8, tasks: tuple[str, ...] = TASKS, limit_items: int | None = LIMIT_ITEMS,
              acc_archs: int | None = None, acc_batch: int = 64, ppl_batch: int = 4, ppl_tokens: int = 4096,
              seq_len: int = 512, dtype: str = "bfloat16", shares: tuple[float, ...] = SHARES,
              front: bool = True, arch_files: tuple[str, ...] | None = None) -> dict[str, Any]:
    from nasbench.profile.accuracy import PRIMARY_METRIC
    from nasbench.profile.build import plan_archs
    from nasbench.space import arch_id, load_space
    from nasbench.supernet import SupernetRef
    from nasbench.supernet.artifact import read_manifest

    space = load_space(space_path)
    art_id = SupernetRef.resolve(artifact).id
    manifest = read_manifest(artifact)
    sources = [Path(db)] if Path(db).is_file() else []
    if shards:
        sources += sorted(Path(shards).glob(f"{space.name}-*.duckdb"))
    keys: set[tuple[str, str, str, str]] = set()
    supernets: set[str] = set()
    stored: dict[str, str] = {}
    for source in sources:
        k, s, a = _read_db(source, space.name)
        keys |= k
        supernets |= s
        stored.update(a)
    archs = [space.largest(), space.smallest_admitted()]
    if arch_files is None:  # the fronts committed for this artifact, as the CPU build's --archs (after the bands)
        arch_files = tuple(str(p) for p in sorted((Path("results/fronts") / art_id).glob("*.jsonl")))
    archs += plan_archs(space, total=total, seed=seed, grid=grid, grid_bins=grid_bins, bands=tuple(map(Path, bands)),
                        arch_files=tuple(map(Path, arch_files)))
    n_build = len({arch_id(a) for a in archs})
    front_ids: list[str] = []
    if front and Path(db).is_file():
        try:
            from nasbench.pareto import measured_front

            result = measured_front(db, space.name, ["ppl", "latency_ms"], supernet_id=art_id)
            front_ids = [str(x) for x in result.front["arch_id"]]
        except Exception as exc:  # noqa: BLE001 (a DB without both objectives has no front: the plan goes on)
            print(f"gpu: plan: no measured front ({type(exc).__name__}: {exc})", file=sys.stderr)
    archs += [json.loads(stored[i]) for i in front_ids if i in stored]
    prio: dict[str, dict[str, Any]] = {}
    for arch in archs:
        prio.setdefault(arch_id(arch), space.canonical(arch))
    order = list(prio.items())

    def has(aid: str, supernet: str, metric: str, task: str = "") -> bool:
        return (aid, supernet, metric, task) in keys

    def ppl_pass(name: str, supernet: str, sid: str, limit: int | None) -> dict[str, Any]:
        done = [a for i, a in order if has(i, sid, "ppl")][:overlap]
        todo = [a for i, a in order if not has(i, sid, "ppl")]
        todo = todo if limit is None else todo[:limit]
        return {"name": name, "supernet": supernet, "supernet_id": sid, "metrics": ["ppl"], "tasks": [],
                "limit_items": None, "batch_size": ppl_batch, "archs": done + todo, "overlap": len(done)}

    acc = [a for i, a in order if any(not has(i, art_id, PRIMARY_METRIC[t], t) for t in tasks)]
    passes = [ppl_pass(f"ppl-{art_id}", "artifact", art_id, None),
              ppl_pass("ppl-sorted", "sorted", "sorted", ref_archs),
              ppl_pass("ppl-pretrained", "pretrained", "pretrained", ref_archs),
              {"name": f"acc-{art_id}", "supernet": "artifact", "supernet_id": art_id, "metrics": ["acc"],
               "tasks": list(tasks), "limit_items": limit_items, "batch_size": acc_batch,
               "archs": acc if acc_archs is None else acc[:acc_archs], "overlap": 0}]
    if len(shares) != len(passes) or list(shares) != sorted(shares) or not 0 < shares[-1] <= 1:
        raise SystemExit(f"gpu: --shares must be {len(passes)} increasing fractions ending at <= 1")
    for p, share in zip(passes, shares):
        p["share"] = share
    return {"format": "nasbench-gpu-bench-plan/1", "space": space_path, "space_name": space.name,
            "space_hash": space.hash, "artifact": artifact, "artifact_id": art_id,
            "artifact_sha256": manifest["files"]["trainable.safetensors"] if "trainable.safetensors" in
            manifest["files"] else None, "base_sha256": (manifest.get("base") or {}).get("sha256"),
            "known_supernets": sorted(supernets), "config": {"ppl_tokens": ppl_tokens, "seq_len": seq_len,
                                                             "dtype": dtype},
            "build": {"total": total, "grid": grid, "grid_bins": grid_bins, "seed": seed, "bands": list(bands),
                      "arch_files": list(arch_files),
                      "archs": n_build, "front": len(front_ids)},
            "sources": [str(s) for s in sources], "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "passes": passes}


def cmd_plan(args: Any) -> int:
    plan = make_plan(args.space, args.artifact, args.db, shards=args.shards, total=args.total, grid=args.grid,
                     grid_bins=args.grid_bins, seed=args.seed,
                     bands=tuple(b for b in (args.bands or "").split(",") if b), ref_archs=args.ref_archs,
                     overlap=args.overlap, tasks=tuple(args.tasks.split(",")),
                     limit_items=args.limit_items or None, acc_archs=args.acc_archs, acc_batch=args.acc_batch,
                     ppl_batch=args.ppl_batch, ppl_tokens=args.ppl_tokens, seq_len=args.seq_len, dtype=args.dtype,
                     shares=tuple(float(x) for x in args.shares.split(",")), front=not args.no_front,
                     arch_files=None if args.archs is None else tuple(a for a in args.archs.split(",") if a))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(plan) + "\n", encoding="utf-8")
    print(json.dumps({"plan": args.out, "build_archs": plan["build"]["archs"], "front": plan["build"]["front"],
                      "passes": {p["name"]: {"archs": len(p["archs"]), "overlap": p["overlap"], "share": p["share"]}
                                 for p in plan["passes"]}}))
    return 0


# -------------------------------------------------------------------------------------------- GPU machine: run
def _install_store_shim(rows: Path, mirrors: list[Path], known_supernets: list[str]) -> None:
    """``nasbench.store`` in this process: ``Store(db)`` is a JsonlStore on ``rows`` (duckdb is not imported)."""
    import importlib.util

    import nasbench
    from nasbench.profile.jsonl import JsonlStore

    package = types.ModuleType("nasbench.store")
    package.__path__ = []  # no submodule of the real package can load beside the shim
    sys.modules["nasbench.store"] = package
    spec = importlib.util.spec_from_file_location("nasbench.store.schema",
                                                  Path(nasbench.__file__).parent / "store" / "schema.py")
    schema = importlib.util.module_from_spec(spec)
    sys.modules["nasbench.store.schema"] = schema
    spec.loader.exec_module(schema)
    package.schema = schema
    package.Measurement = schema.Measurement
    package.Store = lambda db=None: JsonlStore(rows, mirrors=mirrors, known_supernets=known_supernets)
    nasbench.__dict__.pop("store", None)


def _cache_loads() -> dict[str, float]:
    """The base model dequantized once per dtype and the tokenizer read once; each caller gets its own copy (the
    runner permutes and slices what it is given). Returns the seconds spent loading, by what."""
    import nasbench.models as models

    spent: dict[str, float] = {}
    base, tokenizer = models.load_base_model, models.load_tokenizer

    @functools.lru_cache(maxsize=None)
    def _base(source: str, dtype: Any) -> Any:
        start = time.perf_counter()
        model = base(_spec[source], dtype=dtype)
        spent[f"base_{dtype}"] = round(time.perf_counter() - start, 2)
        return model

    @functools.lru_cache(maxsize=None)
    def _tok(source: str) -> Any:
        start = time.perf_counter()
        out = tokenizer(_spec[source])
        spent["tokenizer"] = round(time.perf_counter() - start, 2)
        return out

    _spec: dict[str, Any] = {}

    def load_base_model(spec: Any, dtype: Any = None) -> Any:
        import torch

        _spec[spec.source] = spec
        return copy.deepcopy(_base(spec.source, dtype if dtype is not None else torch.float32))

    def load_tokenizer(spec: Any) -> Any:
        _spec[spec.source] = spec
        cached = _tok(spec.source)
        try:
            return copy.deepcopy(cached)
        except Exception:  # noqa: BLE001 (a tokenizer that cannot be copied is shared; it is not written to)
            return cached

    models.load_base_model, models.load_tokenizer = load_base_model, load_tokenizer
    return spent


def _task_patches(tasks: list[str], cache_requests: bool) -> None:
    """The GPU machine has only the bench tasks' files (``write_tasks`` checks those alone); ``cache_requests``:
    lm-eval builds each task's requests once and reuses them for every arch (its own cache: same items, same
    order; the CPU test checks the scores equal those without it)."""
    import lm_eval  # noqa: F401 (raises where lm-eval is missing: the accuracy pass is then skipped)

    import nasbench.profile.accuracy as accuracy

    accuracy.write_tasks = functools.partial(accuracy.write_tasks, tasks=tasks)
    if cache_requests:
        accuracy.evaluate = functools.partial(accuracy.evaluate, cache_requests=True)


def _materialize_sorted(space: Any, artifact: Path, out: Path) -> Path:
    """The untrained sorted supernet (base permuted by the artifact's importance) as a directory named ``sorted``."""
    import torch

    from nasbench.importance import IMPORTANCE_FILE, apply_order, load_importance
    from nasbench.models import load_base_model

    if (out / IMPORTANCE_FILE).is_file():
        return out
    model = load_base_model(space.model, dtype=torch.float32)
    importance = load_importance(artifact)
    record = apply_order(model, importance)
    expected = json.loads((artifact / IMPORTANCE_FILE).read_text(encoding="utf-8")).get("permutation")
    if expected is not None and expected != record:
        raise SystemExit(f"gpu: {artifact}/{IMPORTANCE_FILE} no longer gives its recorded permutation")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    shutil.copyfile(artifact / IMPORTANCE_FILE, tmp / IMPORTANCE_FILE)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def provenance(device: str) -> dict[str, Any]:
    import importlib.metadata as md
    import platform

    import torch

    out: dict[str, Any] = {"python": platform.python_version(), "device": device, "cuda": torch.version.cuda,
                           "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None}
    for name in ("torch", "transformers", "lm_eval", "datasets", "peft", "gguf", "accelerate", "nasbench"):
        try:
            out[name] = md.version(name.replace("_", "-"))
        except md.PackageNotFoundError:
            out[name] = None
    return out


def cmd_run(args: Any) -> int:
    """Run the plan's passes on this machine until the soft deadline; rows to ``--stage``/rows.jsonl and ``--out``."""
    t0, stage, out = args.t0, Path(args.stage), Path(args.out)
    plan = json.loads(Path(args.plan).read_text(encoding="utf-8"))
    rows = stage / ROWS
    _install_store_shim(rows, [out / ROWS], plan["known_supernets"])
    import torch

    from nasbench.profile import ProfileConfig, profile
    from nasbench.space import load_space

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    spent = _cache_loads()
    space = load_space(plan["space"])
    if space.hash != plan["space_hash"]:
        raise SystemExit(f"gpu: {plan['space']} changed since the plan (hash {space.hash}, plan "
                         f"{plan['space_hash']}): prepare again")
    artifact = Path(plan["artifact"]) if args.artifact is None else Path(args.artifact)
    data_dir = Path(os.environ.get("NASBENCH_DATA_DIR") or stage / "data")
    acc_tasks = sorted({t for p in plan["passes"] for t in p["tasks"]})
    lm_eval_error = None
    if acc_tasks:
        try:
            _task_patches(acc_tasks, cache_requests=not args.no_cache_requests)
        except Exception as exc:  # noqa: BLE001 (no lm-eval here: the ppl passes still run)
            lm_eval_error = f"{type(exc).__name__}: {exc}"
    report: dict[str, Any] = {"plan": {k: plan[k] for k in ("space_name", "space_hash", "artifact_id",
                                                            "artifact_sha256", "base_sha256", "created")},
                              "provenance": provenance(device), "soft_s": args.soft, "passes": []}
    ready = time.time()
    report["ready_at_s"] = round(ready - t0, 1)
    end = t0 + args.soft if args.soft is not None else float("inf")
    status = 0
    only = set(args.passes.split(",")) if args.passes else None
    for p in plan["passes"]:
        entry: dict[str, Any] = {"name": p["name"], "archs": len(p["archs"]), "overlap": p.get("overlap", 0)}
        report["passes"].append(entry)
        deadline = min(end, ready + p["share"] * (end - ready))
        if only is not None and p["name"] not in only:
            entry["skipped"] = "not selected"
            continue
        if "acc" in p["metrics"] and lm_eval_error:
            entry["skipped"] = f"lm-eval unavailable: {lm_eval_error}"
            continue
        if time.time() >= deadline or not p["archs"]:
            entry["skipped"] = "no time left" if p["archs"] else "nothing to measure"
            continue
        start = time.time()
        try:
            weights = {"artifact": artifact, "pretrained": None}.get(p["supernet"])
            if p["supernet"] == "sorted":
                weights = _materialize_sorted(space, artifact, stage / "sorted")
            config = ProfileConfig(n=0, archs=tuple(p["archs"]), endpoints=False, metrics=tuple(p["metrics"]),
                                   tasks=tuple(p["tasks"]) or ProfileConfig.tasks, limit_items=p["limit_items"],
                                   ppl_tokens=plan["config"]["ppl_tokens"], seq_len=plan["config"]["seq_len"],
                                   dtype=plan["config"]["dtype"], batch_size=p["batch_size"], device=device,
                                   deadline=deadline)
            summary = profile(space, rows, config, supernet=weights, data_dir=data_dir,
                              progress=args.progress)
            entry.update(measured=summary.profiled, rows=summary.rows,
                         stopped=summary.stopped, supernet_id=summary.supernet_id)
        except Exception:  # noqa: BLE001 (reported; the next pass still runs)
            import traceback

            entry["error"] = traceback.format_exc(limit=6)
            status = 6
            print(entry["error"], file=sys.stderr, flush=True)
        entry["seconds"] = round(time.time() - start, 1)
        entry["ended_at_s"] = round(time.time() - t0, 1)
        print(f"gpu: bench: {json.dumps(entry)}", flush=True)
    report["load_s"] = spent
    report["total_s"] = round(time.time() - t0, 1)
    report.update(_per_arch(rows, plan))
    text = json.dumps(report, indent=1)
    (out / "bench.json").write_text(text + "\n", encoding="utf-8")
    print(text, flush=True)
    return status


def _per_arch(rows: Path, plan: dict[str, Any]) -> dict[str, Any]:
    """Archs measured per pass in this machine's rows file and the median seconds an arch's metric took."""
    from nasbench.profile.jsonl import read_lines

    by: dict[tuple[str, str], list[float]] = {}
    if rows.is_file():
        for record in read_lines(rows):
            if record["kind"] != "arch":
                continue
            cost: dict[tuple[str, str], float] = {}
            for m in record["measurements"]:
                group = "acc" if m["task"] else m["metric"]
                if group in ("ppl", "acc"):
                    seen = cost.get((m["supernet_id"], group), 0.0)
                    # a task's seconds are shared by its metrics: count each task once
                    cost[(m["supernet_id"], group)] = seen + (m["cost_s"] or 0.0) * (
                        1.0 if group == "ppl" or m["metric"] == "acc" else 0.0)
            for key, seconds in cost.items():
                by.setdefault(key, []).append(seconds)
    out = {}
    for (sid, group), values in sorted(by.items()):
        values.sort()
        out[f"{group}-{sid}"] = {"archs": len(values), "median_s": round(values[len(values) // 2], 3),
                                 "total_s": round(sum(values), 1)}
    return {"measured": out}


def cmd_preflight(args: Any) -> int:
    """Versions, the GPU, and whether lm-eval, datasets, gguf and peft import (a few seconds; no model)."""
    import traceback

    result: dict[str, Any] = {"preflight": "ok"}
    try:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        result.update(provenance(device))
        for name in ("lm_eval", "datasets", "gguf", "peft", "lm_eval.models.huggingface", "lm_eval.tasks"):
            try:
                __import__(name)
                result[f"import {name}"] = "ok"
            except Exception as exc:  # noqa: BLE001
                result[f"import {name}"] = f"{type(exc).__name__}: {exc}"
                result["preflight"] = "failed: " + name
        if device == "cuda":
            x = torch.randn(4096, 4096, device=device, dtype=torch.bfloat16)
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(20):
                x @ x
            torch.cuda.synchronize()
            result["matmul_tflops_bf16"] = round(20 * 2 * 4096 ** 3 / (time.perf_counter() - start) / 1e12, 1)
    except Exception:  # noqa: BLE001
        result["preflight"] = "failed"
        result["error"] = traceback.format_exc(limit=6)
    from gpu import write_preflight

    return write_preflight(result, args.out)


# ------------------------------------------------------------------------------------------------------- fetch
def cmd_fetch(args: Any) -> int:
    """Here: the rows of a ``remote.sh bench`` output folder, checked, kept and replayed into ``--db``."""
    from nasbench.profile.jsonl import import_rows, read_lines
    from nasbench.space import load_space
    from nasbench.store import Store

    src = Path(args.dir)
    rows = src / ROWS
    if not rows.is_file():
        raise SystemExit(f"gpu: {src} holds no {ROWS}: not the output folder of remote.sh bench")
    sums = src / "SHA256SUMS"
    complete = False
    from gpu import check_sums, keep_run_files

    if sums.is_file():

        complete = ROWS in check_sums(src)
    if not complete:
        print(f"gpu: {src} has no SHA256SUMS over {ROWS} (was the run killed?): importing every complete line",
              file=sys.stderr)
    report = json.loads((src / "bench.json").read_text(encoding="utf-8")) if (src / "bench.json").is_file() else {}
    records = list(read_lines(rows))
    if not records:
        raise SystemExit(f"gpu: {rows} holds no rows")
    space = load_space(args.space)
    stamp = report.get("plan", {}).get("created", "").replace(":", "").replace("-", "") or time.strftime(
        "%Y%m%dT%H%M%SZ", time.gmtime())
    keep = Path(args.runs) / f"bench-{stamp}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    keep.mkdir(parents=True, exist_ok=False)
    with open(rows, "rb") as f, gzip.GzipFile(keep / (ROWS + ".gz"), "wb", mtime=0) as g:
        shutil.copyfileobj(f, g)
    keep_run_files(src, keep, ("bench.json", "preflight.json"), "bench.log")
    with Store(args.db) as store:
        counts = import_rows(store, rows, {space.name: space})
        check = crosscheck(store, space.name)
    (keep / "crosscheck.json").write_text(json.dumps(check, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({"fetch": str(src), "db": args.db, "kept": str(keep), **counts, "complete": complete,
                      "crosscheck": check}))
    return 0


def crosscheck(store: Any, space: str) -> dict[str, Any]:
    """Per supernet: archs with ppl on both a CUDA device and the CPU, and the largest relative difference."""
    frame = store.query(
        "SELECT g.supernet_id, count(*) AS n, max(abs(g.value - c.value) / c.value) AS max_rel, "
        "median(abs(g.value - c.value) / c.value) AS median_rel FROM measurements g JOIN measurements c "
        "ON g.space = c.space AND g.arch_id = c.arch_id AND g.supernet_id = c.supernet_id AND g.metric = c.metric "
        "AND g.task = c.task WHERE g.space = ? AND g.metric = 'ppl' AND g.device LIKE 'cuda%' AND c.device = 'cpu' "
        "GROUP BY g.supernet_id ORDER BY 1", [space])
    return {r["supernet_id"]: {"n": int(r["n"]), "max_rel": float(r["max_rel"]), "median_rel": float(r["median_rel"])}
            for r in frame.to_dict("records")}


# -------------------------------------------------------------------------------------------------------- slim
def slim_wheel(wheel: Path, out_dir: Path) -> Path:
    """lm-eval's wheel without its built-in task folders (``lm_eval/tasks/<name>/``: ~8 of its 9 MB; the bench
    reads the YAMLs nasbench writes and never indexes the defaults); its RECORD rewritten to match."""
    import zipfile

    out = out_dir / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        kept = []
        for info in src.infolist():
            parts = info.filename.split("/")
            if slim_drops(parts):
                continue
            kept.append(info.filename)
            if info.filename.endswith(".dist-info/RECORD"):
                record = src.read(info).decode("utf-8").splitlines()
                lines = [r for r in record if r and not slim_drops(r.split(",", 1)[0].split("/"))]
                dst.writestr(info, "\n".join(lines) + "\n")
            else:
                dst.writestr(info, src.read(info))
    return out


def slim_drops(parts: list[str]) -> bool:
    """True for a file under ``lm_eval/tasks/<folder>/`` (the built-in tasks); the task machinery beside it stays."""
    return len(parts) >= 4 and parts[0] == "lm_eval" and parts[1] == "tasks"


def cmd_slim(args: Any) -> int:
    out = slim_wheel(Path(args.wheel), Path(args.out))
    print(f"gpu: slim: {out} ({Path(args.wheel).stat().st_size / 2**20:.1f} -> {out.stat().st_size / 2**20:.1f} MiB)")
    return 0


def add_verbs(verbs: Any) -> None:
    from gpu import DB, RUNS, SPACE

    p = verbs.add_parser("plan", help="here: the bench plan (which archs each pass measures) from the DBs")
    p.add_argument("artifact")
    p.add_argument("--space", default=SPACE)
    p.add_argument("--db", default=DB)
    p.add_argument("--shards", default="results/shards")
    p.add_argument("--total", type=int, default=2000)
    p.add_argument("--grid", type=int, default=500)
    p.add_argument("--grid-bins", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bands", default="results/bands/smollm2-135m-50.jsonl,results/bands/smollm2-135m-75.jsonl")
    p.add_argument("--archs", help="comma list of arch files after the bands, as build's --archs (default: "
                                   "results/fronts/<artifact id>/*.jsonl)")
    p.add_argument("--ref-archs", type=int, default=500, help="archs of the sorted and the pretrained ppl passes")
    p.add_argument("--overlap", type=int, default=8, help="CPU-measured archs each ppl pass measures again")
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--limit-items", type=int, default=LIMIT_ITEMS, help="items per task (0: all)")
    p.add_argument("--acc-archs", type=int, help="at most this many archs in the accuracy pass (default: all)")
    p.add_argument("--acc-batch", type=int, default=64, help="profile --batch-size of the acc pass (lm-eval: x2)")
    p.add_argument("--ppl-batch", type=int, default=4, help="profile --batch-size of the ppl passes (the build's)")
    p.add_argument("--ppl-tokens", type=int, default=4096)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--shares", default=",".join(map(str, SHARES)),
                   help="cumulative share of the time window (bench --soft) at which each pass stops (ppl art, "
                        "sorted, pretrained, acc)")
    p.add_argument("--no-front", action="store_true")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_plan)
    p = verbs.add_parser("bench", help="GPU machine: run the plan's passes (until the soft deadline, if any)")
    p.add_argument("--plan", required=True)
    p.add_argument("--artifact", help="default: the plan's")
    p.add_argument("--stage", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--t0", type=float, required=True)
    p.add_argument("--soft", type=float, help="seconds after t0 after which no arch starts (default: no deadline)")
    p.add_argument("--device", help="default: cuda where available, else cpu")
    p.add_argument("--passes", help="comma list of pass names to run (default all)")
    p.add_argument("--no-cache-requests", action="store_true")
    p.add_argument("--progress", action="store_true")
    p.set_defaults(func=cmd_run)
    p = verbs.add_parser("bench-preflight", help="GPU machine: versions, GPU, lm-eval importable")
    p.add_argument("--out")
    p.set_defaults(func=cmd_preflight)
    p = verbs.add_parser("fetch-bench", help="here: import the rows of a bench output folder into the DB")
    p.add_argument("dir")
    p.add_argument("--db", default=DB)
    p.add_argument("--space", default=SPACE)
    p.add_argument("--runs", default=RUNS)
    p.set_defaults(func=cmd_fetch)
    p = verbs.add_parser("slim-wheel", help="lm-eval's wheel without its built-in tasks")
    p.add_argument("wheel")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_slim)
