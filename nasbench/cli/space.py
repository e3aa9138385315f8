"""``nasbench space validate|show|sample``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from nasbench.cli._common import Parser
from nasbench.errors import NasBenchError


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
        follows = name == "n_kv_groups" and space.model_family.kv_follows_heads
        note = f"  (follows n_heads: {space.family} has no GQA)" if follows else ""
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



def add_verbs(verbs: Any) -> None:
    space = verbs.add_parser("space", help="validate, show and sample search spaces")
    space_verbs = space.add_subparsers(dest="space_verb", required=True, parser_class=Parser)
    p = space_verbs.add_parser("validate", help="exit 0 when every file is a valid search space")
    p.add_argument("paths", nargs="+", metavar="SPACE", help="space YAML files")
    p.add_argument("--check-model", action="store_true",
                   help="also compare model.reference with the model's config where it loads offline")
    p.set_defaults(func=_cmd_space_validate)
    p = space_verbs.add_parser("show", help="dimensions, cardinality, smallest..largest params")
    p.add_argument("path", metavar="SPACE", help="a space YAML file")
    p.set_defaults(func=_cmd_space_show)
    p = space_verbs.add_parser("sample", help="JSONL of seeded architectures on stdout")
    p.add_argument("path", metavar="SPACE", help="a space YAML file")
    p.add_argument("--n", type=int, default=10, help="how many archs (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid-params", type=int, metavar="K", help="spread the archs over K parameter-count bins")
    p.add_argument("--grid-trials", type=int, default=10_000, metavar="N",
                   help="rejection-sampling draws that fill the bins (default 10000)")
    p.add_argument("--band", type=float, metavar="FRACTION",
                   help="only archs within +-1 percentage point of FRACTION of the largest arch's params (e.g. 0.5)")
    p.add_argument("--db", help="also record the space and the archs in this DuckDB file")
    p.set_defaults(func=_cmd_space_sample)
