"""The benchmark-side verbs: ``fit``, ``query``, ``compare``, ``pareto``, ``bench query`` and ``bench compare``."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

from nasbench.cli._common import (SPACE_HELP, add_space_positional, add_supernet_flag, csv_list, defaults_of, number,
                                  parse_arch, read_arch_lines, stored)
from nasbench.errors import NasBenchError
from nasbench.metrics import HP_PREFIX, METRIC_PREFIX, hp_column, hp_name, metric_column, metric_name

__all__ = ["add_verbs", "add_bench_verbs"]

SHIPPED_DB = "results/smollm2-135m.duckdb"


def _open(args: argparse.Namespace) -> Any:
    from nasbench.surrogate import Benchmark

    cache = None if args.no_cache else args.cache
    models = csv_list(args.models) if args.models else None
    kwargs = {"models": models} if models else {}
    return Benchmark.open(args.db, args.space, stored(args.supernet), device=args.device, cache=cache, **kwargs)


# ------------------------------------------------------------------------------------------------------------ fit
def _cmd_fit(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from nasbench.store import Store
    from nasbench.surrogate import print_cards

    bm = _open(args)
    cards = bm.fit(csv_list(args.metrics))
    if not args.no_store:
        with Store(args.db) as store:
            stored = store.card_hashes(bm.space.name, bm.supernet_id)
            fresh = [c for c in cards if stored.get(c.metric) != c.data_hash]
            if fresh:  # an unchanged card is not rewritten: the DB file stays byte-identical
                store.add_cards(fresh)
    if args.format == "json":
        for card in cards:
            print(json.dumps(asdict(card), sort_keys=True))
    else:
        print_cards(cards)
    return 0


# ---------------------------------------------------------------------------------------------------------- query
def _read_archs(args: argparse.Namespace) -> list[dict[str, Any]]:
    if (args.arch is None) == (args.file is None):
        raise NasBenchError("--arch/--file", "give exactly one of them", None, show_got=False)
    if args.arch is not None:
        return [parse_arch(args.arch)]
    archs = read_arch_lines(args.file, "--file")
    if not archs:
        raise NasBenchError("--file", "holds no archs (one JSON object per line)", args.file)
    return archs


def _cmd_query(args: argparse.Namespace) -> int:
    archs = _read_archs(args)
    bm = _open(args)
    frame = bm.query(archs, csv_list(args.metrics), mode=args.mode, noise=args.noise, seed=args.seed,
                     interval=args.interval)
    for row in frame.to_dict("records"):
        arch = {hp_name(k): int(v) for k, v in row.items() if k.startswith(HP_PREFIX)}
        metrics = {metric_name(k): number(v) for k, v in row.items() if k.startswith(METRIC_PREFIX)}
        print(json.dumps({"arch_id": row["arch_id"], "arch": arch, "supernet_id": bm.supernet_id, **metrics,
                          "source": str(row["source"])}))
    return 0


def runs_db_of(db: str, space: str, runs_db: str | None) -> str:
    """``--runs-db``: default ``<space>-runs.duckdb`` beside the benchmark DB; never the benchmark DB itself."""
    from pathlib import Path

    from nasbench.store import connect_read_only

    default = Path(db).parent / f"{space}-runs.duckdb"
    target = Path(runs_db) if runs_db else default
    measured = 0
    if target.is_file():  # the benchmark DB itself, or any DB of measurements
        con = connect_read_only(target)
        try:
            measured = con.execute("SELECT count(*) FROM measurements").fetchone()[0]
        finally:
            con.close()
    if measured or (target.exists() and Path(db).exists() and target.resolve() == Path(db).resolve()):
        raise NasBenchError("--runs-db", f"must not be the benchmark DB or another DB of measurements (runs go to a "
                                         f"DB of their own; default {default})", str(target))
    return str(target)


# -------------------------------------------------------------------------------------------------------- compare
def _cmd_compare(args: argparse.Namespace) -> int:
    from nasbench.optimize import CompareSettings, compare, write_report

    objectives, methods = csv_list(args.objectives) or [], csv_list(args.methods) or []
    bm = _open(args)  # counts were checked >= 1 with every other flag (nasbench.cli._check_flags)
    blackbox = bm.blackbox(objectives, mode=args.mode, noise=args.noise)
    settings = CompareSettings(space=bm.space.name, objectives=tuple(objectives), methods=tuple(methods),
                               seeds=tuple(range(args.seeds)), max_evals=args.max_evals,
                               max_sim_time_s=args.max_sim_time, workers=args.workers, mode=args.mode,
                               supernet_id=bm.supernet_id, method_max_evals=(("ehvi", args.ehvi_max_evals),),
                               noise=args.noise)
    runs_db = runs_db_of(args.db, bm.space.name, args.runs_db)
    print(f"runs -> {runs_db}", file=sys.stderr)
    runs = compare(blackbox, settings, runs_db, true_table=blackbox.table, arch_id_of=blackbox.arch_id_of,
                   processes=args.processes)
    column = "hv_norm" if args.mode == "table" else "hv"
    summary = runs.groupby("method").agg(runs=("seed", "count"), evals=("n_evals", "mean"),
                                         hv=(column, "mean"), hv_sd=(column, "std"),
                                         front_share=("front_share", "mean"), sim_time_s=("sim_time_s", "mean"))
    print(f"{bm.space.name} / {bm.supernet_id}, {args.mode} mode, objectives {', '.join(objectives)}"
          f"{' (noisy readings)' if args.noise else ''}: final {column} (mean, sd over seeds)")
    print(summary.reindex([m for m in methods if m in summary.index]).to_string(float_format=lambda v: f"{v:.4g}"))
    if args.report:
        written = write_report(runs_db, bm.space.name, objectives, args.report, mode=args.mode,
                               supernet_id=bm.supernet_id, run_ids=list(runs["run_id"]))
        print("report: " + ", ".join(str(p) for p in written))
    return 0


# --------------------------------------------------------------------------------------------------------- pareto
def _cmd_pareto(args: argparse.Namespace) -> int:
    from nasbench.pareto import measured_front, plot_front
    from nasbench.space import DIMENSIONS

    result = measured_front(args.db, args.space, csv_list(args.objectives) or [], where=args.where,
                            supernet_id=stored(args.supernet), device=args.device)
    supernet = result.supernet_id
    columns = ["arch_id", *map(metric_column, result.objectives), *map(hp_column, DIMENSIONS), "knee"]
    front = result.front[columns]

    def plain(value: Any) -> Any:  # a per-layer dimension holds a list (a numpy array in the frame)
        return [number(v) for v in value] if isinstance(value, (list, tuple)) or getattr(value, "ndim", 0) else \
            number(value)

    if args.format == "csv":
        sys.stdout.write(front.to_csv(index=False))
    elif args.format == "json":
        # each line also carries its `arch` object: the file is then an `--archs` file of profile and build
        for row in front.to_dict("records"):
            record = {k: (plain(v) if k.startswith((METRIC_PREFIX, HP_PREFIX)) else v) for k, v in row.items()}
            print(json.dumps({**record, "arch": {d: record[hp_column(d)] for d in DIMENSIONS}}))
    else:
        print(f"{len(front)} Pareto-optimal of {len(result.rows)} measured archs ({', '.join(result.objectives)}; "
              f"{'min' if result.minimize[0] else 'max'}/{'min' if result.minimize[1] else 'max'})")
        print(front.to_string(index=False, float_format=lambda v: f"{v:.5g}"))
        knee = result.front[result.front["knee"]].iloc[0]
        arch = {d: plain(knee[hp_column(d)]) for d in DIMENSIONS}
        # a line that runs as printed: the space as given, the supernet the rows were measured on, the DB for the card
        print(f"knee: {result.knee_arch_id} -> nasbench export {shlex.quote(str(args.space))} --supernet "
              f"{shlex.quote(supernet)} --db {shlex.quote(str(args.db))} --arch {shlex.quote(json.dumps(arch))} "
              f"--out export-{result.knee_arch_id}")
    if args.plot:
        print(f"plot: {plot_front(result, args.plot)}", file=sys.stderr if args.format != "table" else sys.stdout)
    return 0


# ---------------------------------------------------------------------------------------------------------- bench
def _cmd_bench_compare(args: argparse.Namespace) -> int:
    from nasbench.optimize import bench_compare

    result = bench_compare(args.db, args.space, objectives=tuple(csv_list(args.objectives) or []), mode=args.mode,
                           seeds=args.seeds, max_evals=args.max_evals, ehvi_max_evals=args.ehvi_max_evals,
                           processes=args.processes, supernet_id=stored(args.supernet), out_db=args.runs_db)
    print(json.dumps(result))
    return 0


def _cmd_bench_query(args: argparse.Namespace) -> int:
    from nasbench.bench import bench_query

    result = bench_query(args.db, args.space, stored(args.supernet), csv_list(args.metrics), n_batch=args.n_batch,
                         n_single=args.n_single, cache=None if args.no_cache else args.cache,
                         models=csv_list(args.models))
    print(json.dumps(result))
    return 0


# --------------------------------------------------------------------------------------------------------- parsers
def _benchmark_args(p: argparse.ArgumentParser, db_default: str | None, space_flag: bool) -> None:
    from nasbench.surrogate import CANDIDATES, DEFAULT_CACHE

    if space_flag:
        add_space_positional(p, None if db_default is None else "smollm2-135m")
    p.add_argument("--db", default=db_default,
                   help=f"benchmark DuckDB file (default {db_default or 'results/<space name>.duckdb'})")
    add_supernet_flag(p, "default: the DB's main supernet of the space, `nasbench supernets`")
    p.add_argument("--device", help="use only measurements taken on this device (e.g. cpu)")
    p.add_argument("--cache", default=DEFAULT_CACHE, help=f"surrogate cache directory (default {DEFAULT_CACHE}/)")
    p.add_argument("--no-cache", action="store_true", help="fit in memory; read and write no cache files")
    p.add_argument("--models", help=f"surrogate candidates cross-validation chooses from (default all: "
                                    f"{','.join(CANDIDATES)})")


def add_verbs(verbs: Any) -> None:
    from nasbench.optimize.truth import CompareSettings
    from nasbench.surrogate import MODES

    p = verbs.add_parser("fit", help="fit cached surrogates (model chosen by cross-validation) and print their "
                                     "fidelity cards")
    _benchmark_args(p, None, space_flag=True)
    p.add_argument("--metrics", help="comma list (default: the space's objectives), e.g. ppl,latency_ms,acc_avg")
    p.add_argument("--no-store", action="store_true", help="do not write the cards into the DB's surrogate_cards")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=_cmd_fit)

    p = verbs.add_parser("query", help="metrics of archs: measured where profiled, predicted elsewhere (JSON lines)")
    p.add_argument("space", metavar="SPACE", help=SPACE_HELP)
    p.add_argument("--arch", help="one arch as JSON (or a `space sample` line, or @file)")
    p.add_argument("--file", help="JSONL file of archs (or of `space sample` lines)")
    p.add_argument("--metrics", help="comma list (default: the space's objectives)")
    p.add_argument("--mode", choices=MODES, default="auto",
                   help="auto: measured else predicted; table: measured only; surrogate: predicted only")
    p.add_argument("--noise", action="store_true",
                   help="draw readings instead of medians: each latency from its value and spread (the <metric>_spread "
                        "printed beside it), other predictions from the predictive distribution")
    p.add_argument("--seed", type=int, default=0, help="seed of --noise")
    p.add_argument("--interval", action="store_true",
                   help="also <metric>_lower and <metric>_upper: the surrogate's calibrated 90%% interval where a "
                        "value is predicted (a measured value is its own bounds)")
    _benchmark_args(p, None, space_flag=False)
    p.set_defaults(func=_cmd_query)

    from nasbench.optimize.methods import METHODS

    p = verbs.add_parser("compare", help="multi-objective optimizers in Syne Tune's simulator on the benchmark")
    p.add_argument("space", metavar="SPACE", help=SPACE_HELP)
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {','.join(METHODS)}")
    _compare_args(p)
    p.add_argument("--max-sim-time", type=float, help="simulated seconds per run")
    p.add_argument("--workers", type=int, default=CompareSettings.workers, help="simulated parallel workers")
    p.add_argument("--runs-db", help="DuckDB file for the runs and run_traces tables (default <space>-runs.duckdb "
                                     "beside --db; never the benchmark DB)")
    p.add_argument("--report", metavar="DIR", help="write HV curves, final fronts and the HV table here")
    p.add_argument("--noise", action="store_true",
                   help="the searchers see noisy readings: every evaluation draws its latencies from their stored "
                        "spread (seeded by the run's seed and the evaluation number); the traces still score each "
                        "evaluated arch by its noise-free values")
    _benchmark_args(p, None, space_flag=False)
    p.set_defaults(func=_cmd_compare)

    p = verbs.add_parser("pareto", help="the Pareto front and knee of measured archs (never the surrogate)")
    add_space_positional(p)
    p.add_argument("--db", help="benchmark DuckDB file (default results/<space name>.duckdb)")
    add_supernet_flag(p, "default: the DB's main supernet of the space, `nasbench supernets`")
    p.add_argument("--device", help="use only measurements taken on this device")
    p.add_argument("--objectives", default="ppl,latency_ms", help="comma list (default ppl,latency_ms)")
    p.add_argument("--where", help='SQL condition over the measured columns, e.g. "metric_latency_ms < 200"')
    p.add_argument("--plot", metavar="OUT.png", help="draw all rows, the front and the knee")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table",
                   help="json: one line per front arch with its `arch` object (an --archs file of profile and build)")
    p.set_defaults(func=_cmd_pareto)


def _compare_args(p: argparse.ArgumentParser) -> None:
    from nasbench.optimize.compare import bench_compare
    from nasbench.optimize.truth import CompareSettings as C  # the defaults are the settings' own

    b = defaults_of(bench_compare)  # ... and, for what the settings leave open, the timed comparison's
    objectives = ",".join(b["objectives"])
    p.add_argument("--objectives", default=objectives, help=f"2 or 3 metrics (default {objectives})")
    p.add_argument("--mode", choices=("table", "surrogate"), default=C.mode,
                   help="table: profiled archs only; surrogate: the whole space")
    p.add_argument("--seeds", type=int, default=len(C.seeds))
    p.add_argument("--max-evals", type=int, default=C.max_evals,
                   help="evaluations per run (a table of N archs allows N)")
    p.add_argument("--ehvi-max-evals", type=int, default=b["ehvi_max_evals"],
                   help="EHVI's cap (its GP refits make 1,000 evaluations take minutes per run)")
    p.add_argument("--processes", type=int, default=b["processes"], help="runs in parallel processes")


def add_bench_verbs(bench_verbs: Any) -> None:
    from nasbench.optimize.methods import METHODS

    p = bench_verbs.add_parser("compare", help=f"the full optimizer comparison ({len(METHODS)} methods x seeds x "
                                               f"evals), timed")
    _benchmark_args(p, SHIPPED_DB, space_flag=True)
    _compare_args(p)
    p.add_argument("--runs-db", help="keep the runs in this DuckDB file (default: a temporary one)")
    p.set_defaults(func=_cmd_bench_compare, mode="surrogate")

    p = bench_verbs.add_parser("query", help="batched and single queries vs Syne Tune's add_surrogate")
    _benchmark_args(p, SHIPPED_DB, space_flag=True)
    p.add_argument("--metrics", help="comma list (default: the space's objectives, params excluded)")
    p.add_argument("--n-batch", type=int, default=100_000)
    p.add_argument("--n-single", type=int, default=200)
    p.set_defaults(func=_cmd_bench_query)

