"""``nasbench report``: what the benchmark shows, regenerated from the DB (and the committed artifacts) only.

Every number in ``results/<space>/REPORT.md`` and in the README's marked blocks (``<!-- nasbench report: NAME -->``
... ``<!-- /nasbench report: NAME -->``) comes from here, so rerunning the command on the same DB gives the same
bytes. Sections so far:

- ``recovery``: per supernet, the full model's perplexity and the band archs' ratios to it (median with a 95%
  bootstrap interval, best, against the recovery goals), and the recovery curve of the shipped artifact.
- ``optimizers``: per comparison (mode, objectives, supernet) and budget, the Friedman test over seeds, average ranks
  with a critical-difference diagram, and which methods beat random search significantly (one-sided Wilcoxon,
  Holm-corrected).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from nasbench.errors import NasBenchError
from nasbench.space import SearchSpace, arch_id

__all__ = ["GOALS", "band_ratios", "recovery_section", "optimizer_section", "plot_curve", "write_report",
           "update_readme"]

#: The recovery goals per band: (median ratio, best ratio) to the same supernet's full model.
GOALS = {"75": (2.0, 1.4), "50": (4.0, 2.5)}
_BOOTSTRAP = 2000


def _band_archs(path: Path, space: SearchSpace) -> list[str]:
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    return [arch_id(space.canonical(x.get("arch", x))) for x in lines]


def band_ratios(db: str | Path, space: SearchSpace, bands: dict[str, Path]) -> dict[str, Any]:
    """``{"full": {supernet: ppl}, "bands": {label: {supernet: [ratio per measured band arch]}}}``."""
    from nasbench.store.report import metric_values

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


def _fmt(ratio: float) -> str:
    if ratio >= 1000:
        return f"{ratio:,.0f}x"
    return f"{ratio:.3g}x" if ratio < 10 else f"{ratio:.1f}x"


def _label(supernet: str, rows: dict[str, dict[str, Any]]) -> str:
    row = rows.get(supernet, {})
    if supernet == "pretrained":
        return "pretrained, unsorted"
    if row.get("tokens"):
        return f"`{supernet}` ({row['tokens']:,} training tokens)"
    return f"`{supernet}` (untrained)" if "sorted" in supernet else f"`{supernet}`"


def recovery_section(db: str | Path, space: SearchSpace, bands: dict[str, Path], curve: Path | None,
                     out_dir: Path) -> str:
    """The recovery section as Markdown (writes ``recovery-curve.png`` into ``out_dir`` when a curve is given)."""
    from nasbench.store.report import supernet_rows

    data = band_ratios(db, space, bands)
    if not data["full"]:
        raise NasBenchError("--db", f"holds no perplexity of the full {space.name} model", str(db))
    rows = {r["id"]: r for r in supernet_rows(db, space.name)}
    order = sorted(data["full"], key=lambda s: (s != "pretrained", "sorted" not in s, s))
    labels = sorted(bands)[::-1]
    head = "| supernet | full model ppl | " + " | ".join(
        f"{b}% band: median [95% CI] | {b}% best | {b}% n" for b in labels) + " |"
    lines = ["Perplexity is the project's definition on the first 4,096 tokens of WikiText-2 test; a ratio is a band "
             "sub-network's perplexity over the same supernet's full model (bands: 16 archs each within +-1 pp of "
             "the parameter share, `results/bands/`).", "", head,
             "|---|---|" + "---|---|---|" * len(labels)]
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
    if curve is not None and curve.is_file():
        png = plot_curve(curve, out_dir / "recovery-curve.png")
        lines += ["", f"![recovery curve]({png.name})", "", _curve_summary(curve)]
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
                ms=3, color="tab:blue" if share < 0.62 else "tab:orange",
                label=f"{role} ({share:.0%} params)")
    for goal, color in ((GOALS["50"][0], "tab:blue"), (GOALS["75"][0], "tab:orange")):
        ax.axhline(goal, color=color, lw=0.8, ls="--")
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


#: The trained supernet's shares of the full model's params the Table shows NAS rows at (the recovery bands).
TABLE_SHARES = (0.75, 0.5)
_LATENCY_NOTE = ("CPU latency: wall clock of the dense model as it runs (prefill 1 x 128 tokens; decode per token "
                 "with the KV cache), measured on this machine's CPU; a 2:4 model runs on dense kernels, so its "
                 "latency is the full model's (no sparse speed-up on a CPU).")


def baseline_section(db: str | Path, space: SearchSpace, out_dir: Path | None = None) -> str:
    """Table 1 of the seed rebuilt for the space: methods x (params, CPU latency, perplexity, accuracy per task),
    then one finding per baseline and trained supernet: does NAS win at matched params, at matched latency (margin
    and a 95% bootstrap interval). With ``out_dir``, the fronts (ppl vs params, ppl vs latency) of the trained
    supernet's measured sub-networks with the baselines beside them (``front-<x>.png``)."""
    from nasbench.store.report import baseline_rows, metric_values, supernet_rows

    rows = supernet_rows(db, space.name)
    models = baseline_rows(db, space.name, device="cpu")
    if not models:
        return f"No baseline rows in `{Path(db).as_posix()}` yet (`nasbench baseline`).\n"
    for m in models:  # rows written before baselines stored their dense count: the arch's analytic count
        if "params" not in m["values"] and _params_of(space, db, m["arch_id"]) is not None:
            m["values"]["params"] = float(_params_of(space, db, m["arch_id"]))
    full = space.largest()
    full_id, full_params = arch_id(full), space.params(full)
    ppl = metric_values(db, space.name, "ppl")
    latency = metric_values(db, space.name, "latency_ms")
    decode = metric_values(db, space.name, "decode_ms_per_token")
    pretrained = ppl.get(("pretrained", full_id), {}).get("value")
    trained = [r["id"] for r in rows if r.get("tokens") and not r["id"].startswith("baseline-")]
    tasks = sorted({n.removeprefix("acc_") for m in models for n in m["values"] if n.startswith("acc_")})
    head = ("| method | params (dense) | non-zero params | CPU latency ms | decode ms/token | ppl | / pretrained full |"
            + "".join(f" {t} acc |" for t in tasks))
    lines = ["Table 1 of the seed rebuilt: perplexity on the first 4,096 WikiText-2 test tokens, lm-eval accuracy "
             "(the shipped task YAMLs; items as stored), params and CPU latency, every number a measured row of "
             "the DB. `params (dense)` is every stored parameter entry (what a model keeps in memory and, on a CPU, "
             "multiplies); `non-zero params` the non-zero entries (what a 2:4 sparse kernel could skip; equal to the "
             "dense count for structured methods). Pruning baselines use the space's calibration data and no "
             "recovery training; `sliced-<p>` is the importance-sorted pretrained model cut to each arch of the "
             "p% band (no training), `sliced-recovered-<p>` the same distilled alone with the stated tokens; a "
             "baseline of several archs shows their medians (n archs). NAS rows: the lowest-perplexity measured "
             "sub-network of a trained supernet within the parameter share. " + _LATENCY_NOTE, "", head,
             "|---|---|---|---|---|---|---|" + "---|" * len(tasks)]

    def cell(value: float | None, fmt: str) -> str:
        return "-" if value is None or value != value else format(value, fmt)

    def line(label: str, values: dict[str, float | None]) -> str:
        value = values.get("ppl")
        ratio = f"{value / pretrained:.2f}x" if pretrained and value is not None else "-"
        nz = values.get("params_nonzero")
        return (f"| {label} | {cell(values.get('params'), ',.0f')} | {cell(nz, ',.0f')} | "
                f"{cell(values.get('latency_ms'), '.1f')} | {cell(values.get('decode_ms_per_token'), '.2f')} | "
                f"{cell(value, '.1f')} | {ratio} |" + "".join(f" {cell(values.get(f'acc_{t}'), '.3f')} |"
                                                            for t in tasks))

    def arch_values(sid: str, aid: str) -> dict[str, float | None]:
        out: dict[str, float | None] = {"params": float(_params_of(space, db, aid) or 0) or None}
        out["ppl"] = ppl.get((sid, aid), {}).get("value")
        for name, table in (("latency_ms", latency), ("decode_ms_per_token", decode)):
            # latency is of the dense model of the arch: the same whichever supernet's row holds it
            out[name] = table.get((sid, aid), {}).get("value") or next(
                (v["value"] for (s, a), v in table.items() if a == aid), None)
        return out

    if pretrained is not None:
        lines.append(line("pretrained full model", arch_values("pretrained", full_id)))
    for sid in trained:
        for share in TABLE_SHARES:
            best = _best(ppl, sid, lambda a: (_params_of(space, db, a) or math.inf) <= share * full_params)
            if best is not None:
                lines.append(line(f"NAS `{sid}` <= {share:.0%} params", arch_values(sid, best[1])))
    methods: dict[str, list[dict[str, Any]]] = {}
    for m in models:
        methods.setdefault(m["method"], []).append(m)
    summary: dict[str, dict[str, Any]] = {}
    for method, group in sorted(methods.items()):
        names = sorted({n for m in group for n in m["values"]})
        values = {n: _median([m["values"].get(n) for m in group]) for n in names}
        label = method + (f" (median of {len(group)})" if len(group) > 1 else "")
        if "sliced-recovered" in method:
            trained_tokens = {m["extra"].get("params", {}).get("train_tokens") for m in group} - {None}
            label += f", {', '.join(f'{t:,}' for t in sorted(trained_tokens))} tokens each" if trained_tokens else ""
        lines.append(line(label, values))
        summary[method] = {"ppl": [m["values"].get("ppl") for m in group],
                           "latency": [m["values"].get("latency_ms") for m in group],
                           "budget": [m["values"].get("params_nonzero") or m["values"].get("params") for m in group]}
    findings = []
    for sid in trained:
        for method, data in summary.items():
            findings += _findings(space, db, ppl, latency, sid, method, data)
    if out_dir is not None and trained:
        lines += _front_plots(db, space, trained[-1], Path(out_dir))
    if findings:
        lines += ["", "Findings (perplexity; the interval resamples the measured NAS sub-networks and, for a baseline "
                      "of several archs, its archs: it is the uncertainty of which archs were measured, not of the "
                      "4,096-token perplexity itself):", "", *findings]
    return "\n".join(lines) + "\n"


