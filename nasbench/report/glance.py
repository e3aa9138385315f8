"""The README's "shipped benchmark at a glance" block (``<!-- nasbench report: glance -->``), from the benchmark DB
only; ``nasbench report --readme`` rewrites it with the report's other blocks, REPORT.md does not repeat it.

The benchmark's supernet is the one the DB records as the space's main supernet (``nasbench supernets --set-main``),
else the trained supernet with the most archs of perplexity, then the most training tokens. Latency, memory and the
other shape-only metrics are stored once per arch under the neutral supernet id ``''`` and count for every supernet.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from nasbench.space import SearchSpace, arch_id

__all__ = ["glance_section", "SHOWN"]

#: The metrics the block counts archs of, in this order; ``acc`` counts archs with every task measured.
SHOWN = ("ppl", "acc", "latency_ms", "latency_wall_ms", "latency_rel", "decode_ms_per_token",
         "decode_wall_ms_per_token", "memory_mb")


def glance_section(db: str | Path, space: SearchSpace, bands: dict[str, Path]) -> str:
    """The block's Markdown (without the markers)."""
    from nasbench.store import coverage, main_supernet, metric_values, supernet_rows, surrogate_cards

    from nasbench.report.datasheet import _main_supernet

    supernets = supernet_rows(db, space.name)
    rows = {r["id"]: r for r in supernets}
    cover = coverage(db, space.name)
    sid = main_supernet(db, space.name) or _main_supernet(cover, supernets)  # the datasheet's rule
    if sid is None or sid not in rows:
        return f"`{Path(db).as_posix()}` holds no trained supernet of {space.name} with perplexity rows yet.\n"
    row = rows[sid]
    counts: dict[str, int] = {}
    for r in cover:
        if not r["task"] and r["supernet_id"] in (sid, ""):
            counts[r["metric"]] = max(counts.get(r["metric"], 0), r["archs"])
    tasks = sorted({r["task"] for r in cover if r["supernet_id"] == sid and r["metric"] == "acc" and r["task"]})
    per_arch: dict[str, int] = {}
    for task in tasks:
        for (s, a) in metric_values(db, space.name, "acc", task=task):
            if s == sid:
                per_arch[a] = per_arch.get(a, 0) + 1
    acc_archs = sum(n == len(tasks) for n in per_arch.values())
    full_id = arch_id(space.largest())
    ppl = {a: v for (s, a), v in metric_values(db, space.name, "ppl").items() if s == sid}
    model = space.model
    base = (f"`{model.gguf_file}` (PyPI package `{model.gguf_package.replace('_', '-')}`)" if model.gguf_file
            else f"`{model.hf}`")
    full_params = space.params(space.largest())
    share = ""
    if space.constraints.min_params:
        share = f"; sub-networks keep {space.constraints.min_params / full_params:.0%}-100% of the params"
    valid = space.valid_count()
    held = (f"{valid:,} valid archs ({space.cardinality():,} dimension combinations before the constraints); the "
            f"{counts.get('ppl', 0):,} with perplexity cover {counts.get('ppl', 0) / max(valid, 1):.2%} of them"
            if valid is not None else f"{space.cardinality():,} dimension combinations before the constraints")
    measured = []
    for metric in SHOWN:
        if metric == "acc":
            if acc_archs:
                measured.append(f"acc {acc_archs:,} (each on {len(tasks)} tasks)")
        elif counts.get(metric):
            measured.append(f"{metric} {counts[metric]:,}")
    out_rows = [
        ("base model", f"{base}, {model.family}, {full_params:,} params"),
        ("search space", f"`{space.name}` v{space.version} (`{Path(space.path).as_posix()}`): "
                         + ", ".join(f"`{d}`" for d in space.dimensions) + f"; {held}{share}"),
        ("supernet", f"`{sid}`: `{row['strategy']}`, `--kd {row['kd']}`, `--peft {row['peft']}`, "
                     f"{row['tokens'] or 0:,} training tokens" + (f" (`{row['checkpoint']}/`)" if row.get("checkpoint")
                                                                  else "")),
        ("archs measured", "; ".join(measured)),
    ]
    if full_id in ppl:
        full = ppl[full_id]
        extra = json.loads(full["extra"]) if full["extra"] else {}
        protocol = ", ".join(x for x in (f"first {extra['tokens']:,} tokens" if extra.get("tokens") else "",
                                         full["dtype"] or "") if x)
        band_text = []
        for label, path in sorted(bands.items(), key=lambda item: -int(item[0])):
            lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
            ids = [arch_id(space.canonical(x.get("arch", x))) for x in lines]
            ratios = [ppl[a]["value"] / full["value"] for a in ids if a in ppl]
            if ratios:
                band_text.append(f"{label}% band median {statistics.median(ratios):.2f}x, best {min(ratios):.2f}x "
                                 f"({len(ratios)} archs)")
        out_rows.append(("perplexity", f"full model {full['value']:.2f} (WikiText-2 test"
                                       + (f", {protocol}" if protocol else "") + ")"
                                       + ("; a sub-network's over the full model's: " + "; ".join(band_text)
                                          if band_text else "")))
    cards = [c for c in surrogate_cards(db, space.name) if c["supernet_id"] == sid and c["kendall_tau"] is not None]
    if cards:
        out_rows.append(("surrogate cards", "Kendall tau on held-out archs: " + ", ".join(
            f"{c['metric']} {c['kendall_tau']:.3f} ({c['n_test']:,} archs)" for c in cards)))
    published = Path(db).parent / "published" / space.name  # where `nasbench publish` writes beside the DB
    files = [f for f in published.rglob("*") if f.is_file()] if published.is_dir() else []
    if files:  # measured, so the figure follows the publication (rerun the report after `nasbench publish`)
        out_rows.append(("publication", f"`{published.as_posix()}/`: {len(files):,} files, "
                                        f"{sum(f.stat().st_size for f in files) / 1e6:.1f} MB (Parquet tables, a "
                                        "Croissant card, Syne Tune blackboxes; `nasbench publish`)"))
    out_rows.append(("report", f"[`results/{space.name}/REPORT.md`](results/{space.name}/REPORT.md)"))
    out = [f"Generated by `nasbench report` from `{Path(db).as_posix()}`.", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in out_rows]
    return "\n".join(out) + "\n"
