"""``nasbench bench ...``: the measurements that end with one JSON line of figures (the RPD study too: its table,
then its line)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from nasbench.cli._common import DATA_DIR_HELP, Parser, add_supernet_flag, csv_list, given, positive, read_arch_lines
from nasbench.errors import NasBenchError, check_each


def _cmd_bench(args: argparse.Namespace) -> int:
    from nasbench import bench
    from nasbench.space import load_space

    space = load_space(args.space)
    if args.what == "slicing":
        result = bench.bench_slicing(space, **given(args, "n", "seed", "seq_len", "batch"))
    elif args.what == "importance":
        from nasbench import data

        result = bench.bench_importance(space, data_dir=data.data_dir(args.data_dir),
                                        **given(args, "tokens", "seq_len"))
    elif args.what == "accuracy":
        from nasbench import data
        from nasbench.profile.accuracy import TASKS

        archs = read_arch_lines(args.archs)
        tasks = tuple(csv_list(args.tasks))
        check_each("--tasks", tasks, TASKS)
        if args.items is not None and args.items < 1:
            raise NasBenchError("--items", "must be >= 1", args.items)
        result = bench.bench_accuracy(space, arch=archs[0] if archs else None, supernet=args.supernet,
                                      data_dir=data.data_dir(args.data_dir), tasks=tasks, **given(args, "items"))
    elif args.what == "train":
        result = bench.bench_train(space, dense=not args.no_dense,
                                   **given(args, "batch_size", "seq_len", "precision", "peft", "kd", "repeats"))
    else:
        from nasbench import data

        result = bench.bench_profile(space, data_dir=data.data_dir(args.data_dir),
                                     **given(args, "ppl_tokens", "seq_len"))
    print(json.dumps(result))
    return 0


def add_verbs(verbs: Any) -> Any:
    """The ``bench`` verb and its model-side measurements; returns its sub-verbs for the benchmark-side ones. A flag
    left out takes the measuring function's own default (one source; the parser imports none of them)."""
    # the names and defaults without torch (the measuring code loads when the verb runs)
    from nasbench.importance import LAYER_SCHEMES, SCHEMES, STUDY_TOKENS
    from nasbench.train.config import KD_LOSSES, PEFT_MODES, PRECISIONS

    bench = verbs.add_parser("bench", help="measurements that end with one JSON line of figures")
    bench_verbs = bench.add_subparsers(dest="what", required=True, parser_class=Parser)

    def measure(name: str, help: str, *ints: str, data_dir: bool = False) -> argparse.ArgumentParser:
        # every model-side measurement takes SPACE and its int knobs, and runs through _cmd_bench
        p = bench_verbs.add_parser(name, help=help)
        p.add_argument("space", metavar="SPACE")
        for flag in ints:
            p.add_argument(flag, type=int, help="random archs" if flag == "--n" else None)
        if data_dir:
            p.add_argument("--data-dir", help=DATA_DIR_HELP)
        p.set_defaults(func=_cmd_bench)
        return p

    measure("slicing", "sliced supernet vs extracted dense model forward time", "--n", "--seed", "--seq-len",
            "--batch")
    measure("importance", "importance scoring pass vs a plain forward over the same tokens", "--tokens", "--seq-len",
            data_dir=True)
    p = measure("train", "tokens/s of a recovery sandwich step and its share of the measured matmul rate; vs the "
                         "dense steps of the same sub-networks", "--batch-size", "--seq-len")
    p.add_argument("--precision", choices=PRECISIONS)
    p.add_argument("--peft", choices=PEFT_MODES)
    p.add_argument("--kd", choices=KD_LOSSES,
                   help="distillation from the frozen full model (none: LM loss, no teacher)")
    p.add_argument("--repeats", type=int)
    p.add_argument("--no-dense", action="store_true", help="skip the dense comparison (the ratio)")
    measure("profile", "perplexity throughput vs the matmul rate; latency CV", "--ppl-tokens", "--seq-len",
            data_dir=True)
    p = measure("accuracy", "seconds of one arch's accuracy pass: simple_evaluate with lm-eval's HFLM per task vs "
                            "`profile --metrics acc` (packed scoring)", "--items", data_dir=True)
    p.add_argument("--tasks", help="comma list (default: the space's evaluation tasks)")
    p.add_argument("--archs", metavar="FILE", help="its first arch (a `space sample` line); default the largest")
    add_supernet_flag(p, "default: the base model")
    p = bench_verbs.add_parser("latency-model", help="op-level latency model: time the space's operator shapes on this "
                                                     "device and store the table in the DB (--validate: score it "
                                                     "against the DB's measured latencies)")
    p.add_argument("space", metavar="SPACE")
    p.add_argument("--db", required=True, help="the benchmark DB the table is stored in (and its measured "
                                               "latencies read from)")
    p.add_argument("--rounds", type=int, help="shuffled rounds over every op shape (the median per shape is kept)")
    p.add_argument("--device", help="cpu or cuda:N (default cpu)")
    p.add_argument("--dtype", help="auto, bfloat16, float16 or float32 (default: auto as `profile`; with "
                                   "--validate: the stored table's)")
    p.add_argument("--refit", action="store_true", help="time nothing: fit the stored table's factors and overheads "
                                                         "again on the DB's measured latencies")
    p.add_argument("--validate", action="store_true", help="fit the overhead on half of the measured archs and "
                                                            "print Kendall tau, the share within +-10%% and the "
                                                            "median error on the other half")
    p.add_argument("--splits", type=int, help="with --validate: also score this many seeded halves and print their "
                                               "taus, mean and minimum (default 1)")
    p.add_argument("--metric", help="measured latency the overhead is fitted on: latency_ms (default, "
                                    "drift-cancelled), latency_wall_ms (wall clock) or latency_rel; with --validate "
                                    "also decode_ms_per_token (drift-cancelled), decode_wall_ms_per_token or "
                                    "decode_rel")
    p.set_defaults(func=_cmd_latency_model)
    p = bench_verbs.add_parser("retest", help="agreement of two measurements of the same archs (test-retest): the "
                                              "Kendall tau no surrogate can beat on such data")
    p.add_argument("db", metavar="DB")
    p.add_argument("other", metavar="OTHER_DB", help="the same archs measured again (same protocol)")
    p.add_argument("--space", required=True, help="space name")
    p.add_argument("--metrics", required=True, help="comma list, e.g. latency_wall_ms,latency_rel")
    p.set_defaults(func=_cmd_retest)
    p = bench_verbs.add_parser("rpd", help="the RPD study: perplexity of prefix sub-networks before and after "
                                           "importance sorting, per scheme (what `nasbench importance` buys)")
    p.add_argument("spaces", nargs="+", metavar="SPACE", help="spaces sharing one base model")
    p.add_argument("--n", type=int, default=200, help="archs per space (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokens", type=int, default=STUDY_TOKENS,
                   help=f"calibration token budget (default {STUDY_TOKENS})")
    p.add_argument("--ppl-tokens", type=int, default=1024,
                   help="WikiText-2 test tokens per perplexity (default 1024)")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--schemes", nargs="+", choices=SCHEMES, default=list(SCHEMES))
    p.add_argument("--layers", nargs="+", choices=LAYER_SCHEMES, default=list(LAYER_SCHEMES))
    p.add_argument("--db", help="store per-arch perplexities in this DuckDB file")
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.set_defaults(func=_cmd_rpd)
    return bench_verbs


