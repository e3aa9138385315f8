"""The ``nasbench`` command line. Thin: parse, call one function, print.

Bad input ends with one line ``nasbench: error: <where>: <rule> (got <value>)`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn, Sequence

from nasbench.errors import NasBenchError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump), like every other error of the CLI."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message}")


class _UsageError(Exception):
    pass


# ------------------------------------------------------------------------------------------------------- space
def _cmd_space_validate(args: argparse.Namespace) -> int:
    from nasbench.space import load_space

    for path in args.paths:
        space = load_space(path)
        note = ""
        if args.check_model:
            note = "; " + _check_model(space)
        print(f"ok  {path}  ({space.name} v{space.version}, {space.family}, {space.model.source}{note})")
    return 0


def _check_model(space: Any) -> str:
    """Cross-check ``model.reference`` against the model's own config where it can be loaded here."""
    from nasbench.models import check_reference, load_config

    try:
        config = load_config(space.model)
    except NasBenchError as exc:
        if exc.where == "model.hf":  # a hub id not in the local cache: nothing to compare with offline
            return "reference not checked: model not available offline"
        raise
    try:
        check_reference(space.model, config)
    except NasBenchError as exc:
        raise NasBenchError(f"{space.path}:{exc.where}", exc.rule, exc.got, show_got=exc.show_got) from None
    return "reference matches the model config"


