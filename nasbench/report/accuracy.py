"""Which lm-eval tasks carry signal about a sub-network, from the DB only.

A task carries signal when its accuracy moves with the sub-network by more than its items' sampling error and in
the direction perplexity says. Per task, over the archs of one supernet that have accuracy on every task it was
evaluated on: how far above chance the archs are, the spread across archs against the items' standard error, and
the rank correlation with ln(perplexity) with a bootstrap interval over archs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from nasbench.report._common import BOOTSTRAP
from nasbench.space import SearchSpace

__all__ = ["MIN_ARCHS", "accuracy_section", "plot_accuracy"]

#: Archs with accuracy on every task a supernet's verdicts need (fewer: the counts are shown, no verdict).
MIN_ARCHS = 8


def _extra(text: Any) -> dict[str, Any]:
    try:
        return json.loads(text) if isinstance(text, str) else dict(text or {})
    except (TypeError, ValueError):
        return {}


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho; NaN below 3 archs (a bootstrap resample may draw one arch three times)."""
    from nasbench.stats import spearman

    return spearman(x, y) if len(x) >= 3 else float("nan")


def _complete(db: str | Path, space: SearchSpace) -> tuple[str, list[str], dict[str, dict[str, dict[str, Any]]]]:
    """The supernet (not a baseline) with the most archs that have ``acc`` on every one of its tasks, those tasks,
    and ``{task: {arch_id: {value, stderr, items}}}`` for those archs."""
    from nasbench.store import coverage, metric_values

    counts: dict[str, dict[str, int]] = {}
    for r in coverage(db, space.name):
        if r["metric"] == "acc" and r["task"] and not r["supernet_id"].startswith("baseline-"):
            task_archs = counts.setdefault(r["supernet_id"], {})
            task_archs[r["task"]] = task_archs.get(r["task"], 0) + r["archs"]
    # a supernet's tasks: those measured on at least half as many archs as its most measured one (a task tried on a
    # few archs does not shrink the set every verdict rests on)
    tasks_of = {s: [t for t, k in c.items() if 2 * k >= max(c.values())] for s, c in counts.items()}
    best: tuple[str, list[str], dict[str, dict[str, dict[str, Any]]]] = ("", [], {})
    best_n = -1
    for supernet, tasks in sorted(tasks_of.items()):
        tasks = sorted(set(tasks))
        rows: dict[str, dict[str, dict[str, Any]]] = {}
        for task in tasks:
            rows[task] = {}
            for (s, a), v in metric_values(db, space.name, "acc", task=task).items():
                if s == supernet and v["value"] is not None:
                    extra = _extra(v["extra"])
                    rows[task][a] = {"value": v["value"], "stderr": extra.get("stderr"), "items": extra.get("items")}
        archs = set.intersection(*(set(r) for r in rows.values()))
        if len(archs) > best_n:  # ties: the first id
            best, best_n = (supernet, tasks, {t: {a: r[a] for a in archs} for t, r in rows.items()}), len(archs)
    return best


