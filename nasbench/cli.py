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
        print(f"ok  {path}  ({space.name} v{space.version}, {space.family}, {space.model.source})")
    return 0


def _cmd_space_show(args: argparse.Namespace) -> int:
    from nasbench.space import DIMENSIONS, load_space

    space = load_space(args.path)
    small, large = space.smallest(), space.largest()
    ref = space.reference
    print(f"{space.name} v{space.version}: {space.description}".rstrip(": "))
    print(f"model       {space.model.source} ({space.family})")
    print(f"reference   " + ", ".join(f"{k}={getattr(ref, k)}" for k in (
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
    print(f"cardinality {space.cardinality():.4g} (dimension combinations before constraints)")
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
    if args.grid_params is not None:
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


# --------------------------------------------------------------------------------------------------------- sql
_READ_ONLY_STATEMENTS = {"SELECT", "EXPLAIN", "PRAGMA"}


def _cmd_sql(args: argparse.Namespace) -> int:
    import duckdb

    from nasbench.store import connect_read_only

    try:
        statements = duckdb.extract_statements(args.query)
    except duckdb.Error as exc:
        raise NasBenchError("QUERY", "not valid SQL", str(exc).splitlines()[0]) from None
    for statement in statements:
        kind = statement.type.name
        if kind not in _READ_ONLY_STATEMENTS:
            raise NasBenchError("QUERY", "nasbench sql is read-only: only SELECT, EXPLAIN and PRAGMA statements run",
                                kind)
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
    p.add_argument("--db", help="also record the space and the archs in this DuckDB file")
    p.set_defaults(func=_cmd_space_sample)

    p = verbs.add_parser("sql", help="run a read-only SQL query on a benchmark DB")
    p.add_argument("query", metavar="QUERY")
    p.add_argument("--db", default=DEFAULT_DB, help=f"DuckDB file (default {DEFAULT_DB})")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=_cmd_sql)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
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
