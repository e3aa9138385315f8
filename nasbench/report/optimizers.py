"""The report's ``optimizers`` section: per comparison (mode, objectives, supernet) and budget, the Friedman test
over seeds, average ranks with a critical-difference diagram, and which methods beat random search significantly
(one-sided Wilcoxon, Holm-corrected)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nasbench.space import SearchSpace

__all__ = ["optimizer_section"]


def optimizer_section(runs_db: str | Path, space: SearchSpace, out_dir: Path, baseline: str = "rs",
                      db: str | Path | None = None) -> str:
    """Significance of the optimizer comparison per budget (see the module docstring), as Markdown. With ``db``, the
    benchmark the runs searched: a comparison made before rows of its objectives were written there says so (its
    table is not the DB's any more) and gives the command that makes it again."""
    from nasbench.stats import average_ranks, cd_diagram, friedman, nemenyi_cd, versus_baseline
    from nasbench.store import run_scores

    groups = run_scores(runs_db, space.name)
    stale = _stale(runs_db, db, space, list(groups)) if db is not None else {}
    if not groups:
        return f"No optimizer runs of {space.name} in `{Path(runs_db).as_posix()}`.\n"
    lines = [f"Runs from `{Path(runs_db).as_posix()}`. Score: hypervolume (normalised by the true front's in table "
             "mode) after the budget's evaluations; seeds are the blocks of the tests; p-values of the one-sided "
             f"Wilcoxon tests against `{baseline}` are Holm-corrected over the methods; alpha = 0.05."]
    for n, ((mode, objectives, supernet), scores) in enumerate(sorted(groups.items())):
        methods = sorted(scores)
        seeds = sorted(set.intersection(*(set(scores[m]) for m in methods)))
        shared = set.intersection(*(set(b) for m in methods for b in (scores[m][s] for s in seeds)))
        budgets = sorted(b for b in shared if b >= 8)  # the first few evaluations are every method's random start
        lines += ["", f"**{mode} mode, objectives {objectives}, supernet `{supernet}`**: {len(methods)} methods, "
                      f"{len(seeds)} seeds." + stale.get((mode, objectives, supernet), ""), "",
                  "| evaluations | Friedman p | best by average rank | beat " + baseline + " (Holm) |",
                  "|---|---|---|---|"]
        if len(seeds) < 2 or len(methods) < 2:
            lines.append("| - | too few seeds or methods | - | - |")
            continue
        for budget in budgets:
            x = np.array([[scores[m][s][budget] for m in methods] for s in seeds])
            _, p = friedman(x)
            ranks = average_ranks(x)
            best = methods[int(np.argmin(ranks))]
            beat = [v for v in versus_baseline(x, methods, baseline) if v.significant] if baseline in methods else []
            beat_text = ", ".join(f"{v.method} (+{v.median_difference:.3f}, p={v.p_holm:.3g})" for v in beat) or "none"
            lines.append(f"| {budget} | {p:.3g} | {best} ({ranks.min():.2f}) | {beat_text} |")
        if not budgets:
            lines.append("| - | no budget of 8 or more evaluations shared by every run | - | - |")
            continue
        last = budgets[-1]
        x = np.array([[scores[m][s][last] for m in methods] for s in seeds])
        if len(methods) <= 10:
            png = cd_diagram(average_ranks(x), methods, nemenyi_cd(len(methods), len(seeds)),
                             out_dir / f"cd-{n}.png", title=f"{mode}, {objectives}: {last} evaluations")
            lines += ["", f"![critical differences]({png.name})"]
    return "\n".join(lines) + "\n"


def _stale(runs_db: str | Path, db: str | Path, space: SearchSpace,
           groups: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], str]:
    """Per group whose runs predate rows of their objectives in ``db``: a sentence saying so, with the command."""
    from nasbench.store import latest_rows, run_dates

    made = run_dates(runs_db, space.name)
    out = {}
    for mode, objectives, supernet in groups:
        first = made.get((mode, objectives, supernet), (None, None))[0]
        newer = {m: t for m, t in latest_rows(db, space.name, supernet, objectives.split(",")).items()
                 if first is not None and t is not None and t > first}
        if newer:
            out[(mode, objectives, supernet)] = (
                f" **Made on an earlier table:** the runs date from {first:%Y-%m-%d %H:%M} (UTC), and "
                f"{', '.join(f'`{m}`' for m in sorted(newer))} rows of `{Path(db).as_posix()}` were written since "
                f"(the newest {max(newer.values()):%Y-%m-%d %H:%M}), so the table these methods searched is not the "
                f"DB's any more; `nasbench compare {space.name} --db {Path(db).as_posix()} --supernet "
                f"{supernet} --objectives {objectives} --mode {mode} --runs-db {Path(runs_db).as_posix()}` (with "
                "the methods, seeds and budget above) runs them again on today's, and the report then counts those "
                "only.")
    return out