def accuracy_section(db: str | Path, space: SearchSpace, out_dir: str | Path | None = None) -> str:
    """The per-task table and its verdicts (see the module docstring); with ``out_dir``, also ``accuracy.png``
    there (:func:`plot_accuracy`) and its link."""
    from nasbench.metrics import CHANCE
    from nasbench.stats import bootstrap_ci
    from nasbench.store import metric_values

    supernet, tasks, rows = _complete(db, space)
    archs = sorted(set.intersection(*(set(r) for r in rows.values()))) if rows else []
    if len(archs) < 3:
        return ("No supernet has accuracy on every one of its tasks for 3 or more archs yet, so no task can be "
                "judged.\n")
    ppl = {a: v["value"] for (s, a), v in metric_values(db, space.name, "ppl", archs).items() if s == supernet}
    archs = [a for a in archs if ppl.get(a)]
    log_ppl = np.log([ppl[a] for a in archs])
    n = len(archs)
    items = sorted({rows[t][a]["items"] for t in tasks for a in archs if rows[t][a]["items"]})
    out = [f"`{supernet}`: {n} archs with accuracy on all of {', '.join(tasks)} "
           f"({'/'.join(str(i) for i in items) or '?'} items per task) and perplexity. Per task: chance is uniform "
           "guessing; SE the items' standard error of one arch's accuracy (median over archs); spread the standard "
           "deviation of accuracy across archs; above chance the archs whose accuracy exceeds chance by more than "
           "2 SE; rho the Spearman correlation of accuracy with ln(perplexity) over archs (negative: lower "
           f"perplexity, higher accuracy), 95% bootstrap interval over archs ({BOOTSTRAP:,} resamples).", "",
           "| task | chance | mean acc [min, max] | SE | spread | spread / SE | above chance | rho with ln ppl "
           "[95% CI] | signal |", "|---|---|---|---|---|---|---|---|---|"]
    verdicts: dict[str, str] = {}
    columns: dict[str, np.ndarray] = {}
    for task in tasks:
        acc = np.array([rows[task][a]["value"] for a in archs], dtype=np.float64)
        columns[task] = acc
        se = float(np.median([rows[task][a]["stderr"] or math.nan for a in archs]))
        chance = CHANCE.get(task)
        above = int(np.sum(acc - chance > 2 * se)) if chance is not None and se == se else None
        below = int(np.sum(chance - acc > 2 * se)) if chance is not None and se == se else 0
        rho = _spearman(acc, log_ppl)
        low, high = bootstrap_ci(lambda idx: _spearman(acc[idx], log_ppl[idx]), n, reps=BOOTSTRAP)
        spread = float(np.std(acc, ddof=1)) if n > 1 else math.nan
        ranks = high < 0  # the whole interval below 0: accuracy follows perplexity across archs
        near_chance = above is not None and above < n / 2
        if n < MIN_ARCHS:
            verdict = "too few archs"
        elif ranks and below >= n / 2:  # ranks, but systematically wrong: the distractors attract the model
            verdict = "weak: below chance"
        elif ranks:
            verdict = "weak: near chance" if near_chance else "yes"
        elif below >= n / 2:
            verdict = "no: below chance"
        else:
            verdict = "no: at chance" if near_chance else "no: not tied to perplexity"
        verdicts[task] = verdict
        out.append(f"| {task} | {'-' if chance is None else f'{chance:.3g}'} | {acc.mean():.3f} [{acc.min():.3f}, "
                   f"{acc.max():.3f}] | {se:.3f} | {spread:.3f} | {spread / se:.2f} | "
                   f"{'-' if above is None else f'{above}/{n}'} | {rho:+.2f} [{low:+.2f}, {high:+.2f}] | "
                   f"{verdict} |")
    out += ["", f"A task carries signal (\"yes\") when the whole interval of rho lies below 0 (its accuracy ranks "
                f"archs as perplexity does) and at least half the archs are above chance; \"weak\" when it ranks but "
                f"most archs are within 2 SE of chance or below it; \"no\" when the interval includes 0 (needs "
                f"{MIN_ARCHS}+ archs); \"below chance\" when most archs are more than 2 SE under chance "
                "(systematically drawn to a wrong choice: ARC-Challenge holds by construction the questions that a "
                "retrieval and a word co-occurrence solver both got wrong). The spread across archs can stay below "
                "one arch's SE while rho is clear: the archs answer the same items, so their item noise is shared."]
    signal = [t for t, v in verdicts.items() if v == "yes"]
    weak = [f"{t} ({v.removeprefix('weak: ')})" for t, v in verdicts.items() if v.startswith("weak")]
    without = [f"{t} ({v.removeprefix('no: ')})" for t, v in verdicts.items() if v.startswith(("no", "too"))]
    out.append(f"- Tasks with signal on this supernet: {', '.join(signal) if signal else 'none'}; weak (ranks, "
               f"but near or below chance): {', '.join(weak) or 'none'}; without: {', '.join(without) or 'none'}.")
    for name, values in (("acc_avg", np.mean([columns[t] for t in tasks], axis=0)),
                         ("acc_chance_avg", np.mean([(columns[t] - CHANCE[t]) / (1 - CHANCE[t]) for t in tasks
                                                     if t in CHANCE], axis=0) if all(t in CHANCE for t in tasks)
                          else None)):
        if values is None:
            continue
        rho = _spearman(values, log_ppl)
        low, high = bootstrap_ci(lambda idx: _spearman(values[idx], log_ppl[idx]), n, reps=BOOTSTRAP)
        out.append(f"- `{name}` over all {len(tasks)} tasks: {values.mean():.3f} [{values.min():.3f}, "
                   f"{values.max():.3f}], rho with ln ppl {rho:+.2f} [{low:+.2f}, {high:+.2f}].")
    if signal and len(signal) < len(tasks):
        values = np.mean([(columns[t] - CHANCE[t]) / (1 - CHANCE[t]) for t in signal], axis=0)
        rho = _spearman(values, log_ppl)
        low, high = bootstrap_ci(lambda idx: _spearman(values[idx], log_ppl[idx]), n, reps=BOOTSTRAP)
        out.append(f"- The chance-normalised average of the tasks with signal only: rho with ln ppl {rho:+.2f} "
                   f"[{low:+.2f}, {high:+.2f}].")
    if out_dir is not None:
        ses = {t: float(np.median([rows[t][a]["stderr"] or math.nan for a in archs])) for t in tasks}
        png = plot_accuracy(Path(out_dir) / "accuracy.png", supernet, np.exp(log_ppl), columns, ses, verdicts)
        out += ["", f"![accuracy against perplexity, per task]({png.name})"]
    return "\n".join(out) + "\n"


def plot_accuracy(out: Path, supernet: str, ppl: np.ndarray, accuracy: dict[str, np.ndarray],
                  stderr: dict[str, float], verdicts: dict[str, str]) -> Path:
    """One panel per task: each arch's accuracy against its perplexity (log scale), chance dashed and the band of
    chance +- 2 SE (one arch's items' standard error, median over archs) shaded; the title carries the verdict."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    from nasbench.metrics import CHANCE

    tasks = list(accuracy)
    cols = min(3, len(tasks))
    rows = (len(tasks) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.7 * rows), dpi=110, squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        chance = CHANCE.get(task)
        if chance is not None:
            ax.axhline(chance, color="gray", lw=0.8, ls="dashed")
            if stderr[task] == stderr[task]:
                ax.axhspan(chance - 2 * stderr[task], chance + 2 * stderr[task], color="gray", alpha=0.15, lw=0)
        ax.scatter(ppl, accuracy[task], s=9, color="tab:blue", alpha=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a log axis spanning < 2 decades overlap
        ax.set_title(f"{task}: {verdicts[task]}", fontsize=8)
        ax.set_xlabel("perplexity", fontsize=7)
        ax.set_ylabel("accuracy", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    fig.suptitle(f"{supernet}: {len(ppl)} archs (dashed: chance; shaded: chance +- 2 SE)", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, metadata={"Software": None})
    plt.close(fig)
    return out
