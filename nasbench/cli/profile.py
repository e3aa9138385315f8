"""The verbs that measure and keep: ``profile``, ``tasks``, ``merge``, ``publish`` and ``sql``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from nasbench.cli._common import DATA_DIR_HELP, add_supernet_flag, csv_list, read_arch_lines
from nasbench.errors import NasBenchError


def _cmd_profile(args: argparse.Namespace) -> int:
    from nasbench import data
    from nasbench.profile import parse_shard, profile
    from nasbench.space import load_space

    space = load_space(args.space)
    for flag, value in (("--n", args.n), ("--ppl-tokens", args.ppl_tokens), ("--seq-len", args.seq_len)):
        if value < (0 if flag == "--n" else 1):
            raise NasBenchError(flag, "must be >= 1" if flag != "--n" else "must be >= 0", value)
    _check_engine_flags(args)
    if args.minutes is not None and not args.minutes > 0:
        raise NasBenchError("--minutes", "must be > 0", args.minutes)
    config = _protocol(args, n=args.n, seed=args.seed, grid_params=args.grid_params,
                       archs=tuple(read_arch_lines(args.archs)), shard=parse_shard(args.shard),
                       remeasure_before=args.remeasure_before, latency_visits=args.latency_visits,
                       deadline=None if args.minutes is None else time.time() + 60 * args.minutes)
    if args.engine == "ray":
        from nasbench.profile.ray_engine import import_ray, profile_ray

        import_ray()  # not installed: the one-line error before any work
        summary = profile_ray(space, args.db, config, supernet=args.supernet,
                              data_dir=data.data_dir(args.data_dir), address=args.address,
                              cpus_per_task=1 if args.cpus_per_task is None else args.cpus_per_task)
    else:
        summary = profile(space, args.db, config, supernet=args.supernet, data_dir=data.data_dir(args.data_dir))
    out = {"profile": space.name, "supernet_id": summary.supernet_id, "archs": summary.archs,
           "profiled": summary.profiled, "new_rows": summary.rows, "seconds": round(summary.seconds, 1),
           "stopped_by_deadline": summary.stopped, "db": str(args.db), "engine": args.engine}
    if summary.failures:  # archs whose task raised: the others are stored; rerunning the command retries these
        out["failures"] = summary.failures
    print(json.dumps(out))
    return 1 if summary.failures else 0


def _cmd_cost(args: argparse.Namespace) -> int:
    from nasbench.pipeline.cost import CostAssumptions, cost_estimate, cost_table, parse_count
    from nasbench.space import load_space

    space = load_space(args.space)
    tokens = [parse_count(t, "--tokens") for t in csv_list(args.tokens)]
    gpus = [parse_count(g, "--gpus") for g in csv_list(args.gpus)]
    if not tokens or not gpus:
        raise NasBenchError("--tokens" if not tokens else "--gpus", "must name at least one count",
                            args.tokens if not tokens else args.gpus)
    assumptions = CostAssumptions(gpu=args.gpu, peak_tflops=args.peak_tflops, hbm_tbps=args.hbm_tbps,
                                  train_mfu=args.train_mfu, profile_mfu=args.profile_mfu, overhead_s=args.overhead_s,
                                  train_seq_len=args.train_seq_len, peft=args.peft, kd_teacher=args.kd_teacher)
    estimate = cost_estimate(space, tokens=tokens, archs=parse_count(args.total, "--total"), config=_protocol(args),
                             assumptions=assumptions)
    print(json.dumps(estimate) if args.format == "json" else cost_table(estimate, gpus))
    return 0


def _engine_flags(p: argparse.ArgumentParser) -> None:
    """How ``profile`` and ``build`` run their archs."""
    from nasbench.profile.config import ENGINES

    p.add_argument("--engine", choices=ENGINES, default=ENGINES[0],
                   help="in-process (default) or ray: one Ray task per arch, the driver the only DB writer "
                        "(pip install nasbench[ray])")
    p.add_argument("--address", metavar="ADDR", help="with --engine ray: an existing cluster (auto, HOST:6379, "
                                                       "ray://HOST:10001); default: a local one for the run")
    p.add_argument("--cpus-per-task", type=int, metavar="N", help="with --engine ray: CPU cores (and torch threads) "
                                                                    "per arch task (default 1)")


def _check_engine_flags(args: argparse.Namespace) -> None:
    if args.engine != "ray":  # the Ray flags alone would be silently ignored
        for flag, value in (("--address", args.address), ("--cpus-per-task", args.cpus_per_task)):
            if value is not None:
                raise NasBenchError(flag, "needs --engine ray", value)


#: The measurement protocol's flags, declared once: each is ``--<field>`` of :class:`ProfileConfig` (its default is the
#: field's), with what argparse needs beyond that; :func:`_protocol_flags` adds them and :func:`_protocol` reads them
#: back. ``metrics`` and ``tasks`` are comma lists.
_PROTOCOL = {
    "metrics": dict(help="comma list of ppl,acc,latency,latency_rel,memory,energy, or of the metrics they measure "
                         "(latency_ms, memory_mb, energy_j, acc, ...); latency_rel: prefill time over the full "
                         "model's, the two timed alternately (robust to a drifting shared CPU), which gives the "
                         "default latency_ms (with --decode-tokens N also decode_rel and the default "
                         "decode_ms_per_token); latency (or latency_wall_ms): the wall clocks latency_wall_ms and "
                         "decode_wall_ms_per_token"),
    "tasks": dict(help="comma list of lm-eval tasks for acc (default: the space's data.eval tasks)"),
    "limit_items": dict(type=int, metavar="M", help="first M items of each task (lm-eval's --limit)"),
    "ppl_tokens": dict(type=int, metavar="T", help="WikiText-2 test tokens (default {default})"),
    "seq_len": dict(type=int, metavar="L", help="perplexity window (default {default})"),
    "latency_batch": dict(type=int),
    "latency_seq_len": dict(type=int),
    "latency_repeats": dict(type=int),
    "decode_tokens": dict(type=int, help="also per-token decode latency over this many steps"),
    "decode_repeats": dict(type=int, metavar="N", help="decode pairs (latency_rel) or repeats (latency) per arch "
                                                       "(default max(3, latency-repeats // 3))"),
    "device": dict(metavar="D"),
    "dtype": dict(choices=("auto", "bfloat16", "float16", "float32"),
                  help="weights' dtype (default auto: bfloat16 where this machine runs it fast, else float32)"),
}
_LISTS = ("metrics", "tasks")


def _protocol_flags(p: argparse.ArgumentParser) -> None:
    """The measurement protocol's flags (:data:`_PROTOCOL`), shared by ``profile``, ``build``, ``baseline`` and
    ``cost``; defaults are ProfileConfig's (``tasks`` left out: the space's evaluation tasks)."""
    from nasbench.profile.config import ProfileConfig

    for field, spec in _PROTOCOL.items():
        default = None if field == "tasks" else getattr(ProfileConfig, field)
        if field in _LISTS and default is not None:
            default = ",".join(default)
        spec = dict(spec, default=default)
        if "help" in spec:
            spec["help"] = spec["help"].format(default=default)
        p.add_argument("--" + field.replace("_", "-"), **spec)


def _remeasure_flag(p: argparse.ArgumentParser) -> None:
    """``--remeasure-before``, shared by ``profile`` and ``baseline`` (:attr:`ProfileConfig.remeasure_before`)."""
    p.add_argument("--remeasure-before", metavar="TIME",
                   help="re-measure the --metrics rows stored before this ISO time (UTC, e.g. 2026-11-30T21:00), "
                        "each replaced in its arch's transaction; the same command again resumes")


def _protocol(args: argparse.Namespace, **fields: Any) -> Any:
    """The :class:`ProfileConfig` the protocol flags describe, with ``fields`` (the verb's own) beside them."""
    from nasbench.profile import ProfileConfig

    values = {f: getattr(args, f) for f in _PROTOCOL}
    for f in _LISTS:
        values[f] = tuple(csv_list(values[f]))
    return ProfileConfig(**values, **fields)


def _cmd_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nasbench import data
    from nasbench.profile.build import build
    from nasbench.space import load_space

    space = load_space(args.space)
    _check_engine_flags(args)
    files = {}
    for flag, value in (("--bands", args.bands), ("--archs", args.archs)):
        files[flag] = tuple(Path(p) for p in csv_list(value)) if value else ()
        for path in files[flag]:
            if not path.is_file():
                raise NasBenchError(flag, "no such file", str(path))
    summary = build(space, supernet=args.supernet, db=args.db, shards=args.shards, config=_protocol(args),
                    total=args.total, per_shard=args.per_shard, grid=args.grid, grid_bins=args.grid_bins,
                    seed=args.seed, bands=files["--bands"], arch_files=files["--archs"], minutes=args.minutes,
                    data_dir=data.data_dir(args.data_dir), keep_shards=args.keep_shards, engine=args.engine,
                    address=args.address, cpus_per_task=1 if args.cpus_per_task is None else args.cpus_per_task)
    out = {"build": space.name, "archs": summary.archs, "shards": summary.shards,
           "complete_shards": summary.done_shards, "profiled": summary.profiled,
           "stopped_by_deadline": summary.stopped, "seconds": round(summary.seconds, 1),
           "merged_rows": summary.merged, "db": str(args.db), "engine": args.engine}
    if summary.failures:  # archs whose Ray task raised: the others are stored; the same build again retries these
        out["failures"] = summary.failures
    print(json.dumps(out))
    return 1 if summary.failures else 0


def _cmd_supernets(args: argparse.Namespace) -> int:
    from nasbench.cli._common import space_name
    from nasbench.store.queries import supernet_summary

    if args.db is None:
        raise NasBenchError("--db", "is required without SPACE (with SPACE: results/<space name>.duckdb)", None,
                            show_got=False)
    space = None if args.space is None else space_name(args.space)
    if args.set_main is not None:
        from nasbench.store import Store

        frame = supernet_summary(args.db, space)
        frame = frame[frame["kind"] == "supernet"]
        spaces = sorted(set(frame.loc[frame["id"] == args.set_main, "space"]))
        if not spaces:
            raise NasBenchError("--set-main", f"must be a supernet (not a baseline) with perplexity or accuracy rows "
                                              f"in {args.db} (one of {', '.join(frame['id'])})", args.set_main)
        with Store(args.db) as store:
            for space in spaces:
                store.set_main_supernet(space, args.set_main)
    frame = supernet_summary(args.db, space)
    if frame.empty:
        print("(no supernets with perplexity or accuracy rows)")
        return 0
    frame["main"] = frame["main"].map({True: "*", False: ""})
    print(frame.to_string(index=False, na_rep="-"))
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    from nasbench.store import SCHEMA_VERSION, Store, connect_read_only

    con = connect_read_only(args.db)
    try:
        before = int(con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
    finally:
        con.close()
    with Store(args.db):  # opening for writing migrates
        pass
    from nasbench.store.migrate import compact

    size_before, size = compact(args.db)
    print(json.dumps({"migrate": str(args.db), "schema_before": before, "schema": SCHEMA_VERSION,
                      "bytes_before": size_before, "bytes": size}))
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from nasbench.store import Store

    with Store(args.out) as store:
        added = store.merge(args.inputs)
    print(json.dumps({"merge": str(args.out), "new_rows": added}))
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from nasbench.store.publish import publish

    print(json.dumps(publish(args.db, args.out)))
    return 0


def _cmd_tasks(args: argparse.Namespace) -> int:
    from nasbench import data
    from nasbench.profile.accuracy import TASKS, write_tasks

    out = write_tasks(data.data_dir(args.data_dir), args.out)
    print(f"wrote {len(TASKS)} task files to {out}: lm_eval --include_path {out} --tasks {','.join(TASKS)}")
    return 0



def _cmd_sql(args: argparse.Namespace) -> int:
    from nasbench.store.queries import read_only_query

    frame = read_only_query(args.db, args.query)
    if args.format == "csv":
        sys.stdout.write(frame.to_csv(index=False))
    elif args.format == "json":
        text = frame.to_json(orient="records", lines=True, date_format="iso") if len(frame) else ""
        sys.stdout.write(text if not text or text.endswith("\n") else text + "\n")
    else:
        print(frame.to_string(index=False) if len(frame) else "(no rows)")
    return 0


def add_verbs(verbs: Any) -> None:
    from nasbench.paths import DEFAULT_DB

    p = verbs.add_parser("profile", help="measure sub-networks into DuckDB (resumable, shardable)")
    p.add_argument("space", metavar="SPACE")
    add_supernet_flag(p, "default: the pretrained base model")
    p.add_argument("--n", type=int, default=10, help="seeded random archs (smallest and largest are always added)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid-params", type=int, metavar="K", help="also N archs over K parameter bins")
    p.add_argument("--archs", metavar="FILE", help="also these archs: JSONL of arch objects or `space sample` lines")
    _protocol_flags(p)
    p.add_argument("--db", default=DEFAULT_DB, help=f"DuckDB file (default {DEFAULT_DB})")
    p.add_argument("--shard", default="0/1", metavar="i/n", help="profile every n-th arch starting at i")
    p.add_argument("--minutes", type=float, help="start no arch after this many minutes (resume later)")
    p.add_argument("--latency-visits", type=int, default=1, metavar="R",
                   help="time latency_rel (alone) in R visits spread over the run: the archs visited R times in "
                        "turn, a fresh copy each time, every pair pooled; the machine's state over the run averages "
                        "out instead of deciding an arch's value (default 1)")
    _remeasure_flag(p)
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    _engine_flags(p)
    p.set_defaults(func=_cmd_profile)
    p = verbs.add_parser("cost", help="GPU-hours of supernet training and profiling, from the space's FLOPs")
    p.add_argument("space", metavar="SPACE")
    p.add_argument("--tokens", default="30M,300M", help="training token budgets (default 30M,300M)")
    p.add_argument("--total", default="2000", help="archs to profile, as build's --total (default 2000)")
    p.add_argument("--gpus", default="1,8,64", help="GPU counts for the wall-clock columns (default 1,8,64)")
    p.add_argument("--gpu", default="h100", help="h100 (default), h200, a100 or l40s: peak and bandwidth")
    p.add_argument("--peak-tflops", type=float, help="dense BF16 peak of one GPU (default: the --gpu's)")
    p.add_argument("--hbm-tbps", type=float, help="memory bandwidth of one GPU in TB/s (default: the --gpu's)")
    p.add_argument("--train-mfu", type=float, default=0.4, help="training utilisation (default 0.4)")
    p.add_argument("--profile-mfu", type=float, default=0.2, help="profiling forwards' utilisation (default 0.2)")
    p.add_argument("--overhead-s", type=float, default=5.0, help="seconds per profiled arch besides FLOPs")
    p.add_argument("--train-seq-len", type=int, default=512)
    p.add_argument("--peft", default="lora", choices=("lora", "full"))
    p.add_argument("--kd-teacher", default="base", choices=("base", "largest"))
    _protocol_flags(p)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=_cmd_cost)
    p = verbs.add_parser("build", help="build a benchmark in committed shards (resumable), then merge them")
    p.add_argument("space", metavar="SPACE")
    add_supernet_flag(p, "default: the base model")
    p.add_argument("--db", required=True, help="the benchmark DB the shards merge into")
    p.add_argument("--shards", default="results/shards", metavar="DIR", help="shard DBs (default results/shards)")
    p.add_argument("--total", type=int, default=2000, help="archs in the plan (default 2000)")
    p.add_argument("--per-shard", type=int, default=250, help="archs per shard (default 250)")
    p.add_argument("--grid", type=int, default=500, help="archs of the plan spread over parameter bins (default 500)")
    p.add_argument("--grid-bins", type=int, default=10)
    p.add_argument("--bands", metavar="FILES", help="comma list of band JSONL files, profiled first")
    p.add_argument("--archs", metavar="FILES", help="comma list of arch JSONL files (arch objects, `space sample` or "
                                                    "`pareto --format json` lines), profiled after the bands")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--minutes", type=float, help="start no arch after this many minutes (resume later)")
    p.add_argument("--keep-shards", action="store_true",
                   help="keep the shard files the DB holds completely (default: deleted after the merge)")
    _protocol_flags(p)
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    _engine_flags(p)
    p.set_defaults(func=_cmd_build)

    p = verbs.add_parser("tasks", help="write the local lm-eval task YAMLs (for lm_eval --include_path)")
    p.add_argument("out", metavar="DIR")
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.set_defaults(func=_cmd_tasks)
    p = verbs.add_parser("supernets", help="the supernets a benchmark DB measured, its main one marked *; "
                                           "--set-main records the main one (the default of query, pareto, compare, "
                                           "export, publish and the Python API)")
    p.add_argument("space", metavar="SPACE", nargs="?", help="only this space (a file or a name)")
    p.add_argument("--db", help="DuckDB file (default results/<space name>.duckdb)")
    p.add_argument("--set-main", metavar="ID", help="record this supernet as its space's main supernet")
    p.set_defaults(func=_cmd_supernets)
    p = verbs.add_parser("migrate", help="bring a benchmark DB to the current schema (what opening it for writing "
                                         "does: weight-free rows under supernet_id '', baseline archs apart) and "
                                         "rewrite the file compactly")
    p.add_argument("db", metavar="DB")
    p.set_defaults(func=_cmd_migrate)
    p = verbs.add_parser("merge", help="merge shard DBs into one, without duplicates (older schemas take the "
                                       "current layout)")
    p.add_argument("out", metavar="OUT")
    p.add_argument("inputs", nargs="+", metavar="IN")
    p.set_defaults(func=_cmd_merge)
    p = verbs.add_parser("publish", help="Parquet tables + Croissant-style card + Syne Tune blackboxes of a DB")
    p.add_argument("db", metavar="DB")
    p.add_argument("--out", required=True, metavar="DIR", help="new, empty, or an earlier publication (replaced)")
    p.set_defaults(func=_cmd_publish)


def add_sql_verb(verbs: Any) -> None:
    from nasbench.paths import DEFAULT_DB

    p = verbs.add_parser("sql", help="run a read-only SQL query on a benchmark DB")
    p.add_argument("query", metavar="QUERY")
    p.add_argument("--db", default=DEFAULT_DB, help=f"DuckDB file (default {DEFAULT_DB})")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=_cmd_sql)
