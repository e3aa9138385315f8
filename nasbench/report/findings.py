"""Supporting findings of the report, from the DBs only, each with a number, its uncertainty and a figure (the
verdicts of S1-S4 and S6 are the controlled experiments of :mod:`nasbench.report.experiments`).

- The earlier RPD study (S1's appendix): RPD per scheme and space from the RPD study's DB (``nasbench bench
  rpd``), the mean with a 95% bootstrap interval over archs, the median and the share of archs sorting improved.
- The training chain (S2's context): per DB, the supernets measured on the same archs (one recipe at growing token
  budgets, the untrained sorted and pretrained models) compared by the hypervolume of their (params share, ln ppl)
  front, with paired bootstrap intervals (the same resampled archs for every supernet).

Hypervolume here: objectives params / full params and ln(perplexity), both minimised; the reference point is
(1, ln(vocabulary size)): a sub-network counts only if it is smaller than the full model and better than guessing
uniformly over the vocabulary. Rows are only compared on archs every compared supernet was measured on.

A front's hypervolume is a maximum-type statistic: a bootstrap resample (archs drawn with replacement) holds fewer
distinct archs, so its HV can only be lower. The resampled range of one HV therefore says how much the front rests on
a few archs, not where a "true" HV lies; the comparison between supernets is the paired difference (the same
resampled archs for both), whose percentile interval is the test: a difference whose interval excludes 0 is called
significant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from nasbench.space import SearchSpace, arch_id

__all__ = ["SupernetFront", "DbFronts", "importance_section", "compare_supernets", "training_section",
           "supernet_fronts", "paired_difference"]

_REPS = 1000
#: A supernet enters S2 when it was measured on at least this many of the archs it shares with the others.
MIN_SHARED = 30
#: ... and at least this share of the best-covered supernet's archs (S2).
MIN_SHARE_OF_TOP = 0.1


def _fmt_ci(value: float, low: float, high: float, digits: int = 3) -> str:
    return f"{value:.{digits}g} [{low:.{digits}g}, {high:.{digits}g}]"


def _fmt_range(f: "SupernetFront") -> str:
    return f"{f.hv:.3g} ({f.hv_low:.3g} to {f.hv_high:.3g})"


def _errors(center: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Matplotlib's non-negative error bar lengths (a resampled HV range may lie entirely below its HV)."""
    return np.array([np.maximum(center - low, 0.0), np.maximum(high - center, 0.0)])


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------------------------------------------------- S1