def _cmd_latency_model(args: argparse.Namespace) -> int:
    from nasbench import bench
    from nasbench.space import load_space

    space = load_space(args.space)
    if args.validate and args.refit:
        raise NasBenchError("--refit", "stores a fit, --validate scores one: give one of them", "--refit --validate")
    if args.splits is not None and not args.validate:
        raise NasBenchError("--splits", "scores held-out halves: it needs --validate", args.splits)
    if args.rounds is not None and (args.validate or args.refit):
        flag = "--validate" if args.validate else "--refit"
        raise NasBenchError("--rounds", f"times a new table: leave it out with {flag}", args.rounds)
    if args.validate:
        result = bench.validate_latency_model(space, args.db, **given(args, "metric", "device", "dtype", "splits"))
    else:
        result = bench.bench_latency_model(space, args.db, refit=args.refit,
                                           **given(args, "rounds", "device", "dtype", "metric"))
    print(json.dumps(result))
    return 0


def _reference_speed_r(pairs: list[tuple[str, float, float]], refs: list[tuple[str, float, float]]) -> float | None:
    """Pearson r, over the archs both passes timed against the full model, of an arch's change between the passes
    (log a/b) and the full model's own change beside it (log of the two ``reference_ms``): alternating pairs cancel
    a drift that slows an arch and the full model alike, not one that slows them by different factors, and this
    says how much of the passes' disagreement follows the machine's speed. None without such rows or where the
    reference's time did not vary."""
    import numpy as np

    ref = {arch: (a, b) for arch, a, b in refs}
    if len(ref) != len(refs) or len({arch for arch, _, _ in pairs}) != len(pairs):
        return None  # an arch under two keys: which reference belongs to which value is ambiguous
    both = [(a, b, *ref[arch]) for arch, a, b in pairs if arch in ref and min(a, b, *ref[arch]) > 0]
    if len(both) < 3:
        return None
    x = np.log([a / b for a, b, _, _ in both])
    y = np.log([ra / rb for _, _, ra, rb in both])
    if np.std(x) == 0 or np.std(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def _cmd_rpd(args: argparse.Namespace) -> int:
    from nasbench import data
    from nasbench.importance import run_rpd
    from nasbench.space import load_space

    spaces = [load_space(p) for p in args.spaces]
    positive("--n", args.n)
    positive("--tokens", args.tokens)
    result = run_rpd(spaces, n=args.n, seed=args.seed, tokens=args.tokens, ppl_tokens=args.ppl_tokens,
                     seq_len=args.seq_len, schemes=args.schemes, layer_schemes=args.layers,
                     data_dir=data.data_dir(args.data_dir), db=args.db)
    print(result.table())
    print(json.dumps({"bench": "rpd", "rpd": result.rpd, "n": args.n, "tokens": args.tokens,
                      "ppl_tokens": args.ppl_tokens, "seconds": round(result.seconds, 1)}))
    return 0


def _cmd_retest(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from nasbench.stats import agreement
    from nasbench.store import paired_values

    for flag, path in (("DB", args.db), ("OTHER_DB", args.other)):
        if not Path(path).is_file():
            raise NasBenchError(flag, "must name an existing DuckDB file", path)
    out: dict[str, Any] = {"bench": "retest", "space": args.space}
    for metric in csv_list(args.metrics):
        pairs = paired_values(args.db, args.other, args.space, metric)
        if len(pairs) < 3:
            raise NasBenchError("--metrics", f"needs >= 3 archs measured in both DBs under the same key "
                                             f"({metric})", len(pairs))
        out[metric] = agreement([x for _, x, _ in pairs], [y for _, _, y in pairs])
        cv = paired_values(args.db, args.other, args.space, metric, field="cv")
        if cv:  # how quiet each pass was (the CV of a row's pairs' ratios, or of a wall clock's repeats): a busy
            # machine shows in it before it shows in the tau
            out[metric]["cv_median"] = {"db": float(np.median([a for _, a, _ in cv])),
                                             "other": float(np.median([b for _, _, b in cv]))}
        speed = _reference_speed_r(pairs, paired_values(args.db, args.other, args.space, metric,
                                                         field="reference_ms"))
        if speed is not None:
            out[metric]["reference_speed_r"] = speed
    print(json.dumps(out))
    return 0