def _front_plots(db: str | Path, space: SearchSpace, sid: str, out_dir: Path) -> list[str]:
    from nasbench.front import measured_front, plot_front

    out = []
    for x in ("params", "latency_ms"):
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


def _best(ppl: dict[tuple[str, str], dict[str, Any]], sid: str, admit: Any) -> tuple[float, str] | None:
    candidates = [(v["value"], a) for (s, a), v in ppl.items() if s == sid and admit(a)]
    return min(candidates) if candidates else None


def _findings(space: SearchSpace, db: str | Path, ppl: dict, latency: dict, sid: str, method: str,
              data: dict[str, list[float | None]]) -> list[str]:
    """The matched-params and matched-latency sentences of one baseline against one trained supernet."""
    out = []
    base = [v for v in data["ppl"] if v is not None]
    if not base:
        return out
    nas_ppl = {a: v["value"] for (s, a), v in ppl.items() if s == sid}
    lat_of = {a: v["value"] for (s, a), v in latency.items()}
    for kind, limits, unit in (("params", data["budget"], "non-zero params"),
                               ("latency", data["latency"], "ms CPU latency")):
        present = [x for x in limits if x is not None]
        if not present:
            out.append(f"- `{method}` vs NAS `{sid}` at matched {kind}: the baseline's {kind} is not measured yet.")
            continue
        limit = float(np.median(present))
        if kind == "params":
            cands = [p for a, p in nas_ppl.items() if (_params_of(space, db, a) or math.inf) <= limit]
        else:
            cands = [p for a, p in nas_ppl.items() if a in lat_of and lat_of[a] <= limit]
        what = f"<= {limit:,.0f} {unit}" if kind == "params" else f"<= {limit:.1f} {unit}"
        if not cands:
            out.append(f"- `{method}` vs NAS `{sid}` at matched {kind} ({what}): no measured sub-network fits.")
            continue
        ratio, low, high = _ratio_ci(np.asarray(cands), np.asarray(base))
        verdict = "NAS wins" if high < 1 else ("the baseline wins" if low > 1 else "no clear winner (the interval "
                                                                                  "holds 1)")
        out.append(f"- `{method}` vs NAS `{sid}` at matched {kind} ({what}): NAS best {min(cands):.1f} vs "
                   f"{float(np.median(base)):.1f}, ratio {_fmt(ratio)} [95% CI {_fmt(low)}, {_fmt(high)}] over "
                   f"{len(cands)} sub-networks: **{verdict}**.")
    return out


