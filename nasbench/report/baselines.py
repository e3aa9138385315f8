"""The report's ``baselines`` section: the seed's Table 1 rebuilt for the space (methods x params, CPU latency,
perplexity, accuracy per task) and, per baseline, whether NAS wins at matched params and at matched latency."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from nasbench.cards import table_rule
from nasbench.errors import NasBenchError
from nasbench.report._common import BOOTSTRAP as _BOOTSTRAP
from nasbench.report._common import fmt_p as _fmt_p
from nasbench.report._common import fmt_ratio as _fmt
from nasbench.space import SearchSpace, arch_id

__all__ = ["TABLE_SHARES", "baseline_section"]


#: The trained supernet's shares of the full model's params the Table shows NAS rows at (the recovery bands).
TABLE_SHARES = (0.75, 0.5)
#: The NAS side of a comparison is a compressed model: at most this share of the full model's params (the full model
#: and its near-copies would otherwise "win" at every budget above their own).
MAX_SHARE = 0.95
_LATENCY_NOTE = ("CPU latency: wall clock of the dense model as it runs (`latency_wall_ms`: prefill 1 x 128 tokens; "
                 "decode per token with the KV cache), measured on this machine's CPU, on both sides: the baselines "
                 "were timed by wall clock only, so they are set against the sub-networks' wall clock, never against "
                 "the drift-cancelled `latency_ms` the rest of the benchmark compares on (wall clock drifts with the "
                 "machine: What the benchmark cannot tell); a 2:4 model runs on dense kernels, so its latency is the "
                 "full model's (no sparse speed-up on a CPU).")
#: The latency NAS and baselines are compared on when a baseline has only the wall clock.
LATENCY = "latency_wall_ms"
#: ... and when every baseline has the drift-cancelled latency (``nasbench baseline --metrics latency_rel``): then
#: both sides come from one protocol, each model timed alternately with the same full model.
LATENCY_DRIFT_CANCELLED = "latency_ms"
_DRIFT_CANCELLED_NOTE = ("CPU latency: the drift-cancelled `latency_ms` on both sides (prefill 1 x 128 tokens, each "
                         "model timed alternately with the same full model, the ratio times the full model's median "
                         "time; decode per token with the KV cache {decode}); a 2:4 model runs on dense kernels, "
                         "so its latency is the full model's (no sparse speed-up on a CPU).")
#: The decode time per token the table shows: the drift-cancelled one when every baseline model has it (``nasbench
#: baseline --metrics latency_rel --decode-tokens N``), else the wall clock, on both sides alike.
DECODE, DECODE_DRIFT_CANCELLED = "decode_wall_ms_per_token", "decode_ms_per_token"


def comparison_latency(models: list[dict[str, Any]]) -> tuple[str, str, str]:
    """(metric, note, words) of the latency NAS and the baselines are compared on: the drift-cancelled one when
    every baseline model has it, else the wall clock (never one against the other)."""
    if all(m["values"].get(LATENCY_DRIFT_CANCELLED) is not None for m in models):
        decode = ("the same way (`decode_ms_per_token`)" if _comparison_decode(models) == DECODE_DRIFT_CANCELLED
                  else "is wall clock (`decode_wall_ms_per_token`)")
        return LATENCY_DRIFT_CANCELLED, _DRIFT_CANCELLED_NOTE.format(decode=decode), "drift-cancelled latency"
    return LATENCY, _LATENCY_NOTE, "wall-clock latency"


def _comparison_decode(models: list[dict[str, Any]]) -> str:
    """The decode metric of the table (:data:`DECODE_DRIFT_CANCELLED` when every baseline model has it)."""
    return DECODE_DRIFT_CANCELLED if all(m["values"].get(DECODE_DRIFT_CANCELLED) is not None
                                         for m in models) else DECODE


def baseline_section(db: str | Path, space: SearchSpace, out_dir: Path | None = None) -> str:
    """Table 1 of the seed rebuilt for the space: methods x (params, CPU latency, perplexity, accuracy per task),
    then one finding per baseline and trained supernet: does NAS win at matched params, at matched latency (margin
    and a 95% bootstrap interval). With ``out_dir``, the fronts (ppl vs params, ppl vs latency) of the trained
    supernet's measured sub-networks with the baselines beside them (``front-<x>.png``)."""
    from nasbench.store import baseline_rows, metric_values, supernet_rows

    rows = supernet_rows(db, space.name)
    models = baseline_rows(db, space.name, device="cpu")
    if not models:
        return f"No baseline rows in `{Path(db).as_posix()}` yet (`nasbench baseline`).\n"
    for m in models:  # rows written before baselines stored their dense count: the arch's analytic count
        if "params" not in m["values"] and _params_of(space, db, m["arch_id"]) is not None:
            m["values"]["params"] = float(_params_of(space, db, m["arch_id"]))
    full = space.largest()
    full_id, full_params = arch_id(full), space.params(full)
    lat_metric, lat_note, lat_words = comparison_latency(models)
    ppl = metric_values(db, space.name, "ppl")
    selection = metric_values(db, space.name, "ppl_selection")
    latency = metric_values(db, space.name, lat_metric)
    decode_metric = _comparison_decode(models)
    decode = metric_values(db, space.name, decode_metric)
    pretrained = ppl.get(("pretrained", full_id), {}).get("value")
    trained = [r["id"] for r in rows if r.get("tokens") and not r["id"].startswith("baseline-")]
    # the tasks of the baselines' acc rows (acc_norm_<task> is a second metric of the same task, not a task)
    tasks = sorted({n.removeprefix("acc_") for m in models for n in m["values"]
                    if n.startswith("acc_") and not n.startswith("acc_norm_")})
    acc = _acc_values(db, space, tasks)
    head = (f"| method | training tokens | params (dense) | non-zero params | CPU {lat_words} ms | decode ms/token | "
            "ppl | "
            "/ pretrained full |"
            + "".join(f" {t} acc |" for t in tasks))
    lines = ["Table 1 of the seed rebuilt: perplexity on the first 4,096 WikiText-2 test tokens, lm-eval accuracy "
             "(the shipped task YAMLs; items as stored), params and CPU latency, every number a measured row of "
             "the DB. `params (dense)` is every stored parameter entry (what a model keeps in memory and, on a CPU, "
             "multiplies); `non-zero params` the non-zero entries (what a 2:4 sparse kernel could skip; equal to the "
             "dense count for structured methods). `training tokens` is each row's training budget: a trained "
             "supernet's is shared by all its sub-networks, a recovered baseline's spent on each of its models. "
             "Pruning baselines use the space's calibration data; `sliced-<p>` is the importance-sorted pretrained "
             "model cut to each arch of the p% band, `dsa-<p>` the same band archs re-allocated layer by layer "
             "(DSA-style: alpha and beta of the allocation picked by calibration perplexity within +-1 pp of the "
             "band); `-recovered` in a name: each model then distilled alone with the supernet's recovery recipe "
             "(KL to the full model, LoRA + norms, the recovery text) for the stated tokens; a "
             "baseline of n archs shows the median of each column over them, its accuracies the mean (a mean over "
             "archs is the expected accuracy of one of them; n = 1 rows are one model). NAS rows: the sub-network "
             "of a trained "
             "supernet within the parameter share (and at most " f"{MAX_SHARE:.0%}" " of the full params) that a "
             "user would pick, the lowest perplexity on the selection split (text disjoint from the reported tokens), "
             "then scored on the reported tokens. " + lat_note, "", head,
             table_rule(8 + len(tasks))]

    def cell(value: float | None, fmt: str) -> str:
        return "-" if value is None or value != value else format(value, fmt)

    def line(label: str, budget: str, values: dict[str, float | None]) -> str:
        value = values.get("ppl")
        ratio = f"{value / pretrained:.2f}x" if pretrained and value is not None else "-"
        nz = values.get("params_nonzero")
        return (f"| {label} | {budget} | {cell(values.get('params'), ',.0f')} | {cell(nz, ',.0f')} | "
                f"{cell(values.get(lat_metric), '.1f')} | {cell(values.get(decode_metric), '.2f')} | "
                f"{cell(value, '.1f')} | {ratio} |" + "".join(f" {cell(values.get(f'acc_{t}'), '.3f')} |"
                                                            for t in tasks))

    def arch_values(sid: str, aid: str) -> dict[str, float | None]:
        out: dict[str, float | None] = {"params": float(_params_of(space, db, aid) or 0) or None}
        out["ppl"] = ppl.get((sid, aid), {}).get("value")
        for name, table in ((lat_metric, latency), (decode_metric, decode)):
            # latency is of the dense model of the arch: the same whichever supernet's row holds it
            out[name] = table.get((sid, aid), {}).get("value") or next(
                (v["value"] for (s, a), v in table.items() if a == aid and not s.startswith("baseline-")), None)
        for task in tasks:
            out[f"acc_{task}"] = acc.get((sid, aid), {}).get(task, (None, None))[0]
        return out

    tokens = {r["id"]: r.get("tokens") for r in rows}
    scorers: dict[str, set[str]] = {}  # row label -> the scorers of its accuracy cells

    def scored_by(label: str, found: set[str]) -> str:
        if found:
            scorers[label] = found
        return label

    if pretrained is not None:
        lines.append(line(scored_by("pretrained full model", acc.get(("pretrained", full_id), {}).get(SCORER, set())),
                          "none", arch_values("pretrained", full_id)))
    for sid in trained:
        for share in TABLE_SHARES:
            limit = min(share, MAX_SHARE) * full_params
            pick = _pick(selection, ppl, sid, lambda a: (_params_of(space, db, a) or math.inf) <= limit)
            if pick is not None:
                label = f"NAS `{sid}` <= {share:.0%} params, picked on the selection split"
                lines.append(line(scored_by(label, acc.get((sid, pick), {}).get(SCORER, set())),
                                  f"{tokens.get(sid) or 0:,} for all sub-networks", arch_values(sid, pick)))
    methods: dict[str, list[dict[str, Any]]] = {}
    for m in models:
        methods.setdefault(m["method"], []).append(m)
    summary: dict[str, dict[str, Any]] = {}
    for method, group in sorted(methods.items()):
        names = sorted({n for m in group for n in m["values"]})
        values = {n: (_mean if n.startswith("acc_") else _median)([m["values"].get(n) for m in group])
                  for n in names}
        scored = sum(1 for m in group if any(n.startswith("acc_") for n in m["values"]))
        with_ppl = sum(1 for m in group if m["values"].get("ppl") is not None)
        label = method + f" (n = {len(group)}" + "".join(  # a column over fewer archs than the row says so
            f"; {what} of {k}" for what, k in (("perplexity", with_ppl), ("accuracy", scored)) if 0 < k < len(group))
        label += ")"
        budget = ("none (training-free: a merged LoRA delta would fill the 2:4 masks)" if method.endswith("2:4")
                  else "none")
        if "recovered" in method:  # the budget asked per model (each row's extra has the tokens it consumed)
            budget = ", ".join(sorted({f"{tokens.get(m['supernet_id']) or 0:,}" for m in group})) + " each"
        found = {_scorer(e) for m in group for n, e in m["extra"].items() if n.startswith("acc_")
                 and not n.startswith("acc_norm_") and m["values"].get(n) is not None}
        lines.append(line(scored_by(label, found), budget, values))
        summary[method] = {"group": group,
                           "ppl": [m["values"].get("ppl") for m in group],
                           "latency": [m["values"].get(lat_metric) for m in group],
                           "budget": [m["values"].get("params_nonzero") or m["values"].get("params") for m in group]}
    findings = []
    unpicked = [sid for sid in trained if not any(s == sid for s, _ in selection)]
    for sid in trained:
        if sid not in unpicked:
            rows_of = _corrected([r for method, data in summary.items()
                                  for r in _findings(space, db, ppl, selection, latency, sid, method, data, tokens,
                                                     lat_words)], _ppl_verdict)
            if rows_of:
                findings += [f"NAS `{sid}` ({tokens.get(sid) or 0:,} training tokens for all its sub-networks) "
                             "against each baseline:", "", _PPL_HEAD, table_rule(11), *rows_of, ""]
    if unpicked:  # one line for them all: a pick needs the selection split
        findings.append(f"Not compared: {', '.join(f'`{s}`' for s in unpicked)}; no sub-network of "
                        f"{'theirs' if len(unpicked) > 1 else 'it'} has a selection-split perplexity (`nasbench "
                        "profile --metrics ppl_selection`), so none is picked.")
    # the accuracy findings pick as the perplexity ones do (the selection split), so a supernet with a selection split
    # is compared; a pick without accuracy on every task is listed once per supernet, with the command that measures it
    acc_findings: list[str] = []
    if any(_baseline_acc(m, tasks) for data in summary.values() for m in data["group"]):
        for sid in trained:
            if sid in unpicked:
                continue
            unmeasured: dict[str, None] = {}
            rows_of = _corrected([r for method, data in summary.items()
                                  for r in _acc_findings(space, db, acc, ppl, selection,
                                                         (lat_metric, lat_words, latency), sid, method, data["group"],
                                                         tasks, unmeasured)], _acc_verdict)
            if rows_of:
                acc_findings += [f"NAS `{sid}` against each baseline:", "", _ACC_HEAD, table_rule(11), *rows_of, ""]
            if unmeasured:
                many = len(unmeasured) > 1
                command = f"nasbench profile {space.path} --supernet {sid} --n 0 --archs FILE --metrics acc --tasks "
                acc_findings += [
                    f"`{sid}`: {len(unmeasured)} pick{'s' if many else ''} without accuracy on every task yet "
                    f"({', '.join(f'`{a}`' for a in unmeasured)}), so {'their' if many else 'its'} comparisons are "
                    f"not drawn: `{command}{','.join(tasks)}` with those archs in FILE.", ""]
    kinds = sorted({k for found in scorers.values() for k in found})
    if len(kinds) > 1:  # say which rows' accuracies are not comparable as they stand
        lines += ["", "Accuracy scorers differ between rows (the same items; rounding at the scored positions "
                      "flips ties): " + "; ".join(
                          f"{kind}: " + ", ".join(label for label, found in scorers.items() if kind in found)
                          for kind in kinds) + ". The findings compare accuracy only where both sides share a "
                      "scorer (`tools/experiments/baselines.sh accuracy` scores every baseline again)."]
    if out_dir is not None and trained:
        lines += _front_plots(db, space, trained[-1], Path(out_dir), lat_metric)
    if findings:
        lines += ["", "Findings (perplexity on the reported tokens). The NAS side is one compressed sub-network (at "
                      f"most {MAX_SHARE:.0%} of the full params and within the baseline's budget) picked on the "
                      "selection split, never a minimum over test perplexities; a pick has no interval. The ratio is "
                      "NAS / baseline; for a baseline of several archs its 95% interval resamples the baseline's "
                      "archs (their median), and the test is the two-sided Wilcoxon signed-rank test of ln(baseline "
                      "ppl / NAS ppl) over the baseline's archs (the pick is one model), Holm-corrected over the "
                      "tested rows of each table; a verdict needs the interval to exclude 1 and the Holm p to be "
                      f"below {ALPHA}. A single-arch baseline has no interval and no test, so its row states the "
                      "measured ratio and no verdict beyond it. Each side names its training budget.", "",
                      *findings]
    if acc_findings:
        lines += ["", f"Findings (mean accuracy over {', '.join(tasks)}; the NAS side is the sub-network of lowest "
                      "selection-split perplexity among the compressed ones that fit the budget (the perplexity "
                      "findings' pick), chosen without looking at its accuracy or its test perplexity: the best "
                      "of many accuracies measured on the same items is biased upward by their noise (the winner's "
                      "curse), which the interval, the items' sampling error with lm-eval's stderr per task "
                      "combined, would not show; the test is the two-sided z-test of the difference with that "
                      "error, Holm-corrected over the compared rows of each table, and a verdict needs the Holm p "
                      f"below {ALPHA}):", "", *acc_findings]
    return "\n".join(lines).rstrip("\n") + "\n"


