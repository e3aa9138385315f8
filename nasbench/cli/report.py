"""The ``report`` verb: REPORT.md, its figures and the README's generated blocks, from the DB only."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nasbench.errors import NasBenchError


def _cmd_report(args: argparse.Namespace) -> int:
    from nasbench.report import update_readme, write_report
    from nasbench.space import load_space

    space = load_space(args.space)
    bands_dir = Path(args.bands)
    bands = {p.stem.rsplit("-", 1)[-1]: p for p in sorted(bands_dir.glob(f"{space.name}-*.jsonl"))
             if p.stem.rsplit("-", 1)[-1].isdigit()}
    if not bands:
        raise NasBenchError("--bands", f"holds no {space.name}-<percent>.jsonl band file", str(bands_dir))
    curve = Path(args.curve) if args.curve else _newest_curve(space.name)
    compare = [Path(c) for c in args.compare_curve] if args.compare_curve is not None else \
        sorted(Path("results/curves").glob(f"{space.name}-*/curve.jsonl"))
    for path in compare:
        if not path.is_file():
            raise NasBenchError("--compare-curve", "must name an existing curve.jsonl", str(path))
    if compare and curve is None:
        raise NasBenchError("--compare-curve", "needs the shipped curve to compare with (--curve)", str(compare[0]))
    out = Path(args.out) if args.out else Path("results") / space.name
    for flag, path in (("--rpd-db", args.rpd_db), *(("--history-db", h) for h in args.history_db or ())):
        if path is not None and not Path(path).is_file():
            raise NasBenchError(flag, "must name an existing DuckDB file", path)
    sections = write_report(args.db, space, out, bands=bands, curve=curve, compare=compare, runs_db=args.runs_db,
                            rpd_db=args.rpd_db, history_dbs=tuple(args.history_db or ()))
    replaced = 0
    if args.readme:
        readme = Path(args.readme)
        replaced = update_readme(readme, sections, Path(out).relative_to(readme.parent.resolve())
                                 .as_posix() if Path(out).is_absolute() else Path(out).as_posix())
    print(json.dumps({"report": str(out / "REPORT.md"), "sections": list(sections), "readme_blocks": replaced}))
    return 0


def _newest_curve(space: str) -> Path | None:
    """The curve of the space's artifact in results/supernets/ trained on the most tokens."""
    from nasbench.supernet import SupernetRef

    best, tokens = None, -1
    for ref in SupernetRef.packed():
        curve = ref.path / "curve.jsonl"  # type: ignore[operator]
        if curve.is_file() and ref.space is not None and ref.space[0] == space and ref.tokens > tokens:
            best, tokens = curve, ref.tokens
    return best


def add_verbs(verbs: Any) -> None:
    p = verbs.add_parser("report", help="REPORT.md + figures (and the README's generated blocks) from the DB")
    p.add_argument("space", metavar="SPACE")
    p.add_argument("--db", required=True, help="the benchmark DB")
    p.add_argument("--out", metavar="DIR", help="default results/<space name>")
    p.add_argument("--bands", default="results/bands", metavar="DIR", help="band files <space>-<percent>.jsonl")
    p.add_argument("--curve", metavar="FILE", help="a recovery curve.jsonl (default: the space's artifact in "
                                                   "results/supernets/ with the most training tokens)")
    p.add_argument("--compare-curve", metavar="FILE", action="append",
                   help="another recovery run's curve.jsonl on the same probes, compared at equal tokens (repeatable; "
                        "default: results/curves/<space>-*/curve.jsonl)")
    p.add_argument("--runs-db", metavar="DB", help="the optimizer comparison's runs DB (adds its significance section)")
    p.add_argument("--rpd-db", metavar="DB", help="the RPD study's DB (`nasbench bench rpd`; adds S1's numbers)")
    p.add_argument("--history-db", metavar="DB", action="append",
                   help="an earlier benchmark DB of the space whose supernets S2-S4 also compare (repeatable)")
    p.add_argument("--readme", metavar="FILE", help="also rewrite this file's `<!-- nasbench report: NAME -->` blocks")
    p.set_defaults(func=_cmd_report)