def _ratio_ci(nas: np.ndarray, base: np.ndarray) -> tuple[float, float, float]:
    """min(nas) / median(base) and its 95% percentile bootstrap interval (both samples resampled; seeded)."""
    rng = np.random.default_rng(0)
    best = np.min(nas[rng.integers(0, len(nas), (_BOOTSTRAP, len(nas)))], axis=1)
    ref = np.median(base[rng.integers(0, len(base), (_BOOTSTRAP, len(base)))], axis=1)
    low, high = np.percentile(best / ref, [2.5, 97.5])
    return float(nas.min() / np.median(base)), float(low), float(high)


_ARCHS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}


def _arch_table(space: SearchSpace, db: str | Path) -> dict[str, dict[str, Any]]:
    key = (str(db), space.name)
    if key not in _ARCHS:
        from nasbench.store.report import architectures

        _ARCHS[key] = architectures(db, space.name)
    return _ARCHS[key]


def _arch_of(space: SearchSpace, db: str | Path, aid: str) -> dict[str, Any]:
    return _arch_table(space, db)[aid]


def _params_of(space: SearchSpace, db: str | Path, aid: str) -> int | None:
    arch = _arch_table(space, db).get(aid)
    return None if arch is None else space.params(arch)


def optimizer_section(runs_db: str | Path, space: SearchSpace, out_dir: Path, baseline: str = "rs") -> str:
    """Significance of the optimizer comparison per budget (see the module docstring), as Markdown."""
    from nasbench.stats import average_ranks, cd_diagram, friedman, nemenyi_cd, versus_baseline
    from nasbench.store.report import run_scores

    groups = run_scores(runs_db, space.name)
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
                      f"{len(seeds)} seeds.", "",
                  "| evaluations | Friedman p | best by average rank | beat " + baseline + " (Holm) |", "|---|---|---|---|"]
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
        last = budgets[-1]
        x = np.array([[scores[m][s][last] for m in methods] for s in seeds])
        if len(methods) <= 10:
            png = cd_diagram(average_ranks(x), methods, nemenyi_cd(len(methods), len(seeds)),
                             out_dir / f"cd-{n}.png", title=f"{mode}, {objectives}: {last} evaluations")
            lines += ["", f"![critical differences]({png.name})"]
    return "\n".join(lines) + "\n"


