"""Offline Pareto analysis, the last stage: the front and knee of the measured rows of a benchmark DB, and its plot.

Fronts come from measured rows only, never from a surrogate: the arch_id they name is a sub-network that was actually
profiled, ready for ``nasbench export``. Its numpy core is the rest of :mod:`nasbench.pareto`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nasbench.errors import NasBenchError
from nasbench.metrics import LOG_SCALE, METRIC_PREFIX, metric_column, metric_name
from nasbench.pareto._front import knee_point, non_dominated_mask, objective_directions, pareto_front
from nasbench.store.filter import filter_rows

__all__ = ["MeasuredFront", "measured_front", "plot_front", "baseline_points", "BASELINE_MARKERS"]

#: One marker per baseline model in the front plots (NAS archs are dots): squares, triangles, diamonds, ...
BASELINE_MARKERS = ("s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p", "8")


# ------------------------------------------------------------------------------------------------- measured fronts
@dataclass(frozen=True)
class MeasuredFront:
    """The Pareto front of measured rows of one space."""

    objectives: tuple[str, ...]
    """Metric names without the ``metric_`` prefix, in column order."""
    minimize: tuple[bool, ...]
    rows: Any
    """pandas DataFrame of every candidate row that passed the filter (``arch_id``, ``hp_*``, ``metric_*``), with a
    boolean ``pareto`` column."""
    front: Any
    """The non-dominated rows only, sorted by the first objective, with a boolean ``knee`` column."""
    knee_arch_id: str
    """arch_id of the knee point: feed it to ``nasbench export``."""
    db: str | None = None
    """The DB and space the rows came from (the plot reads the baselines beside them)."""
    space: str | None = None
    device: str | None = None
    supernet_id: str | None = None
    """The supernet the rows were measured on (the DB's main supernet when none was asked for)."""


def measured_front(db: str | Path, space: str, objectives: Sequence[str], where: str | None = None,
                   supernet_id: str | None = None, device: str | None = None) -> MeasuredFront:
    """Front over the measured archs of one (space, supernet) in ``db`` (read-only), optionally filtered;
    ``supernet_id`` defaults to the DB's main supernet of the space.

    The rows are :meth:`nasbench.surrogate.Benchmark.measured`: measured values only, never a prediction (latency and
    memory, measured once on the dense model, are shared by every supernet; ``acc_avg`` is available). ``where`` is a
    filter over its columns (``"metric_latency_ms < 200 AND hp_n_layers >= 20"``, see
    :func:`nasbench.store.filter.parse_filter`): parsed by nasbench, its column names checked and its values bound as
    parameters, never pasted into SQL; it runs on an in-memory copy that cannot touch any file. Rows missing any
    objective are left out (never imputed).
    """
    from nasbench.surrogate import Benchmark

    names = [metric_name(o) for o in objectives]
    if len(names) < 2:
        raise NasBenchError("objectives", "a front needs at least two objectives", list(objectives))
    bm = Benchmark.open(db, space, supernet_id, device=device, cache=None)
    table = bm.measured()
    columns = [metric_column(o) for o in names]
    missing = [c for c in columns if c not in table.columns]
    if missing:
        known = [metric_name(c) for c in table.columns if c.startswith(METRIC_PREFIX)]
        raise NasBenchError("objectives", "metrics not measured here; " + bm.unknown_rule(
            metric_name(missing[0]), known).replace("must be among", "known:", 1),
                            ",".join(metric_name(c) for c in missing))
    df = filter_rows(table, columns, where)
    if df.empty:
        raise NasBenchError("where", "no measured rows left after the filter", where)
    minimize = objective_directions(names)
    Y = df[columns].to_numpy(dtype=float)
    mask = non_dominated_mask(Y, minimize)
    df = df.assign(pareto=mask)
    order = pareto_front(Y, minimize)
    # the knee is found on ln(ppl), as the comparison measures fronts: sub-network perplexities span orders of
    # magnitude and on a linear scale the knee would sit wherever the largest perplexity is
    logged = np.array([o in LOG_SCALE and (Y[:, i] > 0).all() for i, o in enumerate(names)])
    knee = knee_point(np.where(logged, np.log(np.where(logged, Y, 1.0)), Y), minimize)
    front = df.iloc[order].assign(knee=lambda d: d.index == df.index[knee]).reset_index(drop=True)
    return MeasuredFront(tuple(names), tuple(minimize), df, front, str(df["arch_id"].iloc[knee]), str(db),
                         bm.space.name, device, bm.supernet_id)



def baseline_points(db: str | Path, space: str, objectives: Sequence[str],
                    device: str | None = None) -> dict[str, list[tuple[float, ...]]]:
    """``{method: [(objective values), ...]}`` of the baseline models (``nasbench baseline``) that have every
    objective measured: their own rows in the DB, never a prediction. ``params`` is a baseline's dense stored count
    (a 2:4 model keeps every weight), as the sub-networks' ``metric_params``."""
    from nasbench.store import baseline_rows

    names = [metric_name(o) for o in objectives]
    out: dict[str, list[tuple[float, ...]]] = {}
    for row in baseline_rows(db, space, device):
        values = [row["values"].get(n) for n in names]
        if all(v is not None for v in values):
            out.setdefault(row["method"], []).append(tuple(float(v) for v in values))
    return out


def plot_front(result: MeasuredFront, out: str | Path, title: str | None = None, baselines: bool = True) -> Path:
    """Scatter of all filtered rows, the front as a step line and the knee marked (first two objectives); with
    ``baselines``, every baseline model of the DB with both objectives measured, one marker per method, in the same
    legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = (metric_column(o) for o in result.objectives[:2])
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    ax.scatter(result.rows[x], result.rows[y], s=12, c="0.7", label="NAS sub-networks (measured)")
    ax.plot(result.front[x], result.front[y], "o-", ms=5, drawstyle="steps-post", label="NAS Pareto front")
    knee = result.front[result.front["knee"]]
    ax.scatter(knee[x], knee[y], s=160, facecolors="none", edgecolors="red", linewidths=2,
               label=f"knee {result.knee_arch_id}")
    points = (baseline_points(result.db, result.space, result.objectives[:2], result.device)
              if baselines and result.db and result.space else {})
    colors = plt.get_cmap("tab10")
    for i, (method, values) in enumerate(sorted(points.items())):
        xs, ys = zip(*values)
        ax.scatter(xs, ys, s=46, marker=BASELINE_MARKERS[i % len(BASELINE_MARKERS)], color=colors(i % 10),
                   edgecolors="black", linewidths=0.5, zorder=3, label=f"baseline {method}" +
                   (f" ({len(values)} archs)" if len(values) > 1 else ""))
    ax.set_xlabel(result.objectives[0])
    ax.set_ylabel(result.objectives[1])
    if result.objectives[1] == "ppl" or result.objectives[0] == "ppl":
        # Perplexities of compressed sub-networks span orders of magnitude.
        (ax.set_yscale if result.objectives[1] == "ppl" else ax.set_xscale)("log")
    ax.set_title(title or " vs ".join(result.objectives[:2]))
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, metadata={"Software": None})
    plt.close(fig)
    return out
