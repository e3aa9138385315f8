"""The verbs that make and move supernets: ``importance``, ``export``, ``train``, ``pack``."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from nasbench.cli._common import DATA_DIR_HELP, add_supernet_flag, parse_arch, positive
from nasbench.errors import NasBenchError


def _cmd_importance(args: argparse.Namespace) -> int:
    from nasbench import data
    from nasbench.importance import sort_model
    from nasbench.space import load_space

    space = load_space(args.space)
    positive("--tokens", args.tokens)
    importance = sort_model(space, args.out, scheme=args.scheme, layer_scheme=args.layers, tokens=args.tokens,
                            seq_len=args.seq_len, data_dir=data.data_dir(args.data_dir))
    if args.db:
        from nasbench.store import Store

        with Store(args.db) as store:
            store.add_space(space)
            store.add_supernet(Path(args.out).name, space.name, space.model.source, strategy="importance-sorted",
                               checkpoint=str(args.out), tokens=importance.tokens,
                               config={"scheme": args.scheme, "layers": args.layers, "seq_len": args.seq_len})
    order = importance.layer_order()
    print(f"sorted supernet -> {args.out} ({args.scheme}, {args.layers}, {importance.tokens} calibration tokens)")
    print(f"layers, most important first: {order}")
    return 0



def _cmd_export(args: argparse.Namespace) -> int:
    from nasbench.cli._common import benchmark_db
    from nasbench.space import arch_id, load_space
    from nasbench.supernet import TASKS_DIR, Supernet, SupernetRef, default_eval_tasks, export

    if args.supernet is not None:
        args.supernet.require_weights()  # fail before anything is parsed or loaded
    space = load_space(args.space) if Path(args.space).is_file() else _stored_space(args.db, args.space)
    arch = space.canonical(parse_arch(args.arch), where="--arch")
    from nasbench.supernet.wiring import check_extractable

    check_extractable(space.family, arch)  # fail before loading anything
    if args.db is None and benchmark_db(space.name).is_file():  # the space's benchmark, for the card and the default
        args.db = str(benchmark_db(space.name))
    if args.verify_ppl and not args.db:
        raise NasBenchError("--verify-ppl", "needs --db (the benchmark whose row it checks)", "no --db")
    if args.supernet is None and args.db:  # the benchmark's main supernet, as every verb defaults to
        from nasbench.store import connect_read_only
        from nasbench.store.queries import main_supernet

        con = connect_read_only(args.db)
        try:
            main = main_supernet(con, space.name)
        finally:
            con.close()
        args.supernet = None if main is None else SupernetRef.resolve(main)
    source = SupernetRef.resolve(args.supernet)
    loaded = source.load(space)  # the base model, a trained directory or an artifact (rebuilt)
    indices: dict[str, Any] = {}
    if loaded.importance is not None and loaded.importance.layers:  # a sorted supernet keeps its top layers
        indices["layers"] = loaded.importance.layers_for(arch["n_layers"])
    supernet_id = source.id  # the id `nasbench profile --supernet` stores
    measurements: list[dict[str, Any]] = []
    if args.db:  # the model card shows what the benchmark measured for this arch on these weights
        from nasbench.store.publish import arch_measurements

        measurements = arch_measurements(args.db, space.name, arch_id(arch), supernet_id)
    tasks = default_eval_tasks(space, measurements)
    written = _write_eval_tasks(args.data_dir, Path(args.out) / TASKS_DIR, tasks)
    out = export(space, arch, args.out, source, supernet=Supernet(loaded.model, space), measurements=measurements,
                 eval_tasks=tasks, tasks_written=written, **indices)
    print(f"exported {arch_id(arch)} ({space.params(arch):,} params, supernet {supernet_id}) -> {out} "
          f"(model card README.md: {len(measurements)} measured values; lm_eval line with --include_path "
          f"{TASKS_DIR}{'' if written else ', after `nasbench tasks` (no data directory here)'})")
    if args.verify_ppl:
        from nasbench import data
        from nasbench.profile.exported import VERIFY_TOLERANCE, exported_perplexity

        rows = [m for m in measurements if m["metric"] == "ppl" and m["supernet_id"] == supernet_id]
        if not rows:
            raise NasBenchError("--verify-ppl", f"needs the arch's ppl row on {supernet_id} in --db", arch_id(arch))
        check = exported_perplexity(space, out, rows[0], data.data_dir(args.data_dir))
        print(json.dumps({"verify_ppl": arch_id(arch), **check}))
        if abs(check["rel_diff"]) > VERIFY_TOLERANCE:
            raise NasBenchError("--verify-ppl", f"the exported model's perplexity must equal the benchmark's "
                                                f"{check['benchmark_ppl']:.4f} within {VERIFY_TOLERANCE:.1%}",
                                f"{check['ppl']:.4f}")
    return 0


def _stored_space(db: str, name: str) -> Any:
    """The space ``name`` as ``db`` recorded it (SPACE named a space that has no file in spaces/)."""
    from nasbench.space import parse_space
    from nasbench.store import connect_read_only
    from nasbench.store.queries import space_names, space_yaml

    con = connect_read_only(db)
    try:
        text, names = space_yaml(con, name), space_names(con)
    finally:
        con.close()
    if text is None:
        raise NasBenchError("SPACE", f"neither a file, a space in spaces/, nor a space stored in {db} (one of "
                                     f"{', '.join(names) or 'none'})", name)
    return parse_space(text, f"{db}:spaces/{name}")


def _write_eval_tasks(data_dir: str | None, out: Path, tasks: list[str]) -> bool:
    """nasbench's task YAMLs of ``tasks`` into ``out`` where the data directory holds their files (True), else
    nothing (False: the card then says to run ``nasbench tasks``)."""
    from nasbench import data
    from nasbench.errors import DataError
    from nasbench.profile.accuracy import TASKS, write_tasks

    directory = data.data_dir(data_dir)
    if directory is None or any(t not in TASKS for t in tasks):
        return False
    try:
        write_tasks(directory, out, tasks)
    except DataError:
        return False
    return True


def _cmd_train(args: argparse.Namespace) -> int:
    from nasbench import data
    from nasbench.space import load_space
    from nasbench.train import train

    space = load_space(args.space)
    if args.time_budget is not None and not (math.isfinite(args.time_budget) and args.time_budget > 0):
        raise NasBenchError("--time-budget", "must be a number of seconds > 0", args.time_budget)
    deadline = None if args.time_budget is None else time.time() + args.time_budget
    result = train(space, strategy=args.strategy, kd=args.kd, peft=args.peft, preset=args.preset, out=args.out,
                   db=args.db, max_steps=args.max_steps, batch_size=args.batch_size, seq_len=args.seq_len,
                   resume=args.resume, sorted_supernet=args.sorted_supernet, data_dir=data.data_dir(args.data_dir),
                   seed=args.seed, precision=args.precision, lr=args.lr, stop_at=args.stop_at,
                   checkpoint_every=args.checkpoint_every, checkpoint_minutes=args.checkpoint_minutes,
                   eval_every=args.eval_every, eval_archs=args.eval_archs, resume_from=args.resume_from,
                   deadline=deadline)
    print(json.dumps({"train": result.supernet_id, "steps": result.steps, "tokens": result.tokens,
                      "wall_time_s": round(result.wall_time_s, 1), "complete": result.complete,
                      "losses": result.losses, "out": str(result.out)}))
    return 0


def _cmd_pack(args: argparse.Namespace) -> int:
    from nasbench.space import load_space
    from nasbench.supernet.artifact import pack, read_manifest

    space = load_space(args.space)
    out = pack(space, args.run, args.out)
    manifest = read_manifest(out)
    size = sum(f.stat().st_size for f in out.iterdir())
    print(json.dumps({"pack": manifest["id"], "out": str(out), "bytes": size,
                      "steps_total": manifest["training"]["steps_total"],
                      "tokens_total": manifest["training"]["tokens_total"], "files": manifest["files"]}))
    return 0



def add_verbs(verbs: Any) -> None:
    # the names and sort_model's defaults without torch (the scoring code loads when the verb runs)
    from nasbench.importance import (DEFAULT_LAYER_SCHEME, DEFAULT_SCHEME, LAYER_SCHEMES, SCHEMES, SORT_SEQ_LEN,
                                     SORT_TOKENS)

    p = verbs.add_parser("importance", help="score and sort heads, neurons, channels and layers; save the sorted "
                                            "supernet (`nasbench bench rpd ...`: what sorting buys, the RPD study)")
    p.add_argument("space", metavar="SPACE")
    p.add_argument("--scheme", choices=SCHEMES, default=DEFAULT_SCHEME,
                   help=f"<batch>-<sequence> aggregation of activations (default {DEFAULT_SCHEME}, the seed's best)")
    p.add_argument("--layers", choices=LAYER_SCHEMES, default=DEFAULT_LAYER_SCHEME)
    p.add_argument("--tokens", type=int, default=SORT_TOKENS, help=f"calibration token budget (default {SORT_TOKENS})")
    p.add_argument("--seq-len", type=int, default=SORT_SEQ_LEN)
    p.add_argument("--out", required=True, help="directory for the sorted supernet")
    p.add_argument("--db", help="record the sorted supernet in this DuckDB file")
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.set_defaults(func=_cmd_importance)

    p = verbs.add_parser("export", help="write a sub-network as a plain HF model directory")
    p.add_argument("space", metavar="SPACE")
    p.add_argument("--arch", required=True, metavar="JSON",
                   help="the arch object of `space sample` (or a whole sample line, or @FILE)")
    add_supernet_flag(p, "weights to export; default: the base model")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--db", metavar="PATH", help="show this benchmark's measurements of the arch in the model card")
    p.add_argument("--verify-ppl", action="store_true",
                   help="reload the exported model and score it with the benchmark's perplexity protocol; exit 2 "
                        "unless it equals the arch's row in --db")
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.set_defaults(func=_cmd_export)

    from nasbench.train.config import KD_LOSSES, PEFT_MODES, PRECISIONS, PRESETS, STRATEGIES, TrainConfig

    p = verbs.add_parser("train", help="fine-tune the supernet once (sandwich rule, KD, LoRA; resumable)")
    p.add_argument("space", metavar="SPACE")
    p.add_argument("--strategy", choices=STRATEGIES, default="sandwich")
    p.add_argument("--kd", choices=KD_LOSSES, default="cosine", help="in-place distillation loss (default cosine)")
    p.add_argument("--peft", choices=PEFT_MODES, default="lora")
    p.add_argument("--preset", choices=tuple(PRESETS), default="quick")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--sorted-supernet", metavar="DIR",
                   help="the sorted supernet the importance-* strategies start from")
    p.add_argument("--db", help="record the run in this DuckDB file's supernets table")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seq-len", type=int)
    p.add_argument("--seed", type=int, help=f"(default {TrainConfig.seed})")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.add_argument("--precision", choices=PRECISIONS, help="bf16-mixed, fp32, or auto: measure both matmul rates and "
                                                           "take the faster (the preset's default: auto)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the preset's)")
    p.add_argument("--stop-at", type=int, metavar="STEP", help="end this call after STEP steps (checkpointed); "
                                                                "--resume continues the same schedule")
    p.add_argument("--time-budget", type=float, metavar="S",
                   help="end within S seconds of now: after 10 timed steps the cosine schedule shrinks to the steps "
                        "that fit (a machine held for a fixed time); never grows")
    p.add_argument("--checkpoint-every", type=int, metavar="N", help="checkpoint every N steps")
    p.add_argument("--checkpoint-minutes", type=float, metavar="M",
                   help=f"... and every M minutes of training (default {TrainConfig.checkpoint_minutes:g}): a kill "
                        f"loses at most that")
    p.add_argument("--eval-every", type=int, metavar="N", help="recovery curve every N steps (0: off)")
    p.add_argument("--eval-archs", metavar="FILE", help="JSONL of probe archs for the curve")
    p.add_argument("--resume-from", metavar="ARTIFACT",
                   help="continue training a packed supernet (results/supernets/<id>): its sorted base and adapters, "
                        "a fresh optimizer and schedule")
    p.set_defaults(func=_cmd_train)

    p = verbs.add_parser("pack", help="pack a LoRA training run's newest checkpoint as a small supernet artifact")
    p.add_argument("space", metavar="SPACE")
    p.add_argument("run", metavar="RUN_DIR", help="the training run's --out directory")
    p.add_argument("--out", required=True, metavar="DIR", help="the artifact directory, e.g. results/supernets/<id>")
    p.set_defaults(func=_cmd_pack)