_PPL_HEAD = ("| baseline (archs, training) | matched | NAS budget | NAS pick | NAS params | NAS ppl | baseline ppl "
             "(median) | NAS / baseline [95% CI over the baseline's archs] | Wilcoxon p | Holm p | verdict |")
_ACC_HEAD = ("| baseline | matched | NAS budget | NAS pick (ppl) | compressed archs that fit | NAS acc | baseline "
             "acc | difference [95% CI] | z-test p | Holm p | verdict |")
#: A finding's significance level, after Holm's correction over its table.
ALPHA = 0.05


def _corrected(rows: list[Any], verdict: Any) -> list[str]:
    """The table's rows with their tests Holm-corrected together: a row is a finished line, or ``(head, p, effect)``
    whose last cells (p, Holm p, verdict: ``verdict(effect, holm_p)``) are added here."""
    from nasbench.stats import holm

    tested = [r for r in rows if not isinstance(r, str)]
    adjusted = iter(holm([r[1] for r in tested]) if tested else [])
    return [r if isinstance(r, str) else
            f"{r[0]} {_fmt_p(r[1])} | {_fmt_p(h := float(next(adjusted)))} | **{verdict(r[2], h)}** |" for r in rows]


def _ppl_verdict(interval: tuple[float, float], p_holm: float) -> str:
    low, high = interval
    if p_holm < ALPHA and (high < 1 or low > 1):
        return "NAS wins" if high < 1 else "the baseline wins"
    return "no clear winner (" + ("the interval holds 1" if low <= 1 <= high else f"Holm p >= {ALPHA}") + ")"