def write_report(db: str | Path, space: SearchSpace, out_dir: str | Path, *, bands: dict[str, Path],
                 curve: Path | None = None, runs_db: str | Path | None = None) -> dict[str, str]:
    """Write ``out_dir/REPORT.md`` (+ PNGs); returns the sections' Markdown by name (for the README's blocks)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = {"recovery": recovery_section(db, space, bands, curve, out_dir),
                "baselines": baseline_section(db, space, out_dir)}
    if runs_db is not None:
        sections["optimizers"] = optimizer_section(runs_db, space, out_dir)
    text = [f"# {space.name}: what the benchmark shows", "",
            f"Generated by `nasbench report` from `{Path(db).as_posix()}`; do not edit by hand.", ""]
    for name, body in sections.items():
        text += [f"## {name.capitalize()}", "", body]
    (out_dir / "REPORT.md").write_text("\n".join(text), encoding="utf-8")
    return sections


def update_readme(readme: Path, sections: dict[str, str], image_dir: str) -> int:
    """Replace each ``<!-- nasbench report: NAME -->`` ... ``<!-- /nasbench report: NAME -->`` block; returns how
    many were replaced. Image links are made relative to the README."""
    text = readme.read_text(encoding="utf-8")
    count = 0
    for name, body in sections.items():
        body = re.sub(r"!\[([^\]]*)\]\(([^)/]+\.png)\)", lambda m: f"![{m[1]}]({image_dir}/{m[2]})", body)
        pattern = re.compile(rf"(<!-- nasbench report: {name} -->\n).*?(<!-- /nasbench report: {name} -->)", re.S)
        text, n = pattern.subn(lambda m: m[1] + body + m[2], text)
        count += n
    readme.write_text(text, encoding="utf-8")
    return count
