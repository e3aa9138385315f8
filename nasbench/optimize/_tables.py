"""The comparison report: HV-vs-time curves (mean +- stderr over seeds), final fronts, an HV table.

Everything is read back from the ``runs`` / ``run_traces`` tables, so a report can be redrawn from a DB without
rerunning anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nasbench.cards import table_rule
from nasbench.errors import NasBenchError
from nasbench.metrics import metric_column
from nasbench.optimize.methods import METHODS
from nasbench.pareto import non_dominated_mask, objective_directions

__all__ = ["load_runs", "hv_curves", "write_report"]


def load_runs(db: str | Path, space: str, objectives: Sequence[str], mode: str | None = None,
              supernet_id: str | None = None, run_ids: Sequence[str] | None = None) -> tuple[Any, Any]:
    """``runs`` and ``run_traces`` rows of one space and objective set (read-only), as DataFrames; ``run_ids``
    keeps one comparison's runs (a DB may hold several with other budgets)."""
    from nasbench.store.runs import load_runs as read_runs

    runs, traces = read_runs(db, space, objectives, mode, supernet_id, run_ids)
    if runs.empty:
        raise NasBenchError("runs_db", f"no runs for this space and objectives in {db}",
                            (space, ",".join(objectives), mode))
    return runs, traces


def hv_curves(runs: Any, traces: Any, column: str = "hv", points: int = 200, x: str = "sim_time_s") -> dict:
    """Per method: a common grid of ``x`` and mean / standard error over seeds of the best-so-far ``column``.

    Each run's trace is a step function of ``x`` (the value after the last evaluation finished by then), so runs
    with different evaluation times are averaged on one grid. Before a run's first evaluation its value is 0.
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    if traces.empty:
        return out
    top = float(traces[x].max())
    start = float(traces[x][traces[x] > 0].min()) if (traces[x] > 0).any() else 1.0
    grid = np.geomspace(start, top, points) if x == "sim_time_s" and top > start else np.linspace(1, top, points)
    method_of = dict(zip(runs["run_id"], runs["method"]))
    per_method: dict[str, list[np.ndarray]] = {}
    for rid, t in traces.groupby("run_id", sort=False):
        t = t.sort_values("eval")
        values = t[column].to_numpy(dtype=float)
        idx = np.searchsorted(t[x].to_numpy(dtype=float), grid, side="right") - 1
        per_method.setdefault(method_of[rid], []).append(np.where(idx >= 0, values[np.maximum(idx, 0)], 0.0))
    for method, curves in per_method.items():
        Y = np.vstack(curves)
        stderr = Y.std(axis=0, ddof=1) / np.sqrt(len(Y)) if len(Y) > 1 else np.zeros(Y.shape[1])
        out[method] = {"x": grid, "mean": Y.mean(axis=0), "stderr": stderr, "n": len(Y)}
    return out


def _order(methods: Sequence[str]) -> list[str]:
    known = [m for m in METHODS if m in methods]
    return known + sorted(m for m in methods if m not in METHODS)


def write_report(db: str | Path, space: str, objectives: Sequence[str], out_dir: str | Path,
                 mode: str | None = None, supernet_id: str | None = None,
                 run_ids: Sequence[str] | None = None) -> list[Path]:
    """Write ``hv_vs_time.png``, ``hv_vs_evals.png``, ``fronts.png``, ``hv_table.csv`` and ``hv_table.md``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, traces = load_runs(db, space, objectives, mode, supernet_id, run_ids)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    column = "hv_norm" if runs["hv_norm"].notna().all() else "hv"
    label = "HV / HV of the true front" if column == "hv_norm" else "hypervolume (normalised objectives)"
    for x, name, xlabel in (("sim_time_s", "hv_vs_time.png", "simulated time (s)"),
                            ("eval", "hv_vs_evals.png", "evaluations")):
        curves = hv_curves(runs, traces, column, x=x)
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for method in _order(list(curves)):
            c = curves[method]
            ax.plot(c["x"], c["mean"], label=f"{method} (n={c['n']})")
            ax.fill_between(c["x"], c["mean"] - c["stderr"], c["mean"] + c["stderr"], alpha=0.2)
        if x == "sim_time_s":
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.set_title(f"{space}: {', '.join(objectives)} (mean ± stderr over seeds)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        written.append(out / name)
    written.append(_fronts_plot(runs, traces, objectives, out / "fronts.png", plt))
    table = (runs.groupby("method")
             .agg(runs=("seed", "count"), evals=("n_evals", "mean"), sim_time_s=("sim_time_s", "mean"),
                  hv_mean=(column, "mean"), hv_stderr=(column, lambda v: v.std(ddof=1) / np.sqrt(len(v))
                                                       if len(v) > 1 else 0.0),
                  igd_mean=("igd", "mean"), front_share_mean=("front_share", "mean"),
                  wall_s_per_run=("wall_time_s", "mean"))
             .reindex(_order(list(runs["method"].unique()))))
    table = table.rename(columns={"hv_mean": f"{column}_mean", "hv_stderr": f"{column}_stderr"})
    table.to_csv(out / "hv_table.csv")
    written.append(out / "hv_table.csv")
    (out / "hv_table.md").write_text(_markdown(table.reset_index()))
    written.append(out / "hv_table.md")
    return written


def _fronts_plot(runs: Any, traces: Any, objectives: Sequence[str], path: Path, plt: Any) -> Path:
    """Final front of each method (seed with the median final HV), first two objectives."""
    metrics = [metric_column(o) for o in objectives[:2]]
    minimize = objective_directions(objectives[:2])
    fig, ax = plt.subplots(figsize=(7, 5))
    for method in _order(list(runs["method"].unique())):
        r = runs[runs["method"] == method].sort_values("hv", kind="stable")
        rid = r["run_id"].iloc[(len(r) - 1) // 2]
        t = traces[traces["run_id"] == rid]
        if t.empty:
            continue
        Y = np.array([[json.loads(o)[m] for m in metrics] for o in t["objectives"]])
        F = Y[non_dominated_mask(Y, minimize)]
        F = F[np.argsort(F[:, 0])]
        ax.plot(F[:, 0], F[:, 1], "o-", ms=4, drawstyle="steps-post", label=method)
    ax.set_xlabel(objectives[0])
    ax.set_ylabel(objectives[1])
    for axis, name in ((ax.set_xscale, objectives[0]), (ax.set_yscale, objectives[1])):
        if name == "ppl":
            axis("log")  # compressed sub-networks' perplexities span orders of magnitude
    ax.set_title("final fronts (median-HV seed per method)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _markdown(df: Any) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(df.columns) + " |", table_rule(len(df.columns))]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"