def _acc_verdict(interval: tuple[float, float], p_holm: float) -> str:
    low, high = interval
    if p_holm < ALPHA and (low > 0 or high < 0):
        return "NAS wins" if low > 0 else "the baseline wins"
    return "no clear winner (" + ("the interval holds 0" if low <= 0 <= high else f"Holm p >= {ALPHA}") + ")"


def _front_plots(db: str | Path, space: SearchSpace, sid: str, out_dir: Path, latency: str) -> list[str]:
    from nasbench.pareto import measured_front, plot_front

    out = []
    for x in ("params", latency):
        try:
            front = measured_front(db, space.name, [x, "ppl"], supernet_id=sid)
        except NasBenchError:  # nothing measured on that axis yet
            continue
        png = plot_front(front, out_dir / f"front-{x}.png", title=f"{sid}: ppl vs {x}, baselines beside")
        out.append(f"![ppl vs {x}: NAS sub-networks and baselines]({png.name})")
    return ["", *out] if out else []


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.median(present)) if present else None


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _pick(selection: dict[tuple[str, str], dict[str, Any]], ppl: dict[tuple[str, str], dict[str, Any]], sid: str,
          admit: Any) -> str | None:
    """The arch of ``sid`` a user would deploy: the lowest selection-split perplexity among the admitted archs that
    also have a reported perplexity (``None`` when none). The reported perplexity plays no part in the choice."""
    candidates = [(v["value"], a) for (s, a), v in selection.items()
                  if s == sid and v["value"] is not None and (sid, a) in ppl and admit(a)]
    return min(candidates)[1] if candidates else None


