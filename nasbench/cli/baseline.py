"""The ``baseline`` verb: prune the space's model with one of the seed's baseline methods and store its rows."""

from __future__ import annotations

import argparse
import json
from typing import Any

from nasbench.cli._common import DATA_DIR_HELP, add_supernet_flag, csv_list


def _cmd_baseline(args: argparse.Namespace) -> int:
    from nasbench import data
    from nasbench.baselines import BaselineConfig, run_baseline
    from nasbench.space import load_space

    space = load_space(args.space)
    config = BaselineConfig(
        method=args.method, slicing=args.slicing, calibration_tokens=args.calibration_tokens,
        calibration_seq_len=args.calibration_seq_len, metrics=tuple(csv_list(args.metrics)),
        tasks=tuple(csv_list(args.tasks)), limit_items=args.limit_items, ppl_tokens=args.ppl_tokens,
        seq_len=args.seq_len, latency_batch=args.latency_batch, latency_seq_len=args.latency_seq_len,
        latency_repeats=args.latency_repeats, device=args.device, dtype=args.dtype, batch_size=args.batch_size)
    summary = run_baseline(space, args.db, config, supernet_dir=args.supernet, data_dir=data.data_dir(args.data_dir))
    print(json.dumps({"baseline": config.method_id, "space": space.name, "supernet_id": summary.supernet_id,
                      "arch_id": summary.arch_id, "params": summary.params, "new_rows": summary.rows,
                      "values": summary.values, "seconds": round(summary.seconds, 1), "db": str(args.db)}))
    return 0


def add_verbs(verbs: Any) -> None:
    from nasbench.baselines.runner import METHODS
    from nasbench.paths import DEFAULT_DB

    p = verbs.add_parser("baseline", help="prune the space's model with a baseline method (2:4, SliceGPT) and store "
                                          "its rows (resumable)")
    p.add_argument("space", metavar="SPACE")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--slicing", type=float, default=0.2, help="slicegpt: fraction of the hidden size deleted "
                                                               "(default 0.2)")
    add_supernet_flag(p, "the weights to prune; default: the base model")
    p.add_argument("--calibration-tokens", type=int, default=16384, metavar="N",
                   help="tokens of the space's calibration data (default 16384)")
    p.add_argument("--calibration-seq-len", type=int, default=512, metavar="L")
    p.add_argument("--metrics", default="ppl,acc,latency,memory", help="comma list of ppl,acc,latency,memory")
    p.add_argument("--tasks", default="arc_easy,piqa,winogrande", help="comma list of lm-eval tasks for acc")
    p.add_argument("--limit-items", type=int, metavar="M", help="first M items of each task (lm-eval's --limit)")
    p.add_argument("--ppl-tokens", type=int, default=4096, metavar="T", help="WikiText-2 test tokens (default 4096)")
    p.add_argument("--seq-len", type=int, default=512, metavar="L", help="perplexity window (default 512)")
    p.add_argument("--latency-batch", type=int, default=1)
    p.add_argument("--latency-seq-len", type=int, default=128)
    p.add_argument("--latency-repeats", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=4, help="windows per forward (calibration, perplexity)")
    p.add_argument("--device", default="cpu", metavar="D")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    p.add_argument("--db", default=DEFAULT_DB, help=f"DuckDB file (default {DEFAULT_DB})")
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.set_defaults(func=_cmd_baseline)
