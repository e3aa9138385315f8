"""The ``baseline`` verb: build a baseline model (2:4, SliceGPT, one-shot sliced, DSA; the last three optionally
recovered by distillation) and store its full row set (params, ppl, acc, latency, memory), resumably."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nasbench.cli._common import DATA_DIR_HELP, add_supernet_flag, read_arch_lines
from nasbench.errors import NasBenchError

#: Where ``--method sliced*`` finds a target's band by default: ``BANDS/<space>-<percent>.jsonl``.
BANDS = Path("results/bands")


def _cmd_baseline(args: argparse.Namespace) -> int:
    from nasbench import data
    from nasbench.baselines import SLICED, BaselineConfig, run_baseline
    from nasbench.cli.profile import _protocol
    from nasbench.space import load_space

    space = load_space(args.space)
    archs: tuple[dict[str, Any], ...] = ()
    if args.method in SLICED:
        if args.target is None:
            raise NasBenchError("--target", f"{args.method} needs the band's parameter share, e.g. 0.5", None,
                                show_got=False)
        path = args.archs or str(BANDS / f"{space.name}-{args.target * 100:g}.jsonl")
        if not Path(path).is_file():
            raise NasBenchError("--archs", "no such band file (write one with `nasbench space sample SPACE --band "
                                           "SHARE`)", path)
        archs = tuple(read_arch_lines(path))
        if args.n_archs is not None:
            if args.n_archs < 1:
                raise NasBenchError("--n-archs", "must be >= 1", args.n_archs)
            archs = archs[:args.n_archs]
    config = BaselineConfig(method=args.method, protocol=_protocol(args, n=0, endpoints=False,
                                                                   batch_size=args.batch_size,
                                                                   remeasure_before=args.remeasure_before),
                            slicing=args.slicing, target=args.target, archs=archs, tokens=args.tokens or 0,
                            calibration_tokens=args.calibration_tokens, calibration_seq_len=args.calibration_seq_len)
    recover = recover_model = None
    if config.method == "sliced-recovered":
        from nasbench.train import recover_arch as recover
    elif config.tokens:
        from nasbench.train import recover_model
    summary = run_baseline(space, args.db, config, supernet=args.supernet, data_dir=data.data_dir(args.data_dir),
                           work_dir=args.work_dir, recover=recover, recover_model=recover_model)
    print(json.dumps({"baseline": config.method_id, "space": space.name, "supernet_id": summary.supernet_id,
                      "models": summary.models, "built": summary.built, "arch_id": summary.arch_id,
                      "params": summary.params, "new_rows": summary.rows, "values": summary.values,
                      "seconds": round(summary.seconds, 1), "db": str(args.db)}))
    return 0


def add_verbs(verbs: Any) -> None:
    from nasbench.baselines.methods import METHODS, default_protocol
    from nasbench.cli.profile import _protocol_flags, _remeasure_flag
    from nasbench.paths import DEFAULT_DB

    p = verbs.add_parser("baseline", help="build a baseline model (2:4, SliceGPT, one-shot sliced, sliced + recovered, "
                                          "DSA-style layer-wise) and store its rows (resumable)")
    p.add_argument("space", metavar="SPACE")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--slicing", type=float, default=0.2, help="slicegpt: fraction of the hidden size deleted "
                                                               "(default 0.2)")
    p.add_argument("--target", type=float, metavar="SHARE",
                   help="sliced methods (sliced, sliced-recovered, dsa): the band's parameter share (0.5, 0.75); "
                        "names the baseline (sliced-50)")
    p.add_argument("--archs", metavar="FILE", help=f"sliced methods: the archs to cut (default "
                                                   f"{BANDS}/<space>-<percent>.jsonl, the target's band)")
    p.add_argument("--n-archs", type=int, metavar="K", help="sliced methods: only the first K archs of the file")
    p.add_argument("--tokens", type=int, metavar="N", help="training tokens per model (the supernet's recovery "
                                                           "budget, e.g. 286720): required by sliced-recovered; "
                                                           "slicegpt and dsa distil each pruned model with them "
                                                           "(slicegpt-recovered-20, dsa-recovered-50)")
    p.add_argument("--work-dir", metavar="DIR", help="recovered baselines: keep each trained model here until its "
                                                     "rows are stored, so a rerun measures instead of retraining")
    add_supernet_flag(p, "the weights to prune (default: the base model); for the sliced methods the importance "
                         "order to cut (an artifact's, its trained delta not applied), required")
    p.add_argument("--calibration-tokens", type=int, default=16384, metavar="N",
                   help="tokens of the space's calibration data (default 16384)")
    p.add_argument("--calibration-seq-len", type=int, default=512, metavar="L")
    _protocol_flags(p)
    protocol = default_protocol()
    p.set_defaults(metrics=",".join(protocol.metrics), decode_tokens=protocol.decode_tokens)
    p.add_argument("--batch-size", type=int, default=protocol.batch_size,
                   help="windows per forward (calibration, perplexity)")
    _remeasure_flag(p)  # e.g. re-score accuracy with today's scorer, or re-time every model in one pass
    p.add_argument("--db", default=DEFAULT_DB, help=f"DuckDB file (default {DEFAULT_DB})")
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.set_defaults(func=_cmd_baseline)
