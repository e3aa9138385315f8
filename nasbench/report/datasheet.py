"""The benchmark's datasheet in the report: surrogate cards against their goals, the data's provenance, and what the
benchmark cannot tell (with numbers), from the DB only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nasbench.space import SearchSpace

__all__ = ["CARD_GOALS", "cards_section", "provenance_section", "limits_section"]

#: Held-out Kendall tau a surrogate must reach before its answers stand in for measurements (the benchmark's goals).
CARD_GOALS = {"ppl": 0.85, "latency_ms": 0.95, "latency_rel": 0.95, "acc_avg": 0.6}


def cards_section(db: str | Path, space: SearchSpace) -> str:
    from nasbench.store import surrogate_cards

    cards = surrogate_cards(db, space.name)
    if not cards:
        return "No surrogate cards in the DB yet (`nasbench fit`).\n"
    lines = ["Held-out fidelity of the cached surrogates (`nasbench fit`: 5-fold cross-validation chooses the model, "
             "then a held-out split is scored; `loso` = leave-one-supernet-out).", "",
             "| supernet | metric | model | train / test archs | Kendall tau | goal | R2 | 90% interval coverage |",
             "|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for c in cards:
        goal = CARD_GOALS.get(c["metric"])
        tau = c["kendall_tau"]
        mark = "" if goal is None or tau is None else (" (met)" if tau >= goal else " (**not met**)")
        lines.append(f"| `{c['supernet_id']}` | {c['metric']} | {c['model']} ({c['transform']}) | {c['n_train']} / "
                     f"{c['n_test']} | {_num(tau)}{mark} | {goal if goal is not None else '-'} | {_num(c['r2'])} | "
                     f"{_num(c['coverage_90'])} |")
        if goal is not None and tau is not None:
            verdicts.append((c["supernet_id"], c["metric"], tau, goal))
    missing = [m for m in CARD_GOALS if m not in {c["metric"] for c in cards}]
    lines.append("")
    if verdicts:
        # named per supernet: with several supernets the same metric has several cards
        lines.append("Goals: " + "; ".join(f"`{s}` {m} tau {t:.3f} {'>=' if t >= g else '<'} {g}"
                                           for s, m, t, g in verdicts)
                     + (f"; no card for {', '.join(missing)} (not enough measured archs)" if missing else "") + ".")
    return "\n".join(lines) + "\n"


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}"


def provenance_section(db: str | Path, space: SearchSpace) -> str:
    from nasbench.metrics import DERIVED
    from nasbench.store import coverage, supernet_rows

    rows = coverage(db, space.name)
    supernets = {r["id"]: r for r in supernet_rows(db, space.name)}
    lines = ["Every row carries its provenance (the `software` and `extra` columns of `measurements`); per supernet "
             "and metric:", "",
             "| supernet | metric | task | device | dtype | archs | measured on | minutes |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        where = "; ".join(_software(s) for s in (r["software"] or [])[:2]) or "exact (no measurement)"
        if r["software"] and len(r["software"]) > 2:
            where += f"; +{len(r['software']) - 2} more"
        hours = f"{r['cost_s'] / 60:.1f}" if r["cost_s"] else "-"
        if r["metric"] in DERIVED:  # no time of its own: derived from the rows of another metric
            where, hours = f"derived from `{DERIVED[r['metric']]}` (its rows' machines)", "-"
        lines.append(f"| `{r['supernet_id']}` | {r['metric']} | {r['task'] or '-'} | {r['device'] or '-'} | "
                     f"{r['dtype'] or '-'} | {r['archs']:,} | {where} | {hours} |")
    lines += ["", "Supernets:", ""]
    for sid, s in supernets.items():
        config = json.loads(s["config"]) if s.get("config") else {}
        sha = config.get("sha256")
        if sid.startswith("baseline-"):
            what = f"pruning baseline {s.get('strategy')}, {s.get('tokens') or 0:,} calibration tokens"
        elif sid == "pretrained":
            what = "the base model, unsorted, untrained"
        elif not s.get("tokens") or s.get("strategy") in (None, "importance-sorted"):
            what = "importance-sorted, untrained"
        else:
            what = f"{s['strategy']}, kd {s.get('kd')}, {s.get('peft')}, {s['tokens']:,} training tokens"
        lines.append(f"- `{sid}`: {what}"
                     + (f", artifact sha256 `{sha[:16]}…`" if sha else "")
                     + (f", base `{config['base']['sha256'][:16]}…`" if isinstance(config.get("base"), dict) else ""))
    return "\n".join(lines) + "\n"


def _software(text: str) -> str:
    try:
        s = json.loads(text)
    except (TypeError, ValueError):
        return str(text)
    keys = ("cpu", "cpu_flags", "threads", "torch", "transformers", "device_name")
    return ", ".join(f"{k} {s[k]}" for k in keys if s.get(k))


def _cpus(row: dict[str, Any]) -> set[str]:
    """The CPU models a coverage row's measurements name (their software records)."""
    found = set()
    for text in row.get("software") or []:
        try:
            found.add(json.loads(text).get("cpu") or "")
        except (TypeError, ValueError, AttributeError):
            continue
    return found - {""}


