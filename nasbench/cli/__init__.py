"""The ``nasbench`` command line. Thin: parse, call one function, print.

One module per group of verbs: ``space`` (validate, show, sample), ``supernet`` (importance, export, train, pack),
``profile`` (profile, tasks, merge, publish, sql), ``baseline`` (the pruning baselines), ``bench`` (the
measurements and the RPD study), ``query`` (fit, query, compare, pareto; bench query, bench compare), ``report``,
``run`` (the whole pipeline of a preset). Bad input ends with one line ``nasbench: error: <where>: <rule> (got
<value>)`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Sequence

from nasbench.cli import baseline, bench, profile, query, report, run, space, supernet
from nasbench.cli._common import EXIT_USAGE, Parser, UsageError, csv_list, normalize
from nasbench.errors import NasBenchError

__all__ = ["build_parser", "main", "entry", "EXIT_USAGE"]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="nasbench", description="LLM compression by two-stage NAS, as a queryable benchmark.")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=Parser)
    space.add_verbs(verbs)
    supernet.add_verbs(verbs)
    profile.add_verbs(verbs)
    baseline.add_verbs(verbs)
    bench_verbs = bench.add_verbs(verbs)
    query.add_verbs(verbs)
    query.add_bench_verbs(bench_verbs)
    profile.add_sql_verb(verbs)
    report.add_verbs(verbs)
    run.add_verbs(verbs)
    return parser


#: Integer flags (argparse dests) that may be 0; every other integer flag must be >= 1 (``--n`` of ``profile`` may be 0:
#: the smallest and largest archs are always profiled). ``train`` validates its own flags in ``TrainConfig``.
_INT_FLAG_MINIMUM = {"seed": 0, "decode_tokens": 0, "eval_every": 0, "grid": 0}
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
            items = csv_list(value)
            if not items:
                raise NasBenchError(flag, "must name at least one item (a comma list)", value)
            repeated = sorted({i for i in items if items.count(i) > 1})
            if repeated:
                raise NasBenchError(flag, "names an item twice", ",".join(repeated))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = None
    try:
        args = parser.parse_args(argv)
        _check_flags(args)
        normalize(args)
        return int(args.func(args) or 0)
    except UsageError as exc:
        return _fail(str(exc).removeprefix("nasbench: "))
    except NasBenchError as exc:
        return _fail(_as_flags(exc, _spellings(parser, args)).line())
    except BrokenPipeError:  # `nasbench space sample ... | head` closes stdout early: not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130


#: The library's names that no verb's parser spells as a ``dest`` of the same name, and the flags that set them (every
#: other name is mapped by the parser of the verb that ran: :func:`_spellings`).
_FLAGS = {"supernet": "--supernet", "supernet_id": "--supernet",
          "configs": "--arch/--file", "configuration": "--arch", "steps": "--max-steps", "deadline": "--time-budget",
          "max_sim_time_s": "--max-sim-time", "layer_scheme": "--layers", "layer_schemes": "--layers",
          "limit": "--limit-items", "curves": "--compare-curve"}
#: The head of an error's ``where``: a name, then the end, a space or an index (``archs[3]``).
_HEAD = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?=$|[ \[])")


def _spellings(parser: Parser, args: argparse.Namespace | None) -> dict[str, str]:
    """How the verb that ran spells its arguments: its parser's ``dest`` -> flag (or metavar), found by following the
    verbs ``args`` names down from ``parser``."""
    if args is None:
        return {}
    while parser.verbs is not None:
        chosen = parser.verbs.choices.get(getattr(args, parser.verbs.dest, None))
        if chosen is None:
            break
        parser = chosen
    return parser.spellings


def _as_flags(exc: NasBenchError, spellings: dict[str, str]) -> NasBenchError:
    """The library's error in the CLI's words: the head of ``where``, when it is an argument of the verb that ran (or
    a name of :data:`_FLAGS`), becomes the flag or positional the user typed (``ppl_tokens`` -> ``--ppl-tokens``,
    ``archs[3]`` -> ``--archs[3]``, ``space`` -> ``SPACE``)."""
    match = _HEAD.match(exc.where)
    head = match.group(1) if match else None
    flag = (spellings.get(head) or _FLAGS.get(head)) if head else None
    if flag is None:
        return exc
    return NasBenchError(flag + exc.where[len(head):], exc.rule, exc.got, show_got=exc.show_got)


def _fail(line: str) -> int:
    print(f"nasbench: error: {line}", file=sys.stderr)
    return EXIT_USAGE


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())