def _findings(space: SearchSpace, db: str | Path, ppl: dict, selection: dict, latency: dict, sid: str, method: str,
              data: dict[str, Any], tokens: dict[str, int | None], lat_words: str) -> list[Any]:
    """The matched-params and matched-latency rows (of :data:`_PPL_HEAD`) of one baseline against one trained
    supernet's pick: finished lines, and for a baseline of several archs ``(cells, p, interval)`` that
    :func:`_corrected` finishes once the table's tests are known."""
    out = []
    base = np.asarray([v for v in data["ppl"] if v is not None], dtype=np.float64)
    if not len(base):
        return out
    lat_of = {a: v["value"] for (s, a), v in latency.items() if not s.startswith("baseline-")}
    cap = MAX_SHARE * space.params(space.largest())
    budgets = sorted({tokens.get(m["supernet_id"]) or 0 for m in data["group"]})
    name = (f"`{method}` ({len(base)} arch{'s' if len(base) > 1 else ''}, "
            + (f"{budgets[-1]:,} training tokens each" if "recovered" in method and budgets[-1] else "no training")
            + ")")
    for kind, limits, unit in (("params", data["budget"], "non-zero params"),
                               ("latency", data["latency"], f"ms CPU {lat_words}")):
        present = [x for x in limits if x is not None]
        if not present:
            out.append(f"| {name} | {kind} | the baseline's {kind} is not measured yet |" + " - |" * 8)
            continue
        limit = float(np.median(present))
        if kind == "params":
            pick = _pick(selection, ppl, sid, lambda a: (_params_of(space, db, a) or math.inf) <= min(limit, cap))
            what = f"<= {min(limit, cap):,.0f} {unit}"
        else:
            pick = _pick(selection, ppl, sid, lambda a: a in lat_of and lat_of[a] <= limit
                         and (_params_of(space, db, a) or math.inf) <= cap)
            what = f"<= {limit:.1f} {unit}, <= {MAX_SHARE:.0%} params"
        if pick is None:
            out.append(f"| {name} | {kind} | {what} | no compressed sub-network with a selection-split perplexity "
                       "fits | - | - | - | - | - | - | - |")
            continue
        value = ppl[(sid, pick)]["value"]
        median = float(np.median(base))
        ratio = value / median
        head = (f"| {name} | {kind} | {what} | `{pick}` | {_params_of(space, db, pick) or 0:,} | {value:.1f} | "
                f"{median:.1f} |")
        if len(base) < 2:
            word = "NAS lower" if ratio < 1 else "the baseline lower" if ratio > 1 else "equal"
            out.append(f"{head} {_fmt(ratio)} (n = 1 each, no interval) | - | - | {word} |")
            continue
        from scipy.stats import wilcoxon

        rng = np.random.default_rng(0)
        medians = np.median(base[rng.integers(0, len(base), (_BOOTSTRAP, len(base)))], axis=1)
        low, high = np.percentile(value / medians, [2.5, 97.5])
        d = np.log(base) - math.log(value)  # each baseline arch against the one NAS model
        p = 1.0 if not np.any(d) else float(wilcoxon(d).pvalue)
        out.append((f"{head} {_fmt(ratio)} [{_fmt(float(low))}, {_fmt(float(high))}] |", p,
                    (float(low), float(high))))
    return out