def _main_supernet(coverage_rows: list[dict[str, Any]], supernets: list[dict[str, Any]]) -> str | None:
    """The trained supernet the benchmark is about: the most archs with perplexity, then the most training tokens
    (a continued artifact rebuilt on the same archs supersedes the piece it continued)."""
    tokens = {s["id"]: s.get("tokens") or 0 for s in supernets}
    trained = [r for r in coverage_rows if r["metric"] == "ppl" and not r["task"]
               and not r["supernet_id"].startswith("baseline-") and r["supernet_id"] not in ("pretrained", "sorted")]
    if not trained:
        return None
    return max(trained, key=lambda r: (r["archs"], tokens.get(r["supernet_id"], 0), r["supernet_id"]))["supernet_id"]


def limits_section(db: str | Path, space: SearchSpace, main_supernet: str | None = None) -> str:
    """What the benchmark cannot tell, each with its number."""
    from nasbench.metrics import WEIGHT_FREE
    from nasbench.store import coverage, latency_spread, reference_drift, supernet_rows, surrogate_cards

    from nasbench.store import main_supernet as recorded_main

    rows = coverage(db, space.name)
    if main_supernet is None:  # the DB's record, else the best-covered trained supernet
        main_supernet = recorded_main(db, space.name) or _main_supernet(rows, supernet_rows(db, space.name))
    of = {(r["metric"], r["task"]): r for r in rows if r["supernet_id"] == main_supernet}
    # weight-free metrics are measured once on the dense extracted models and shared by every supernet (as the
    # surrogates and the publication borrow them): a supernet without its own rows reads the most complete set
    for r in sorted((r for r in rows if r["metric"] in WEIGHT_FREE and not r["supernet_id"].startswith("baseline-")),
                    key=lambda r: r["archs"]):
        if of.get((r["metric"], r["task"]), r)["supernet_id"] != main_supernet:
            of[(r["metric"], r["task"])] = r
    ppl = of.get(("ppl", ""), {}).get("archs", 0)
    acc = {t: r["archs"] for (m, t), r in of.items() if m == "acc" and t}
    valid = space.valid_count()
    held = (f"the space admits {valid:,} archs (of {space.cardinality():,} dimension combinations before its "
            f"constraints), so the table covers {ppl / max(valid, 1):.2%} of them" if valid is not None else
            f"the space has {space.cardinality():,} dimension combinations before its constraints (too many to count "
            "the valid ones)")
    out = [f"- Archs with perplexity on `{main_supernet}`: {ppl:,}; {held}, and every other answer is a "
           "surrogate's."]
    if acc:
        out.append(f"- Accuracy: {', '.join(f'{t} on {n:,} archs' for t, n in sorted(acc.items()))} — fewer archs "
                   "than perplexity, so accuracy fronts rest on those.")
    else:
        out.append("- Accuracy: no arch of the trained supernet has accuracy rows yet, so the benchmark cannot rank "
                   "sub-networks by downstream accuracy (only by perplexity, latency, memory, params, FLOPs).")
    lat = of.get(("latency_ms", "")) or of.get(("latency_wall_ms", ""))  # a DB without latency_rel: wall clock only
    if lat:
        shared = "" if lat["supernet_id"] == main_supernet else (
            " once per arch for every supernet (latency is measured on the dense extracted model, whose shapes, not "
            "weights, set it)" if lat["supernet_id"] == "" else
            f" (the rows of `{lat['supernet_id']}`: latency is measured on the dense extracted model, whose shapes, "
            "not weights, set it)")
        out.append(f"- Latency is one machine's: {lat['archs']:,} archs measured{shared} on "
                   f"{'; '.join(_software(s) for s in (lat['software'] or [])[:1])}; another CPU (or a GPU) ranks "
                   "archs differently, so latency answers transfer only to the same hardware and threads.")
        wall = of.get(("latency_wall_ms", ""))
        if wall and lat is not wall and _cpus(wall) != _cpus(lat):
            out.append(f"- The wall clocks (`latency_wall_ms`, `decode_wall_ms_per_token`) were measured on "
                       f"{', '.join(sorted(_cpus(wall))) or 'an unrecorded CPU'}, the drift-cancelled latencies on "
                       f"{', '.join(sorted(_cpus(lat))) or 'an unrecorded CPU'}: compare archs within one column, "
                       "never milliseconds across the two.")
        spread = latency_spread(db, space.name, lat["supernet_id"])
        ratio = latency_spread(db, space.name, lat["supernet_id"], "latency_ms")
        if spread:
            of_ratio = (f"; the pairs' ratios behind `latency_ms` by {ratio['median']:.1%} (90th percentile "
                        f"{ratio['p90']:.1%}, {ratio['rows']:,} rows)" if ratio else "")
            out.append(f"- Latency noise: the timed repeats of one wall-clock measurement (`latency_wall_ms`) vary "
                       f"with a median coefficient of variation of {spread['median']:.1%} (90th percentile "
                       f"{spread['p90']:.1%}, {spread['rows']:,} rows){of_ratio}; latency differences smaller than "
                       "that are not resolved, and rows measured while the machine was busy are noisier (re-measure "
                       "on an idle machine before trusting fine latency ranks). `nasbench compare --noise` lets "
                       "the optimizers see readings drawn with this spread.")
    drift = reference_drift(db, space.name)
    if drift:
        out.append(f"- Latency drift: the full model's prefill, re-timed beside each of {drift['rows']:,} archs "
                   f"(`latency_rel`), took {drift['p5']:.1f} to {drift['p95']:.1f} ms (5th to 95th percentile; CV "
                   f"{drift['cv']:.1%}): the machine's speed moved that much between archs, which no single wall-clock "
                   "row shows. `latency_rel` divides it out, and so does the default `latency_ms` (`latency_rel` x "
                   f"the median of those times, {drift['median']:.1f} ms); the wall clock `latency_wall_ms` keeps it"
                   + _baselines_latency(db, space) + ".")
    weak = [(c["metric"], c["kendall_tau"]) for c in surrogate_cards(db, space.name)
            if c["supernet_id"] == main_supernet and c["metric"] in CARD_GOALS and c["kendall_tau"] is not None
            and c["kendall_tau"] < CARD_GOALS[c["metric"]]]
    for metric, tau in weak:
        out.append(f"- The {metric} surrogate ranks held-out archs with Kendall tau {tau:.3f} (goal "
                   f"{CARD_GOALS[metric]}): use its answers for coarse ranking only.")
    return "\n".join(out) + "\n"


def _baselines_latency(db: str | Path, space: SearchSpace) -> str:
    """How the pruning baselines' latency relates to the drift (the clause closing the drift line)."""
    from nasbench.report.baselines import LATENCY_DRIFT_CANCELLED, comparison_latency
    from nasbench.store import baseline_rows

    models = baseline_rows(db, space.name, device="cpu")
    if not models:
        return ""
    if comparison_latency(models)[0] == LATENCY_DRIFT_CANCELLED:
        return (", and the pruning baselines, each timed alternately with the same full model too, are compared "
                "with the sub-networks on the drift-cancelled latency")
    return ", and the pruning baselines, timed by wall clock only, are compared on it"