def _cmd_space_show(args: argparse.Namespace) -> int:
    from nasbench.space import DIMENSIONS, load_space

    space = load_space(args.path)
    small, large = space.smallest(), space.largest()
    ref = space.reference
    print(f"{space.name} v{space.version}: {space.description}".rstrip(": "))
    print(f"model       {space.model.source} ({space.family})")
    print("reference   " + ", ".join(f"{k}={getattr(ref, k)}" for k in (
        "n_layers", "embed_dim", "n_heads", "n_kv_groups", "head_size", "intermediate_size", "vocab_size",
        "tied_head")))
    print("dimensions")
    for name in DIMENSIONS:
        dim = space.dimensions[name]
        note = "  (follows n_heads: gpt_neox has no GQA)" if name == "n_kv_groups" and space.family == "gpt_neox" else ""
        print(f"  {name:<18} {dim.describe()}{note}")
    c = space.constraints
    if c.min_params is not None or c.max_params is not None:
        print(f"constraints min_params={c.min_params} max_params={c.max_params}")
    count = space.cardinality()  # an int; per-layer spaces reach 10^1000 and more, beyond a float
    if count < 10**300:
        text = f"{count:.4g}"
    else:
        import math

        digits = int(math.log10(count))
        lead = str(count // 10 ** (digits - 3))
        text = f"{lead[0]}.{lead[1:4]}e+{digits}"
    print(f"cardinality {text} (dimension combinations before constraints)")
    print(f"params      {space.params(small):,} .. {space.params(large):,} (smallest .. largest)")
    if space.objectives:
        print("objectives  " + ", ".join(f"{o.name} ({'min' if o.minimize else 'max'}, {o.unit})"
                                         for o in space.objectives))
    for source in space.data.values():
        where = ", ".join(source.paths or source.tasks)
        print(f"data        {source.name:<12} {source.kind:<13} {where}")
    return 0


def _cmd_space_sample(args: argparse.Namespace) -> int:
    from nasbench.space import arch_id, load_space

    space = load_space(args.path)
    if args.n < 1:
        raise NasBenchError("--n", "must be >= 1", args.n)
    if args.band is not None:
        archs = _band(space, args.band, args.n, args.seed)
    elif args.grid_params is not None:
        archs = space.sample_grid(args.n, args.grid_params, seed=args.seed, trials=args.grid_trials)
    else:
        archs = space.sample(args.n, seed=args.seed)
    if args.db:
        from nasbench.store import Store

        with Store(args.db) as store:
            store.add_space(space)
            store.add_architectures(space, archs)
    out = sys.stdout
    for arch in archs:
        out.write(json.dumps({"arch_id": arch_id(arch), "params": space.params(arch), "arch": arch}) + "\n")
    return 0


def _band(space: Any, fraction: float, n: int, seed: int, draws: int = 200_000) -> list[dict[str, Any]]:
    """The first ``n`` distinct seeded samples whose params are within +-1 pp of ``fraction`` of the largest's."""
    import math

    if not (isinstance(fraction, float) and math.isfinite(fraction) and 0.0 < fraction <= 1.0):
        raise NasBenchError("--band", "must be a fraction in (0, 1]", fraction)
    full = space.params(space.largest())
    low, high = (fraction - 0.01) * full, (fraction + 0.01) * full
    found: dict[str, dict[str, Any]] = {}
    from nasbench.space import arch_id

    for chunk in range(0, draws, 5_000):
        for arch in space.sample(5_000, seed=seed * 1_000_003 + chunk):
            if low <= space.params(arch) <= high:
                found.setdefault(arch_id(arch), arch)
                if len(found) == n:
                    return list(found.values())
    raise NasBenchError("--band", f"only {len(found)} of {n} archs found in {draws:,} draws within +-1 pp", fraction)


# -------------------------------------------------------------------------------------------------- importance
def _cmd_importance(args: argparse.Namespace) -> int:
    from nasbench import data
    from nasbench.importance import sort_model
    from nasbench.space import load_space

    space = load_space(args.space)
    _positive("--tokens", args.tokens)
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


def _cmd_importance_rpd(args: argparse.Namespace) -> int:
    from nasbench import data
    from nasbench.rpd import run_rpd
    from nasbench.space import load_space

    spaces = [load_space(p) for p in args.spaces]
    _positive("--n", args.n)
    _positive("--tokens", args.tokens)
    result = run_rpd(spaces, n=args.n, seed=args.seed, tokens=args.tokens, ppl_tokens=args.ppl_tokens,
                     seq_len=args.seq_len, schemes=args.schemes, layer_schemes=args.layers,
                     data_dir=data.data_dir(args.data_dir), db=args.db)
    print(result.table())
    print(json.dumps({"bench": "rpd", "rpd": result.rpd, "n": args.n, "tokens": args.tokens,
                      "ppl_tokens": args.ppl_tokens, "seconds": round(result.seconds, 1)}))
    return 0


def _positive(flag: str, value: int) -> None:
    if value < 1:
        raise NasBenchError(flag, "must be >= 1", value)


# ------------------------------------------------------------------------------------------------------ export
def _parse_arch(text: str) -> dict[str, Any]:
    """``--arch``: the ``arch`` object printed by ``space sample``, a whole sample line, or ``@file`` holding either."""
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise NasBenchError("--arch", "file not found", str(path))
        text = path.read_text(encoding="utf-8")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NasBenchError("--arch", f"not valid JSON ({exc.msg} at char {exc.pos})", text) from None
    if isinstance(value, dict) and isinstance(value.get("arch"), dict):
        value = value["arch"]
    if not isinstance(value, dict):
        raise NasBenchError("--arch", "must be a JSON object of dimensions (or a `space sample` line)", value)
    return value


def _read_arch_lines(path: str | None, flag: str = "--archs") -> list[dict[str, Any]]:
    """``--archs FILE``: one arch per line (an arch object or a `space sample` line); none without a file."""
    if path is None:
        return []
    file = Path(path)
    if not file.is_file():
        raise NasBenchError(flag, "file not found", path)
    archs = []
    for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                archs.append(_parse_arch(line))
            except NasBenchError as exc:
                raise NasBenchError(f"{path}:{n}", exc.rule, exc.got, show_got=exc.show_got) from None
    return archs


def _cmd_export(args: argparse.Namespace) -> int:
    from nasbench.space import arch_id, load_space
    from nasbench.supernet import Supernet, export
    from nasbench.train.artifact import load_model

    space = load_space(args.space)
    arch = space.canonical(_parse_arch(args.arch), where="--arch")
    from nasbench.supernet.families import check_extractable

    check_extractable(space.family, arch)  # fail before loading anything
    loaded = load_model(space, args.supernet)  # the base model, a trained directory or an artifact (rebuilt)
    indices: dict[str, Any] = {}
    if loaded.importance is not None and loaded.importance.layers:  # a sorted supernet keeps its top layers
        indices["layers"] = loaded.importance.layers_for(arch["n_layers"])
    supernet_id = loaded.supernet_id  # the id `nasbench profile --supernet` stores
    measurements: list[dict[str, Any]] = []
    if args.db:  # the model card shows what the benchmark measured for this arch on these weights
        from nasbench.publish import arch_measurements

        measurements = arch_measurements(args.db, space.name, arch_id(arch), supernet_id)
    out = export(space, arch, args.out, supernet_dir=args.supernet, supernet=Supernet(loaded.model, space),
                 supernet_id=supernet_id, measurements=measurements, **indices)
    print(f"exported {arch_id(arch)} ({space.params(arch):,} params) -> {out} "
          f"(model card README.md: {len(measurements)} measured values)")
    return 0


# ------------------------------------------------------------------------------------------------------- bench
def _cmd_bench(args: argparse.Namespace) -> int:
    from nasbench import bench
    from nasbench.space import load_space

    space = load_space(args.space)
    if args.what == "slicing":
        result = bench.bench_slicing(space, n=args.n, seed=args.seed, seq_len=args.seq_len, batch=args.batch)
    elif args.what == "importance":
        from nasbench import data

        result = bench.bench_importance(space, tokens=args.tokens, seq_len=args.seq_len,
                                        data_dir=data.data_dir(args.data_dir))
    elif args.what == "train":
        from nasbench.train import bench_train

        result = bench_train(space, batch_size=args.batch_size, seq_len=args.seq_len)
    else:
        from nasbench import data

        result = bench.bench_profile(space, ppl_tokens=args.ppl_tokens, seq_len=args.seq_len,
                                     data_dir=data.data_dir(args.data_dir))
    print(json.dumps(result))
    return 0


# ------------------------------------------------------------------------------------------------------- train
def _cmd_train(args: argparse.Namespace) -> int:
    from nasbench import data
    from nasbench.space import load_space
    from nasbench.train import train

    space = load_space(args.space)
    result = train(space, strategy=args.strategy, kd=args.kd, peft=args.peft, preset=args.preset, out=args.out,
                   db=args.db, max_steps=args.max_steps, batch_size=args.batch_size, seq_len=args.seq_len,
                   resume=args.resume, sorted_supernet=args.sorted_supernet, data_dir=data.data_dir(args.data_dir),
                   seed=args.seed, precision=args.precision, lr=args.lr, stop_at=args.stop_at,
                   checkpoint_every=args.checkpoint_every, checkpoint_minutes=args.checkpoint_minutes,
                   eval_every=args.eval_every, eval_archs=args.eval_archs, resume_from=args.resume_from)
    print(json.dumps({"train": result.supernet_id, "steps": result.steps, "tokens": result.tokens,
                      "wall_time_s": round(result.wall_time_s, 1), "complete": result.complete,
                      "losses": result.losses, "out": str(result.out)}))
    return 0


def _cmd_pack(args: argparse.Namespace) -> int:
    from nasbench.space import load_space
    from nasbench.train.artifact import pack, read_manifest

    space = load_space(args.space)
    out = pack(space, args.run, args.out)
    manifest = read_manifest(out)
    size = sum(f.stat().st_size for f in out.iterdir())
    print(json.dumps({"pack": manifest["id"], "out": str(out), "bytes": size,
                      "steps_total": manifest["training"]["steps_total"],
                      "tokens_total": manifest["training"]["tokens_total"], "files": manifest["files"]}))
    return 0


# ----------------------------------------------------------------------------------------------------- profile
def _cmd_profile(args: argparse.Namespace) -> int:
    from nasbench import data
    from nasbench.profile.runner import ProfileConfig, parse_shard, profile
    from nasbench.space import load_space

    space = load_space(args.space)
    for flag, value in (("--n", args.n), ("--ppl-tokens", args.ppl_tokens), ("--seq-len", args.seq_len)):
        if value < (0 if flag == "--n" else 1):
            raise NasBenchError(flag, "must be >= 1" if flag != "--n" else "must be >= 0", value)
    config = ProfileConfig(
        n=args.n, seed=args.seed, grid_params=args.grid_params, archs=tuple(_read_arch_lines(args.archs)),
        metrics=tuple(_csv(args.metrics)),
        tasks=tuple(_csv(args.tasks)), limit_items=args.limit_items, ppl_tokens=args.ppl_tokens,
        seq_len=args.seq_len, latency_batch=args.latency_batch, latency_seq_len=args.latency_seq_len,
        latency_repeats=args.latency_repeats, decode_tokens=args.decode_tokens, device=args.device, dtype=args.dtype,
        shard=parse_shard(args.shard))
    summary = profile(space, args.db, config, supernet_dir=args.supernet, data_dir=data.data_dir(args.data_dir))
    print(json.dumps({"profile": space.name, "supernet_id": summary.supernet_id, "archs": summary.archs,
                      "profiled": summary.profiled, "new_rows": summary.rows, "seconds": round(summary.seconds, 1),
                      "db": str(args.db)}))
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from nasbench.store import Store

    with Store(args.out) as store:
        added = store.merge(args.inputs)
    print(json.dumps({"merge": str(args.out), "new_rows": added}))
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from nasbench.publish import publish

    print(json.dumps(publish(args.db, args.out)))
    return 0


def _cmd_tasks(args: argparse.Namespace) -> int:
    from nasbench import data
    from nasbench.profile.accuracy import TASKS, write_tasks

    out = write_tasks(data.data_dir(args.data_dir), args.out)
    print(f"wrote {len(TASKS)} task files to {out}: lm_eval --include_path {out} --tasks {','.join(TASKS)}")
    return 0


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


# --------------------------------------------------------------------------------------------------------- sql
_READ_ONLY_STATEMENTS = {"SELECT", "EXPLAIN", "PRAGMA"}


def _cmd_sql(args: argparse.Namespace) -> int:
    import duckdb

    from nasbench.store import connect_read_only

    try:
        statements = duckdb.extract_statements(args.query)
    except duckdb.Error as exc:
        raise NasBenchError("QUERY", "not valid SQL", str(exc).splitlines()[0]) from None
    if not statements:
        raise NasBenchError("QUERY", "is empty: give one SELECT, EXPLAIN or PRAGMA statement", args.query)
    for statement in statements:
        kind = statement.type.name
        if kind not in _READ_ONLY_STATEMENTS:
            raise NasBenchError("QUERY", "nasbench sql is read-only: only SELECT, EXPLAIN and PRAGMA statements run",
                                kind)
    if len(statements) > 1:
        raise NasBenchError("QUERY", "give exactly one statement", len(statements))
    con = connect_read_only(args.db)
    try:
        frame = con.execute(args.query).df()
    except duckdb.Error as exc:
        raise NasBenchError("QUERY", "query failed", str(exc).splitlines()[0]) from None
    finally:
        con.close()
    if args.format == "csv":
        sys.stdout.write(frame.to_csv(index=False))
    elif args.format == "json":
        text = frame.to_json(orient="records", lines=True, date_format="iso") if len(frame) else ""
        sys.stdout.write(text if not text or text.endswith("\n") else text + "\n")
    else:
        print(frame.to_string(index=False) if len(frame) else "(no rows)")
    return 0


# ------------------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    from nasbench.store import DEFAULT_DB

    parser = _Parser(prog="nasbench", description="LLM compression by two-stage NAS, as a queryable benchmark.")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    space = verbs.add_parser("space", help="validate, show and sample search spaces")
    space_verbs = space.add_subparsers(dest="space_verb", required=True, parser_class=_Parser)
    p = space_verbs.add_parser("validate", help="exit 0 when every file is a valid search space")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--check-model", action="store_true",
                   help="also compare model.reference with the model's config where it loads offline")
    p.set_defaults(func=_cmd_space_validate)
    p = space_verbs.add_parser("show", help="dimensions, cardinality, smallest..largest params")
    p.add_argument("path", metavar="PATH")
    p.set_defaults(func=_cmd_space_show)
    p = space_verbs.add_parser("sample", help="JSONL of seeded architectures on stdout")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--n", type=int, default=10, help="how many archs (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid-params", type=int, metavar="K", help="spread the archs over K parameter-count bins")
    p.add_argument("--grid-trials", type=int, default=10_000, metavar="N",
                   help="rejection-sampling draws that fill the bins (default 10000)")
    p.add_argument("--band", type=float, metavar="FRACTION",
                   help="only archs within +-1 percentage point of FRACTION of the largest arch's params (e.g. 0.5)")
    p.add_argument("--db", help="also record the space and the archs in this DuckDB file")
    p.set_defaults(func=_cmd_space_sample)

    from nasbench.importance import LAYER_SCHEMES, SCHEMES

    p = verbs.add_parser("importance", help="score and sort heads, neurons, channels and layers; save the sorted "
                                            "supernet (`nasbench importance rpd ...`: the RPD study)")
    p.add_argument("space", metavar="SPACE")
    p.add_argument("--scheme", choices=SCHEMES, default="mean-mean",
                   help="<batch>-<sequence> aggregation of activations (default mean-mean, the seed's best)")
    p.add_argument("--layers", choices=LAYER_SCHEMES, default="block-importance")
    p.add_argument("--tokens", type=int, default=8192, help="calibration token budget (default 8192)")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--out", required=True, help="directory for the sorted supernet")
    p.add_argument("--db", help="record the sorted supernet in this DuckDB file")
    p.add_argument("--data-dir", help="data directory (default: NASBENCH_DATA_DIR)")
    p.set_defaults(func=_cmd_importance)
    p = verbs.add_parser("importance-rpd", help="the RPD study")
    p.prog = "nasbench importance rpd"
    p.add_argument("spaces", nargs="+", metavar="SPACE", help="spaces sharing one base model")
    p.add_argument("--n", type=int, default=200, help="archs per space (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokens", type=int, default=4096, help="calibration token budget (default 4096)")
    p.add_argument("--ppl-tokens", type=int, default=1024,
                   help="WikiText-2 test tokens per perplexity (default 1024)")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--schemes", nargs="+", choices=SCHEMES, default=list(SCHEMES))
    p.add_argument("--layers", nargs="+", choices=LAYER_SCHEMES, default=list(LAYER_SCHEMES))
    p.add_argument("--db", help="store per-arch perplexities in this DuckDB file")
    p.add_argument("--data-dir", help="data directory (default: NASBENCH_DATA_DIR)")
    p.set_defaults(func=_cmd_importance_rpd)

    p = verbs.add_parser("export", help="write a sub-network as a plain HF model directory")
    p.add_argument("space", metavar="SPACE")
    p.add_argument("--arch", required=True, metavar="JSON",
                   help="the arch object of `space sample` (or a whole sample line, or @FILE)")
    p.add_argument("--supernet", metavar="DIR", help="weights from this supernet directory (default: the base model)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--db", metavar="PATH", help="show this benchmark's measurements of the arch in the model card")
    p.set_defaults(func=_cmd_export)

    from nasbench.train.config import KD_LOSSES, PEFT_MODES, PRESETS, STRATEGIES

    p = verbs.add_parser("train", help="fine-tune the supernet once (sandwich rule, KD, LoRA; resumable)")
    p.add_argument("space", metavar="SPACE")
    p.add_argument("--strategy", choices=STRATEGIES, default="sandwich")
    p.add_argument("--kd", choices=KD_LOSSES, default="cosine", help="in-place distillation loss (default cosine)")
    p.add_argument("--peft", choices=PEFT_MODES, default="lora")
    p.add_argument("--preset", choices=tuple(PRESETS), default="quick")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--sorted-supernet", metavar="DIR", help="the sorted supernet the importance-* strategies start from")
    p.add_argument("--db", help="record the run in this DuckDB file's supernets table")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seq-len", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--data-dir", help="data directory (default: NASBENCH_DATA_DIR)")
    from nasbench.train.config import PRECISIONS

    p.add_argument("--precision", choices=PRECISIONS, help="bf16-mixed, fp32, or auto: measure both matmul rates and "
                                                           "take the faster (the preset's default: auto)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the preset's)")
    p.add_argument("--stop-at", type=int, metavar="STEP", help="end this call after STEP steps (checkpointed); "
                                                                "--resume continues the same schedule")
    p.add_argument("--checkpoint-every", type=int, metavar="N", help="checkpoint every N steps")
    p.add_argument("--checkpoint-minutes", type=float, metavar="M",
                   help="... and every M minutes of training (default 10): a kill loses at most that")
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

    p = verbs.add_parser("profile", help="measure sub-networks into DuckDB (resumable, shardable)")
    p.add_argument("space", metavar="SPACE")
    p.add_argument("--supernet", metavar="DIR", help="a supernet directory (default: the pretrained base model)")
    p.add_argument("--n", type=int, default=10, help="seeded random archs (smallest and largest are always added)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid-params", type=int, metavar="K", help="also N archs over K parameter bins")
    p.add_argument("--archs", metavar="FILE", help="also these archs: JSONL of arch objects or `space sample` lines")
    p.add_argument("--metrics", default="ppl,latency,memory", help="comma list of ppl,acc,latency,memory,energy")
    p.add_argument("--tasks", default="arc_easy,piqa,winogrande", help="comma list of lm-eval tasks for acc")
    p.add_argument("--limit-items", type=int, metavar="M", help="first M items of each task (lm-eval's --limit)")
    p.add_argument("--ppl-tokens", type=int, default=4096, metavar="T", help="WikiText-2 test tokens (default 4096)")
    p.add_argument("--seq-len", type=int, default=512, metavar="L", help="perplexity window (default 512)")
    p.add_argument("--latency-batch", type=int, default=1)
    p.add_argument("--latency-seq-len", type=int, default=128)
    p.add_argument("--latency-repeats", type=int, default=10)
    p.add_argument("--decode-tokens", type=int, default=0, help="also per-token decode latency over this many steps")
    p.add_argument("--device", default="cpu", metavar="D")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    p.add_argument("--db", default=DEFAULT_DB, help=f"DuckDB file (default {DEFAULT_DB})")
    p.add_argument("--shard", default="0/1", metavar="i/n", help="profile every n-th arch starting at i")
    p.add_argument("--data-dir", help="data directory (default: NASBENCH_DATA_DIR)")
    p.set_defaults(func=_cmd_profile)
    p = verbs.add_parser("tasks", help="write the local lm-eval task YAMLs (for lm_eval --include_path)")
    p.add_argument("out", metavar="DIR")
    p.add_argument("--data-dir", help="data directory (default: NASBENCH_DATA_DIR)")
    p.set_defaults(func=_cmd_tasks)
    p = verbs.add_parser("merge", help="merge shard DBs into one, without duplicates")
    p.add_argument("out", metavar="OUT")
    p.add_argument("inputs", nargs="+", metavar="IN")
    p.set_defaults(func=_cmd_merge)
    p = verbs.add_parser("publish", help="Parquet tables + Croissant-style card + Syne Tune blackboxes of a DB")
    p.add_argument("db", metavar="DB")
    p.add_argument("--out", required=True, metavar="DIR", help="new, empty, or an earlier publication (replaced)")
    p.set_defaults(func=_cmd_publish)

    bench = verbs.add_parser("bench", help="measurements that end with one JSON line of figures")
    bench_verbs = bench.add_subparsers(dest="what", required=True, parser_class=_Parser)
    p = bench_verbs.add_parser("slicing", help="sliced supernet vs extracted dense model forward time")
    p.add_argument("space", metavar="SPACE")
    p.add_argument("--n", type=int, default=10, help="random archs (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.set_defaults(func=_cmd_bench)
    p = bench_verbs.add_parser("importance", help="importance scoring pass vs a plain forward over the same tokens")
    p.add_argument("space", metavar="SPACE")
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--data-dir", help="data directory (default: NASBENCH_DATA_DIR)")
    p.set_defaults(func=_cmd_bench)

    p = bench_verbs.add_parser("train", help="a sandwich step vs the dense steps of the same sub-networks")
    p.add_argument("space", metavar="SPACE")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=128)
    p.set_defaults(func=_cmd_bench)
    p = bench_verbs.add_parser("profile", help="perplexity throughput vs the matmul rate; latency CV")
    p.add_argument("space", metavar="SPACE")
    p.add_argument("--ppl-tokens", type=int, default=2048)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--data-dir", help="data directory (default: NASBENCH_DATA_DIR)")
    p.set_defaults(func=_cmd_bench)

    from nasbench._cli_benchmark import add_bench_verbs, add_verbs

    add_verbs(verbs)
    add_bench_verbs(bench_verbs)

    p = verbs.add_parser("sql", help="run a read-only SQL query on a benchmark DB")
    p.add_argument("query", metavar="QUERY")
    p.add_argument("--db", default=DEFAULT_DB, help=f"DuckDB file (default {DEFAULT_DB})")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=_cmd_sql)
    # `importance rpd` is reached through `importance`: keep its internal name out of the verb list
    verbs._choices_actions = [a for a in verbs._choices_actions if a.dest != "importance-rpd"]
    verbs.metavar = "{" + ",".join(a.dest for a in verbs._choices_actions) + "}"
    return parser


