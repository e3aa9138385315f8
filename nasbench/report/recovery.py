"""The report's ``recovery`` section: per supernet, the full model's perplexity and the band archs' ratios to it
(median with a 95% bootstrap interval, best, against the recovery goals), the recovery curve of the shipped
artifact, and, given other runs' curves on the same probes (another PEFT mode or recipe), their comparison at equal
training tokens."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from nasbench.cards import table_rule
from nasbench.errors import NasBenchError
from nasbench.report._common import BOOTSTRAP as _BOOTSTRAP
from nasbench.report._common import fmt_ratio as _fmt
from nasbench.space import SearchSpace, arch_id

__all__ = ["GOALS", "band_ratios", "recovery_section", "plot_curve", "compare_curves", "curve_budget",
           "restart_costs"]

#: The recovery goals per band: (median ratio, best ratio) to the same supernet's full model.
GOALS = {"75": (2.0, 1.4), "50": (4.0, 2.5)}


def _band_archs(path: Path, space: SearchSpace) -> list[str]:
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    return [arch_id(space.canonical(x.get("arch", x))) for x in lines]


def band_ratios(db: str | Path, space: SearchSpace, bands: dict[str, Path]) -> dict[str, Any]:
    """``{"full": {supernet: ppl}, "bands": {label: {supernet: [ratio per measured band arch]}}}``."""
    from nasbench.store import metric_values

    full_id = arch_id(space.largest())
    band_ids = {label: _band_archs(path, space) for label, path in bands.items()}
    values = metric_values(db, space.name, "ppl", [full_id, *(a for ids in band_ids.values() for a in ids)])
    supernets = sorted({s for s, _ in values if not s.startswith("baseline-")})  # baselines: their own section
    full = {s: values[(s, full_id)]["value"] for s in supernets if (s, full_id) in values}
    out: dict[str, Any] = {"full": full, "bands": {}}
    for label, ids in band_ids.items():
        out["bands"][label] = {s: [values[(s, a)]["value"] / full[s] for a in ids if (s, a) in values]
                               for s in full}
    return out


def _median_ci(ratios: list[float]) -> tuple[float, float, float]:
    """Median and its 95% bootstrap interval (percentile, seeded: the same bytes every run)."""
    x = np.asarray(ratios, dtype=np.float64)
    rng = np.random.default_rng(0)
    medians = np.median(rng.choice(x, size=(_BOOTSTRAP, len(x)), replace=True), axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    return float(np.median(x)), float(low), float(high)


def _label(supernet: str, rows: dict[str, dict[str, Any]]) -> str:
    row = rows.get(supernet, {})
    if supernet == "pretrained":
        return "pretrained, unsorted"
    if row.get("tokens"):
        return f"`{supernet}` ({row['tokens']:,} training tokens)"
    return f"`{supernet}` (untrained)" if "sorted" in supernet else f"`{supernet}`"


def recovery_section(db: str | Path, space: SearchSpace, bands: dict[str, Path], curve: Path | None,
                     out_dir: Path, compare: tuple[Path, ...] = ()) -> str:
    """The recovery section as Markdown (writes ``recovery-curve.png`` into ``out_dir`` when a curve is given, and
    ``recovery-recipes.png`` when ``compare`` names other runs' curves)."""
    from nasbench.store import supernet_rows

    data = band_ratios(db, space, bands)
    if not data["full"]:
        raise NasBenchError("db", f"holds no perplexity of the full {space.name} model", str(db))
    rows = {r["id"]: r for r in supernet_rows(db, space.name)}
    # the factorial's runs other than the shipped recipe have their own sections (S2-S4)
    from nasbench.report.experiments import ARMS, arm_supernets

    arms = {sid for name, sid in arm_supernets(db, space).items() if name != ARMS[0].name}
    order = sorted((s for s in data["full"] if s not in arms), key=lambda s: (s != "pretrained", "sorted" not in s, s))
    labels = sorted(bands)[::-1]
    head = "| supernet | full model ppl | " + " | ".join(
        f"{b}% band: median [95% CI] | {b}% best | {b}% n" for b in labels) + " |"
    lines = ["Perplexity is the project's definition on the first 4,096 tokens of WikiText-2 test; a ratio is a band "
             "sub-network's perplexity over the same supernet's full model (bands: 16 archs each within +-1 pp of "
             "the parameter share, `results/bands/`).", "", head,
             table_rule(2 + 3 * len(labels))]
    verdicts = []
    for s in order:
        cells = [_label(s, rows), f"{data['full'][s]:.2f}"]
        for b in labels:
            ratios = data["bands"][b].get(s, [])
            if not ratios:
                cells += ["-", "-", "0"]
                continue
            med, low, high = _median_ci(ratios)
            cells += [f"{_fmt(med)} [{_fmt(low)}, {_fmt(high)}]", _fmt(min(ratios)), str(len(ratios))]
            if b in GOALS and rows.get(s, {}).get("tokens"):
                goal_med, goal_best = GOALS[b]
                met = med <= goal_med and min(ratios) <= goal_best
                verdicts.append(f"- `{s}`, {b}% band: median {_fmt(med)} (goal <= {goal_med}x), best "
                                f"{_fmt(min(ratios))} (goal <= {goal_best}x): **{'met' if met else 'not met'}**.")
        lines.append("| " + " | ".join(cells) + " |")
    pretrained = data["full"].get("pretrained")
    for s in order:
        if rows.get(s, {}).get("tokens") and pretrained:
            change = data["full"][s] / pretrained - 1
            verdicts.append(f"- `{s}`, full model: {data['full'][s]:.2f} vs pretrained {pretrained:.2f} "
                            f"({change:+.1%}; goal within 5%): **{'met' if abs(change) <= 0.05 else 'not met'}**.")
    lines += ["", *verdicts]
    if any(rows.get(s, {}).get("tokens") for s in order) and "recovery" in space.data:
        lines += ["", "The recovery text (`data.recovery`: " + ", ".join(f"`{p}`" for p in space.data["recovery"].paths)
                  + ") includes the reported corpus's own domain (WikiText-2), so part of a full model's change is "
                  "adaptation to that domain, not recovery: the out-of-domain check is the accuracy section."]
    if curve is not None and curve.is_file():
        png = plot_curve(curve, out_dir / "recovery-curve.png")
        lines += ["", f"![recovery curve]({png.name})", "", _curve_summary(curve) + " " + _split_note(curve)]
        budget = curve_budget(curve)
        if budget["probes"]:
            lines += ["", _budget_text(budget)]
        restarts = restart_costs(curve)
        if restarts:
            lines += ["", _restarts_text(restarts)]
        if compare:
            lines += ["", compare_curves([curve, *compare], out_dir / "recovery-recipes.png")]
    return "\n".join(lines) + "\n"


def _curve_points(curve: Path) -> list[dict[str, Any]]:
    points = [json.loads(x) for x in curve.read_text(encoding="utf-8").splitlines() if x.strip()]
    for p in points:
        p.setdefault("tokens_total", p["tokens"])
    return points


def _curve_summary(curve: Path) -> str:
    points = _curve_points(curve)
    last = max(p["tokens_total"] for p in points)
    first = {p["role"]: p["ppl"] for p in points if p["tokens_total"] == 0}
    end = {p["role"]: p["ppl"] for p in points if p["tokens_total"] == last}
    probes = sorted(r for r in end if r != "full" and r in first)
    drops = [first[r] / end[r] for r in probes]
    text = (f"The curve: the full model and {len(probes)} probe archs of the bands, every few steps of the run "
            f"({last:,} tokens in all). Their perplexity fell by a factor of {min(drops):,.1f} to {max(drops):,.1f}")
    return text + f"; the full model went from {first.get('full', math.nan):.2f} to {end.get('full', math.nan):.2f}."


def _split_note(curve: Path) -> str:
    """Which text the curve was tracked on: runs since the selection split name it in every line; earlier ones were
    tracked on the reported tokens themselves (nothing was picked on them: each piece ran its fixed schedule)."""
    splits = {p.get("eval_split", "perplexity") for p in _curve_points(curve)}
    if splits == {"selection"}:
        return "It was tracked on the selection split, not on the reported tokens."
    return ("It was tracked on the reported test tokens themselves (these runs predate the selection split): each "
            "piece ran its fixed schedule to the end, but the choice of LoRA over full fine-tuning (the recipes "
            "below) was read off such curves, a choice made on the test tokens.")


#: ln of the tokens beyond which an extrapolation counts as never (1e15 tokens: far past any training budget).
_NEVER = math.log(1e15)


def _band_of(share: float) -> str:
    """A probe's band from its share of the full model's params (the bands sit at 50% and 75%)."""
    return "50" if share < 0.62 else "75"


def curve_budget(curve: Path) -> dict[str, Any]:
    """What the curve says training still needs: per probe, a power law ``ratio ~ tokens^b`` fitted (least squares in
    log-log) to its ratios from a quarter of the curve's tokens on (its last two doublings: the early, steep drop of an
    untrained net would flatter the rate), extrapolated to its band's median goal (:data:`GOALS`). ``tokens_to_goal``
    is ``None`` where the fitted rate never gets there (``b >= 0``, or beyond 1e15 tokens); the goal's own tokens
    where it is already met. ``tokens_per_s``: the training chain's tokens over its wall time, from the
    ``manifest.json`` beside the curve."""
    points = _curve_points(curve)
    last = max(p["tokens_total"] for p in points)
    ratios = _probe_ratios(points)
    window = sorted(t for t in ratios if t >= last / 4 and t > 0)
    out: dict[str, Any] = {"tokens": last, "from_tokens": window[0] if window else None, "probes": [],
                           "tokens_per_s": None}
    manifest = curve.parent / "manifest.json"
    if manifest.is_file():
        training = json.loads(manifest.read_text(encoding="utf-8"))["training"]
        if training.get("wall_time_s_total"):
            out["tokens_per_s"] = training["tokens_total"] / training["wall_time_s_total"]
    if len(window) < 3:
        return out
    full_params = max(p["params"] for p in points)
    params = {p["role"]: p["params"] for p in points}
    for role in sorted(set.intersection(*(set(ratios[t]) for t in window))):
        x = np.log(np.asarray(window, dtype=np.float64))
        y = np.log([ratios[t][role] for t in window])
        slope, intercept = np.polyfit(x, y, 1)
        band = _band_of(params[role] / full_params)
        goal = GOALS[band][0]
        now = ratios[window[-1]][role]
        if now <= goal:
            needed: float | None = float(window[-1])
        elif slope < -1e-6 and (math.log(goal) - intercept) / slope < _NEVER:
            needed = float(math.exp((math.log(goal) - intercept) / slope))
        else:
            needed = None
        out["probes"].append({"role": role, "band": band, "ratio": now, "exponent": float(slope),
                              "goal": goal, "tokens_to_goal": needed})
    return out


def _tokens(n: float) -> str:
    return f"{n / 1e9:.3g}B" if n >= 1e9 else f"{n / 1e6:.3g}M" if n >= 1e6 else f"{n / 1e3:.3g}k"


def _budget_text(budget: dict[str, Any]) -> str:
    probes = budget["probes"]
    rows = ["| probe | band | ratio now | exponent b (ratio ~ tokens^b) | tokens to the band's median goal |",
            "|---|---|---|---|---|"]
    for p in probes:
        needed = "never at this rate" if p["tokens_to_goal"] is None else _tokens(p["tokens_to_goal"])
        rows.append(f"| {p['role']} | {p['band']}% | {_fmt(p['ratio'])} | {p['exponent']:.2f} | {needed} |")
    reached = sorted(p["tokens_to_goal"] for p in probes if p["tokens_to_goal"] is not None)
    text = (f"What the curve says is needed: a power law fitted to each probe's ratio from {budget['from_tokens']:,} "
            f"to {budget['tokens']:,} tokens (the last two doublings), extrapolated to its band's median goal.")
    if reached:
        median = float(np.median(reached))
        text += (f" The probes get there after {_tokens(reached[0])} to {_tokens(reached[-1])} tokens (median "
                 f"{_tokens(median)}")
        if budget["tokens_per_s"]:
            text += (f"; at the {budget['tokens_per_s']:,.0f} tokens/s this chain averaged, the median is "
                     f"{median / budget['tokens_per_s'] / 3600:,.0f} hours of training")
        text += ")"
    missing = len(probes) - len(reached)
    if missing:
        text += f"; {missing} of {len(probes)} never do at their fitted rate"
    return text + ". Extrapolating a power law is optimistic where the curve bends flatter.\n\n" + "\n".join(rows)


def restart_costs(curve: Path) -> list[dict[str, Any]]:
    """What restarting the optimizer cost at each continuation piece of a chain (``--resume-from`` ships no AdamW
    moments and runs the warmup again): per piece after the first, the probes' median ratio at its start (its step-0
    evaluation), at its first evaluation after that, and the tokens into the piece after which the median is first
    back at or below the start (``None``: not within the piece)."""
    points = _curve_points(curve)
    pieces = list(dict.fromkeys(p.get("piece") for p in points))
    out = []
    for k, piece in enumerate(pieces[1:], start=2):
        own = [p for p in points if p.get("piece") == piece]
        start_total = min(p["tokens_total"] for p in own)
        medians = [(t - start_total, float(np.median(list(r.values()))))
                   for t, r in sorted(_probe_ratios(own).items()) if r]
        if len(medians) < 2 or medians[0][0] != 0:
            continue
        start = medians[0][1]
        back = next((t for t, m in medians[1:] if m <= start), None)
        out.append({"piece": k, "start": start, "first_tokens": medians[1][0], "first": medians[1][1],
                    "back_after_tokens": back, "piece_tokens": medians[-1][0]})
    return out


def _restarts_text(restarts: list[dict[str, Any]]) -> str:
    parts = []
    for r in restarts:
        text = (f"piece {r['piece']} started at a median probe ratio of {_fmt(r['start'])} and stood at "
                f"{_fmt(r['first'])} ({r['first'] / r['start'] - 1:+.0%}) after its first {r['first_tokens']:,} tokens")
        if r["first"] > r["start"]:
            text += (f", back at or below its start after {r['back_after_tokens']:,} of its {r['piece_tokens']:,} "
                     f"tokens" if r["back_after_tokens"] is not None else ", and never back within the piece")
        parts.append(text)
    return ("What a restart costs (`--resume-from` ships no optimizer moments and warms up again): "
            + "; ".join(parts) + ".")


def plot_curve(curve: Path, out: Path) -> Path:
    """Perplexity ratio to the full model vs training tokens, one line per probe arch (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = _curve_points(curve)
    full = {p["tokens_total"]: p["ppl"] for p in points if p["role"] == "full"}
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for role in sorted({p["role"] for p in points} - {"full"}):
        mine = sorted((p for p in points if p["role"] == role and p["tokens_total"] in full),
                      key=lambda p: p["tokens_total"])
        share = mine[0]["params"] / max(p["params"] for p in points)
        ax.plot([p["tokens_total"] for p in mine], [p["ppl"] / full[p["tokens_total"]] for p in mine], marker="o",
                ms=3, color="tab:blue" if _band_of(share) == "50" else "tab:orange",
                label=f"{role} ({share:.0%} params)")
    for goal, color in ((GOALS["50"][0], "tab:blue"), (GOALS["75"][0], "tab:orange")):
        ax.axhline(goal, color=color, lw=0.8, ls="dashed")
    ax.set_yscale("log")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("perplexity / full model's")
    ax.set_title("Recovery of band sub-networks (dashed: median goals)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, metadata={"Software": None})
    plt.close(fig)
    return out


def _run_of(curve: Path) -> dict[str, Any]:
    """What a curve's run was: PEFT mode, peak lr and the curve's points. The lr comes from the ``manifest.json`` of an
    artifact or the ``train.json`` of a run directory beside the curve; the mode from the curve's own lines."""
    points = _curve_points(curve)
    run: dict[str, Any] = {"name": curve.parent.name, "points": points, "lr": None,
                           "peft": next((p["peft"] for p in points if p.get("peft")), "?")}
    if (curve.parent / "manifest.json").is_file():
        run["lr"] = json.loads((curve.parent / "manifest.json").read_text(encoding="utf-8"))["training"].get("lr")
    elif (curve.parent / "train.json").is_file():
        run["lr"] = json.loads((curve.parent / "train.json").read_text(encoding="utf-8"))["config"].get("lr")
    return run


def _at_budget(run: dict[str, Any], budget: int) -> tuple[str, float]:
    """The label and wall seconds of ``run`` at ``budget`` tokens. In a chain of pieces (points carry ``piece``; each
    piece's ``wall_time_s`` starts at 0) the budget may fall inside an earlier piece: the label names that piece, and
    the wall time is the earlier pieces' plus its own up to the budget."""
    name = f"`{run['name']}`"
    points = run["points"]
    pieces = list(dict.fromkeys(p.get("piece") for p in points))
    # the first point at the budget is the one trained to it (a resumed piece re-evaluates it at its step 0)
    at = next((p for p in points if p["tokens_total"] == budget), None)
    if at is None:
        return name, 0.0
    k = pieces.index(at.get("piece"))
    done = sum(max(q.get("wall_time_s", 0.0) for q in points if q.get("piece") == piece) for piece in pieces[:k])
    if len(pieces) > 1 and k < len(pieces) - 1:
        name += f", piece {k + 1} of {len(pieces)}"
    return name, done + at.get("wall_time_s", 0.0)


def _probe_ratios(points: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    """``{tokens: {probe role: ppl / the full model's ppl at the same point}}``."""
    full = {p["tokens_total"]: p["ppl"] for p in points if p["role"] == "full"}
    out: dict[int, dict[str, float]] = {}
    for p in points:
        if p["role"] != "full" and p["tokens_total"] in full:
            out.setdefault(p["tokens_total"], {})[p["role"]] = p["ppl"] / full[p["tokens_total"]]
    return out


def compare_curves(curves: list[Path], out: Path) -> str:
    """Recovery runs side by side at equal training tokens (the first is the shipped one): a figure of each run's
    median probe ratio (and each probe's, thin) vs tokens, and a table at the budget every run reached."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    runs = [_run_of(c) for c in curves]
    roles = set.intersection(*({p["role"] for p in r["points"]} for r in runs)) - {"full"}
    if not roles:
        raise NasBenchError("curves", "must share probe archs (roles) with the shipped curve",
                            ", ".join(str(c) for c in curves[1:]))
    budget = min(max(p["tokens_total"] for p in r["points"]) for r in runs)
    fig, (ax, ax_full) = plt.subplots(1, 2, figsize=(9.6, 4.0), dpi=110, gridspec_kw={"width_ratios": [3, 2]})
    rows = ["| run | training | peak lr | tokens | wall time | full model ppl | probes: median ratio | "
            "best | worst |", "|---|---|---|---|---|---|---|---|---|"]
    medians = {}
    for k, run in enumerate(runs):
        color = f"C{k}"
        ratios = _probe_ratios(run["points"])
        tokens = sorted(t for t in ratios if t <= budget and roles <= set(ratios[t]))
        for role in sorted(roles):
            ax.plot(tokens, [ratios[t][role] for t in tokens], color=color, lw=0.6, alpha=0.35)
        median = [float(np.median([ratios[t][r] for r in roles])) for t in tokens]
        label = f"{run['peft']}" + (f", lr {run['lr']:g}" if run["lr"] else "")
        ax.plot(tokens, median, color=color, lw=2, marker="o", ms=3, label=f"{label} (median of {len(roles)})")
        full = sorted((p["tokens_total"], p["ppl"]) for p in run["points"]
                      if p["role"] == "full" and p["tokens_total"] <= budget)
        ax_full.plot([t for t, _ in full], [v for _, v in full], color=color, marker="o", ms=3, label=label)
        end = [ratios[budget][r] for r in sorted(roles)]
        medians[label] = float(np.median(end))
        name, wall = _at_budget(run, budget)
        rows.append(f"| {name} | {run['peft']} | {run['lr'] or '-'} | {budget:,} | {wall / 60:.0f} min | "
                    f"{dict(full)[budget]:.2f} | {_fmt(medians[label])} | {_fmt(min(end))} | {_fmt(max(end))} |")
    ax.set_yscale("log")
    ax.set_ylabel("probe perplexity / full model's")
    ax.set_title("Recovery by training recipe")
    ax.legend(fontsize=7)
    for axis in (ax, ax_full):
        axis.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1e3:,.0f}k"))
    ax.set_xlabel("training tokens")
    ax_full.set_xlabel("training tokens")
    ax_full.set_ylabel("full model perplexity")
    ax_full.set_title("The full model")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, metadata={"Software": None})
    plt.close(fig)
    ranked = sorted(medians, key=medians.get)
    verdict = (f"At {budget:,} tokens the {len(roles)} probes' median ratio is {_fmt(medians[ranked[0]])} with "
               f"{ranked[0]} against " + ", ".join(f"{_fmt(medians[r])} with {r}" for r in ranked[1:]) + ".")
    return "\n".join(["Training recipes at the same token budget (each run's own curve; wall time on the CPU it ran "
                      "on):", "", *rows, "", f"![recovery by recipe]({out.name})", "", verdict])