def importance_section(rpd_db: str | Path | None, out_dir: Path) -> str:
    """S1: RPD = mean over archs of (ppl_unsorted - ppl_sorted) / ppl_unsorted, per space and scheme."""
    from nasbench.stats import bootstrap_ci
    from nasbench.store import metric_values, space_names

    if rpd_db is None or not Path(rpd_db).is_file():
        return "No RPD study DB was given (`--rpd-db`), so S1 is not answered here.\n"
    rows = []
    for space in space_names(rpd_db):
        values = metric_values(rpd_db, space, "ppl", task="wikitext2-512")
        before = {a: v["value"] for (s, a), v in values.items() if s == "pretrained"}
        for scheme in sorted({s for s, _ in values if s.startswith("sorted-")}):
            pairs = [(before[a], v["value"]) for (s, a), v in values.items() if s == scheme and a in before]
            if len(pairs) < 2:
                continue
            b, a = np.array(pairs).T
            rpd = (b - a) / b
            low, high = bootstrap_ci(lambda idx: float(rpd[idx].mean()), len(rpd), reps=_REPS)
            rows.append((space, scheme.removeprefix("sorted-"), len(rpd), float(rpd.mean()), low, high,
                         float(np.median(rpd)), float((rpd > 0).mean())))
    if not rows:
        return f"`{Path(rpd_db).as_posix()}` holds no RPD rows (pretrained and sorted-* perplexities).\n"
    lines = [f"From `{Path(rpd_db).as_posix()}` (`nasbench bench rpd`): per arch, RPD = (ppl unsorted - ppl "
             "sorted) / ppl unsorted on the same sub-network (1 = sorting removed all of the excess perplexity, < 0 = "
             "sorting made it worse); mean with a 95% bootstrap interval over archs.", "",
             "| space | scheme (batch-sequence, layers) | archs | RPD mean [95% CI] | median | archs improved |",
             "|---|---|---|---|---|---|"]
    for space, scheme, n, mean, low, high, median, share in rows:
        lines.append(f"| {space} | {scheme} | {n} | {_fmt_ci(mean, low, high)} | {median:.3g} | {share:.0%} |")
    best = max(rows, key=lambda r: r[3])
    worst = min(rows, key=lambda r: r[3])
    helps = sum(r[4] > 0 for r in rows)
    lines += ["", f"Sorting reduces perplexity significantly (RPD interval above 0) for {helps} of {len(rows)} "
                  f"(space, scheme) pairs; the best, {best[1]} on {best[0]}, has RPD {_fmt_ci(*best[3:6])} and "
                  f"improves {best[7]:.0%} of {best[2]} archs; the weakest, {worst[1]} on {worst[0]}, "
                  f"{_fmt_ci(*worst[3:6])} (its median, {worst[6]:.3g}, shows that a few archs made much worse "
                  "drive the mean).", ""]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 0.6 + 0.32 * len(rows)), dpi=110)
    y = np.arange(len(rows))
    means = np.array([r[3] for r in rows])
    err = np.array([[r[3] - r[4] for r in rows], [r[5] - r[3] for r in rows]])
    ax.barh(y, means, xerr=err, color="tab:blue", alpha=0.7, capsize=3)
    ax.set_yticks(y, [f"{r[0]}: {r[1]}" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("RPD (mean, 95% bootstrap CI)")
    ax.set_title("S1: importance sorting, relative perplexity decrease", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "importance-rpd.png")
    plt.close(fig)
    lines += ["![importance RPD](importance-rpd.png)", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------- S2


@dataclass(frozen=True)
class SupernetFront:
    """One supernet on the shared archs: its (params share, ln ppl) points, hypervolume and 95% interval."""

    supernet: str
    strategy: str | None
    kd: str | None
    tokens: int | None
    points: np.ndarray
    hv: float
    hv_low: float
    hv_high: float
    ref: np.ndarray


def _hv(points: np.ndarray, ref: np.ndarray) -> float:
    from nasbench.pareto import hypervolume

    return hypervolume(points, ref)


def supernet_fronts(db: str | Path, space: SearchSpace) -> tuple[list[SupernetFront], int, dict[str, float],
                                                                  dict[str, int]]:
    """The space's non-baseline supernets in ``db`` on the archs they share: fronts with paired-bootstrap HV
    intervals; also the paired interval of each supernet's HV minus the best one's (``{supernet: (diff, low,
    high)}`` in the third item, keyed by supernet) and the supernets left out (``{supernet: archs measured}``)."""
    from nasbench.store import arch_params, metric_values, supernet_rows

    values = metric_values(db, space.name, "ppl")
    by_supernet: dict[str, dict[str, float]] = {}
    for (s, a), v in values.items():
        if not s.startswith("baseline-") and v["value"] is not None and math.isfinite(v["value"]):
            by_supernet.setdefault(s, {})[a] = float(v["value"])
    # the group of supernets that share enough archs: start from the best-covered one; a supernet joins only if the
    # group keeps MIN_SHARED archs and a MIN_SHARE_OF_TOP share of the best-covered supernet's (a piece measured on
    # its 34 band archs would otherwise cut a 501-arch comparison down to two params shares); the ones left out are
    # named
    order = sorted(by_supernet, key=lambda s: (-len(by_supernet[s]), s))
    floor = max(MIN_SHARED, MIN_SHARE_OF_TOP * len(by_supernet[order[0]])) if order else MIN_SHARED
    chosen: list[str] = []
    shared: set[str] = set()
    left_out: dict[str, int] = {}
    for s in order:
        common = set(by_supernet[s]) if not chosen else shared & set(by_supernet[s])
        if len(common) >= floor:
            chosen.append(s)
            shared = common
        else:
            left_out[s] = len(by_supernet[s])
    if len(chosen) < 2:
        return [], len(shared), {}, left_out
    params = arch_params(db, space.name)
    full = space.params(space.largest())
    archs = sorted(a for a in shared if a in params and a != arch_id(space.largest()))
    share = np.array([params[a] / full for a in archs])
    ref = np.array([1.0, math.log(space.reference.vocab_size)])
    meta = {r["id"]: r for r in supernet_rows(db, space.name)}
    pts = {s: np.column_stack([share, np.log([by_supernet[s][a] for a in archs])]) for s in chosen}
    hv = {s: _hv(pts[s], ref) for s in chosen}
    from nasbench.stats import bootstrap_ci

    fronts = []
    for s in chosen:
        low, high = bootstrap_ci(lambda idx, s=s: _hv(pts[s][idx], ref), len(archs), reps=_REPS)
        row = meta.get(s, {})
        fronts.append(SupernetFront(s, row.get("strategy"), row.get("kd"), row.get("tokens"), pts[s], hv[s], low,
                                    high, ref))
    fronts.sort(key=lambda f: -f.hv)
    diffs = {f.supernet: paired_difference(f, fronts[0]) for f in fronts[1:]}
    return fronts, len(archs), diffs, left_out


def paired_difference(a: SupernetFront, b: SupernetFront) -> tuple[float, float, float]:
    """HV(a) - HV(b) on the same archs, with the 95% interval of the paired bootstrap (the same resampled archs)."""
    from nasbench.stats import bootstrap_ci

    low, high = bootstrap_ci(lambda idx: _hv(a.points[idx], a.ref) - _hv(b.points[idx], b.ref), len(a.points),
                             reps=_REPS)
    return a.hv - b.hv, low, high


def _trained(f: SupernetFront) -> bool:
    """Fine-tuned (an importance-sorted supernet records its calibration tokens, but was not trained)."""
    return bool(f.tokens) and f.strategy not in (None, "importance-sorted")


def _describe(f: SupernetFront) -> str:
    if f.supernet == "pretrained":
        return "pretrained, unsorted (no training)"
    if not _trained(f):
        return f"`{f.supernet}` (importance-sorted, no training)"
    return f"`{f.supernet}` ({f.strategy}, kd {f.kd}, {f.tokens:,} tokens)"


def _plot_fronts(fronts: Sequence[SupernetFront], out: Path, title: str) -> None:
    from nasbench.pareto import non_dominated_mask

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for i, f in enumerate(fronts):
        color = f"C{i}"
        ax.scatter(f.points[:, 0], np.exp(f.points[:, 1]), s=4, alpha=0.25, color=color)
        front = f.points[non_dominated_mask(f.points)]
        front = front[np.argsort(front[:, 0])]
        ax.step(front[:, 0], np.exp(front[:, 1]), where="post", color=color, lw=1.6,
                label=f"{f.supernet}: HV {f.hv:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("params / full model's params")
    ax.set_ylabel("perplexity (WikiText-2 test)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


@dataclass(frozen=True)
class DbFronts:
    """One DB's supernets on their shared archs (:func:`supernet_fronts`), computed once for S2, S3 and S4."""

    label: str
    db: Path
    fronts: list[SupernetFront]
    shared: int
    diffs: dict[str, tuple[float, float, float]]
    left_out: dict[str, int]
    """Supernets measured on too few of the shared archs to join: ``{supernet: archs measured}``."""


def compare_supernets(dbs: Sequence[tuple[str, str | Path]], space: SearchSpace) -> list[DbFronts]:
    return [DbFronts(label, Path(db), *supernet_fronts(db, space)) for label, db in dbs]


def training_section(compared: Sequence[DbFronts], space: SearchSpace, out_dir: Path) -> str:
    """S2: per DB, the supernets on their shared archs: HV with 95% bootstrap intervals and the paired difference to
    the best, how well each ranks the archs as the best does; the fronts as a figure."""
    from nasbench.stats import agreement

    lines = ["Per DB, every supernet measured on the same archs (at least "
             f"{MIN_SHARED} shared): the hypervolume of its (params share, ln perplexity) front, reference point (1, "
             f"ln {space.reference.vocab_size:,}) — smaller than the full model and better than uniform guessing. "
             "The difference to the best front is bootstrapped over archs, paired (the same resampled archs for "
             "both): an interval that excludes 0 is a significant difference. A single front's resampled range "
             "lies below its HV by construction (a resample holds fewer distinct archs).", ""]
    for k, c in enumerate(compared):
        label, db, fronts, n, diffs = c.label, c.db, c.fronts, c.shared, c.diffs
        if not fronts:
            lines += [f"`{Path(db).as_posix()}` ({label}): fewer than two supernets share {MIN_SHARED} measured "
                      f"archs ({n} shared), so S2 is not answered from it.", ""]
            continue
        lines += [f"**{label}** (`{Path(db).as_posix()}`, {n} shared archs):", "",
                  "| supernet | HV (resampled 95% range) | HV minus the best's, paired [95% CI] |", "|---|---|---|"]
        for f in fronts:
            d = diffs.get(f.supernet)
            lines.append(f"| {_describe(f)} | {_fmt_range(f)} | "
                         f"{_fmt_ci(*d) if d else 'best'} |")
        best, rest = fronts[0], fronts[1:]
        lines.append("")
        sentence = [f"The best front is {_describe(best)}'s"]
        for f in rest:
            d, low, high = diffs[f.supernet]
            verdict = "significantly" if high < 0 else "not significantly"
            sentence.append(f"{_describe(f)} is {verdict} worse by {-d:.3g} [{-high:.3g}, {-low:.3g}]")
        lines += ["; ".join(sentence) + ".", ""]
        # whether a supernet trained less (or not at all) ranks the archs as the best one does: a benchmark's
        # conclusions about archs hold across training budgets only as far as this agreement goes
        taus = [(f, agreement(f.points[:, 1], best.points[:, 1])["kendall_tau"]) for f in rest]
        lines += [f"Rank agreement with {_describe(best)} (Kendall tau of perplexity on the {n:,} shared archs): "
                  + "; ".join(f"{_describe(f)} {tau:.3f}" for f, tau in taus) + ".", ""]
        if c.left_out:
            lines += [f"Left out (measured on too few of these archs; a supernet joins only if the group keeps "
                      f"{MIN_SHARED} shared archs and {MIN_SHARE_OF_TOP:.0%} of the best-covered supernet's): "
                      + ", ".join(f"`{s}` ({m:,} archs)" for s, m in c.left_out.items()) + ".", ""]
        name = f"supernet-fronts-{k}.png"
        _plot_fronts(fronts, out_dir / name, f"S2: {label}, {n} shared archs")
        lines += [f"![supernet fronts]({name})", ""]
    return "\n".join(lines)