#: Integer flags (argparse dests) that may be 0; every other integer flag must be >= 1 (``--n`` of ``profile`` may be 0:
#: the smallest and largest archs are always profiled). ``train`` validates its own flags in ``TrainConfig``.
_INT_FLAG_MINIMUM = {"seed": 0, "decode_tokens": 0, "eval_every": 0}
_INT_FLAG_MAXIMUM = 2**31 - 1
#: Comma-list flags: when given they name at least one item, each once.
_LIST_FLAGS = ("metrics", "methods", "objectives", "tasks", "models")


def _check_flags(args: argparse.Namespace) -> None:
    """Every numeric and list flag, checked in one place before any work: integers in range, floats finite and > 0,
    comma lists non-empty and without repeats."""
    import math

    if getattr(args, "verb", None) == "train":
        return
    for dest, value in vars(args).items():
        if value is None or isinstance(value, bool) or dest == "func":
            continue
        flag = "--" + dest.replace("_", "-")
        if isinstance(value, int):
            low = 0 if dest == "n" and args.verb == "profile" else _INT_FLAG_MINIMUM.get(dest, 1)
            if value < low:
                raise NasBenchError(flag, f"must be >= {low}", value)
            if value > _INT_FLAG_MAXIMUM:
                raise NasBenchError(flag, f"must be <= {_INT_FLAG_MAXIMUM}", value)
        elif isinstance(value, float):
            if not math.isfinite(value) or value <= 0:
                raise NasBenchError(flag, "must be a finite number > 0", value)
        elif dest in _LIST_FLAGS and isinstance(value, str):
            items = _csv(value)
            if not items:
                raise NasBenchError(flag, "must name at least one item (a comma list)", value)
            repeated = sorted({i for i in items if items.count(i) > 1})
            if repeated:
                raise NasBenchError(flag, "names an item twice", ",".join(repeated))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["importance", "rpd"]:  # `importance rpd` is a verb of its own beside `importance SPACE`
        argv = ["importance-rpd", *argv[2:]]
    try:
        args = build_parser().parse_args(argv)
        _check_flags(args)
        return int(args.func(args) or 0)
    except _UsageError as exc:
        return _fail(str(exc).removeprefix("nasbench: "))
    except NasBenchError as exc:
        return _fail(exc.line())
    except BrokenPipeError:  # `nasbench space sample ... | head` closes stdout early: not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130


def _fail(line: str) -> int:
    print(f"nasbench: error: {line}", file=sys.stderr)
    return EXIT_USAGE


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