def _acc_values(db: str | Path, space: SearchSpace, tasks: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(supernet_id, arch_id): {task: (acc, stderr)}}`` of the given tasks (stderr None where not stored), and
    under the key ``SCORER`` the set of scorers that scored them (:func:`_scorer`)."""
    import json

    from nasbench.store import metric_values

    out: dict[tuple[str, str], dict[str, Any]] = {}
    for task in tasks:
        for key, row in metric_values(db, space.name, "acc", task=task).items():
            extra = row["extra"]
            extra = json.loads(extra) if isinstance(extra, str) and extra else (extra or {})
            out.setdefault(key, {})[task] = (row["value"], extra.get("stderr"))
            out[key].setdefault(SCORER, set()).add(_scorer(extra))
    return out


#: The key of :func:`_acc_values`'s per-model dict that holds its scorers (not a task name).
SCORER = "_scorer"


def _scorer(extra: dict[str, Any]) -> str:
    """How an accuracy row was scored: its ``extra.scorer`` (``packed``), or lm-eval's HFLM loop for rows from
    before the scorer was recorded."""
    return extra.get("scorer") or "lm-eval HFLM"


def _mean_acc(per_task: dict[str, tuple[float | None, float | None]], tasks: list[str]) -> tuple[float, float] | None:
    """Mean accuracy over ``tasks`` and its standard error (the tasks' stderrs combined as independent); None unless
    every task has a value and a stderr."""
    pairs = [per_task.get(t, (None, None)) for t in tasks]
    if not tasks or any(v is None or e is None for v, e in pairs):
        return None
    return (float(np.mean([v for v, _ in pairs])), float(math.sqrt(sum(e * e for _, e in pairs)) / len(tasks)))


def _baseline_acc(m: dict[str, Any], tasks: list[str]) -> tuple[float, float] | None:
    """A baseline arch's mean accuracy and its error (:func:`_mean_acc`) from its summary row; None without every
    task."""
    return _mean_acc({t: (m["values"].get(f"acc_{t}"), m["extra"].get(f"acc_{t}", {}).get("stderr")) for t in tasks},
                     tasks)


def _acc_findings(space: SearchSpace, db: str | Path, acc: dict, ppl: dict, selection: dict,
                  latency: tuple[str, str, dict], sid: str, method: str, group: list[dict[str, Any]],
                  tasks: list[str], unmeasured: dict[str, None]) -> list[Any]:
    """Matched params and matched latency on mean accuracy: the compressed NAS sub-network of lowest selection-split
    perplexity that fits the baseline's budget (the perplexity findings' rule) against the baseline (for several
    archs, the one of median mean accuracy). Perplexity on other text picks it so that its accuracy is an unbiased
    estimate: the highest of N accuracies on the same items is not (with 2,500 items, SE ~0.01, the top of 60 archs of
    close true accuracy sits ~0.02 above its own, as large as most differences here). A pick without accuracy on
    every task is added to ``unmeasured`` (listed once by the caller) and draws no row. Rows of :data:`_ACC_HEAD`
    (a compared one as ``(cells, p, interval)`` for :func:`_corrected`); where the two sides were scored by
    different scorers the row says so and draws no verdict (one scorer for both: ``tools/experiments/baselines.sh
    accuracy``)."""
    scored = [(mean, m) for m in group if (mean := _baseline_acc(m, tasks)) is not None]
    if not scored:
        return []
    scored.sort(key=lambda x: x[0][0])
    (base, base_se), model = scored[(len(scored) - 1) // 2]
    lat_metric, lat_words, latency_values = latency  # the compared latency (metric, words, values)
    measured = {a: mean for (s, a), v in acc.items() if s == sid and (mean := _mean_acc(v, tasks)) is not None}
    lat_of = {a: v["value"] for (s, a), v in latency_values.items() if not s.startswith("baseline-")}
    cap = MAX_SHARE * space.params(space.largest())
    out = []
    for kind, limit, unit in (("params", model["values"].get("params_nonzero") or model["values"].get("params"),
                               "non-zero params"),
                              ("latency", model["values"].get(lat_metric), f"ms CPU {lat_words}")):
        if limit is None:
            continue
        what = f"<= {limit:,.0f} {unit}" if kind == "params" else f"<= {limit:.1f} {unit}"

        def fits(a: str, kind: str = kind, limit: float = limit) -> bool:
            params = _params_of(space, db, a) or math.inf
            if kind == "params":
                return params <= min(limit, cap)
            return a in lat_of and lat_of[a] <= limit and params <= cap

        head = f"| `{method}` | {kind} | {what} |"
        best = _pick(selection, ppl, sid, fits)  # the Table's rule: the selection split picks
        if best is None:
            out.append(f"{head} no compressed sub-network with a selection-split perplexity fits | - | - | - | - | - | "
                       "- | - |")
            continue
        if best not in measured:
            unmeasured[best] = None
            continue
        n_fit = sum(1 for (s, a) in selection if s == sid and (sid, a) in ppl and fits(a))
        head += f" `{best}` ({ppl[(sid, best)]['value']:.1f}) | {n_fit} |"
        value, se = measured[best]
        mine = acc.get((sid, best), {}).get(SCORER, set())
        theirs = {_scorer(model["extra"].get(f"acc_{t}", {})) for t in tasks}
        if mine != theirs:  # scorers differ by rounding at the scored positions: ties flip, items move
            out.append(f"{head} {value:.3f} | {base:.3f} | - | - | - | not compared: NAS scored by "
                       f"{' and '.join(sorted(mine))}, the baseline by {' and '.join(sorted(theirs))} |")
            continue
        from scipy.stats import norm

        error = math.sqrt(se * se + base_se * base_se)
        diff, half = value - base, 1.96 * error
        p = float(2 * norm.sf(abs(diff) / error)) if error > 0 else (1.0 if diff == 0 else 0.0)
        out.append((f"{head} {value:.3f} | {base:.3f} | {diff:+.3f} [{diff - half:+.3f}, {diff + half:+.3f}] |", p,
                    (diff - half, diff + half)))
    return out


_ARCHS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}


def _arch_table(space: SearchSpace, db: str | Path) -> dict[str, dict[str, Any]]:
    key = (str(db), space.name)
    if key not in _ARCHS:
        from nasbench.store import architectures

        _ARCHS[key] = architectures(db, space.name)
    return _ARCHS[key]


def _arch_of(space: SearchSpace, db: str | Path, aid: str) -> dict[str, Any]:
    return _arch_table(space, db)[aid]


def _params_of(space: SearchSpace, db: str | Path, aid: str) -> int | None:
    arch = _arch_table(space, db).get(aid)
    return None if arch is None else space.params(arch)
