"""Statistics for comparing optimizers over seeds, plain numpy/scipy (Demšar 2006; Benavoli et al. 2016).

``scores`` is a ``[seeds, methods]`` matrix of a higher-is-better score (hypervolume). :func:`friedman` tests whether
the methods differ at all; :func:`average_ranks` and :func:`nemenyi_cd` give the critical-difference diagram
(:func:`cd_diagram`); :func:`versus_baseline` answers "does this method beat the baseline" per method with one-sided
Wilcoxon signed-rank tests, Holm-corrected over the methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

__all__ = ["Versus", "spearman", "friedman", "average_ranks", "nemenyi_cd", "versus_baseline", "holm", "cd_diagram",
           "bootstrap_ci", "agreement"]

# Studentized range q_alpha / sqrt(2) for the Nemenyi test at alpha = 0.05, k = 2..10 methods (Demšar 2006, Table 5)
_Q05 = {2: 1.960, 3: 2.343, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031, 9: 3.102, 10: 3.164}


def bootstrap_ci(statistic: Callable[[np.ndarray], float], n: int, *, reps: int = 1000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile interval of ``statistic(idx)`` over ``reps`` resamples ``idx`` of ``range(n)`` with replacement.

    Seeded, so a report regenerated from the same data has the same bytes. Pass one index array to several paired
    statistics by resampling inside ``statistic``'s closure over shared data (the same archs for every supernet).
    Non-finite resample values are dropped (a resample without any arch inside a hypervolume box, say).
    """
    if n < 1:
        raise ValueError(f"a bootstrap needs at least one observation, got n={n}")
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, n)) for _ in range(reps)], dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan")
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def _matrix(scores: np.ndarray) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2 or not np.isfinite(x).all():
        raise ValueError(f"scores must be a finite [seeds >= 2, methods >= 2] matrix, got shape {x.shape}")
    return x


def friedman(scores: np.ndarray) -> tuple[float, float]:
    """(chi-square statistic, p-value) of the Friedman test that all methods score alike (seeds are blocks)."""
    from scipy.stats import friedmanchisquare

    x = _matrix(scores)
    if x.shape[1] < 3:  # Friedman needs 3+ methods; for two, the Wilcoxon test is the same question
        from scipy.stats import wilcoxon

        diff = x[:, 0] - x[:, 1]
        if not np.any(diff):
            return 0.0, 1.0
        result = wilcoxon(x[:, 0], x[:, 1])
        return float(result.statistic), float(result.pvalue)
    if np.all(x == x[:, :1]):
        return 0.0, 1.0
    result = friedmanchisquare(*x.T)
    return float(result.statistic), float(result.pvalue)


def average_ranks(scores: np.ndarray) -> np.ndarray:
    """Each method's mean rank over seeds, 1 = best (highest score); ties share their mean rank."""
    from scipy.stats import rankdata

    x = _matrix(scores)
    return np.mean([rankdata(-row) for row in x], axis=0)


def nemenyi_cd(k: int, n: int) -> float:
    """Critical difference of average ranks at alpha = 0.05 for ``k`` methods over ``n`` seeds."""
    if k not in _Q05:
        raise ValueError(f"the Nemenyi table covers 2..10 methods, got {k}")
    return _Q05[k] * float(np.sqrt(k * (k + 1) / (6.0 * n)))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    p = np.asarray(pvalues, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty_like(p)
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, (len(p) - i) * p[j])
        adjusted[j] = min(1.0, running)
    return adjusted


@dataclass(frozen=True)
class Versus:
    method: str
    median_difference: float
    """Median over seeds of (method - baseline)."""
    wins: int
    """Seeds where the method scored above the baseline."""
    p: float
    """One-sided Wilcoxon signed-rank p-value (method > baseline)."""
    p_holm: float
    significant: bool
    """``p_holm < alpha``."""


def versus_baseline(scores: np.ndarray, methods: Sequence[str], baseline: str = "rs",
                    alpha: float = 0.05) -> list[Versus]:
    """Does each method beat ``baseline``? One-sided Wilcoxon per method, Holm over the methods."""
    from scipy.stats import wilcoxon

    x = _matrix(scores)
    methods = list(methods)
    if baseline not in methods:
        raise ValueError(f"the baseline {baseline!r} is not among the methods {methods}")
    b = x[:, methods.index(baseline)]
    others = [m for m in methods if m != baseline]
    raw = []
    for m in others:
        diff = x[:, methods.index(m)] - b
        raw.append(1.0 if not np.any(diff) else float(wilcoxon(diff, alternative="greater").pvalue))
    adjusted = holm(raw) if raw else np.array([])
    return [Versus(m, float(np.median(x[:, methods.index(m)] - b)), int(np.sum(x[:, methods.index(m)] > b)),
                   raw[i], float(adjusted[i]), bool(adjusted[i] < alpha)) for i, m in enumerate(others)]


def cd_diagram(ranks: np.ndarray, methods: Sequence[str], cd: float, out: Path, title: str = "") -> Path:
    """A critical-difference diagram: methods on the average-rank axis, the CD as a bar, and thick lines joining
    methods whose ranks differ by less than the CD (not significantly different)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(methods)
    order = np.argsort(ranks, kind="stable")
    fig, ax = plt.subplots(figsize=(6.4, 1.2 + 0.28 * k), dpi=110)
    ax.set_xlim(k + 0.3, 0.7)  # rank 1 (best) on the right, as in Demšar's diagrams
    ax.set_ylim(-k - 1, 2)
    ax.axhline(0, color="black", lw=1)
    for r in range(1, k + 1):
        ax.plot([r, r], [0, 0.15], color="black", lw=1)
        ax.text(r, 0.3, str(r), ha="center", fontsize=8)
    for i, j in enumerate(order):
        y = -1 - i
        ax.plot([ranks[j], ranks[j]], [0, y], color="gray", lw=0.7)
        ax.text(ranks[j], y - 0.15, f"{methods[j]} ({ranks[j]:.2f})", ha="center", va="top", fontsize=8)
    cliques = []
    for a in range(k):
        b = a
        while b + 1 < k and ranks[order[b + 1]] - ranks[order[a]] < cd:
            b += 1
        if b > a and not any(c[0] <= a and b <= c[1] for c in cliques):
            cliques.append((a, b))
    for n, (a, b) in enumerate(cliques):
        ax.plot([ranks[order[a]], ranks[order[b]]], [-0.5 - 0.25 * n] * 2, color="black", lw=3)
    ax.plot([k + 0.2 - cd, k + 0.2], [1.3, 1.3], color="tab:red", lw=2)
    ax.text(k + 0.2 - cd / 2, 1.5, f"CD = {cd:.2f}", ha="center", fontsize=8, color="tab:red")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, metadata={"Software": None})
    plt.close(fig)
    return out


def agreement(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """How well two measurements of the same items agree: Kendall tau (the ceiling of any surrogate's tau on such
    data), Pearson r, and the median and 90th percentile of ``|a / b - 1|``."""
    from scipy.stats import kendalltau, pearsonr

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    rel = np.abs(x / y - 1.0)
    return {"n": int(len(x)), "kendall_tau": float(kendalltau(x, y)[0]), "pearson_r": float(pearsonr(x, y)[0]),
            "median_rel_diff": float(np.median(rel)), "p90_rel_diff": float(np.percentile(rel, 90))}


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation of two paired samples; NaN where it is undefined (a constant sample), without
    scipy's warning."""
    import warnings

    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(a, b).statistic)
