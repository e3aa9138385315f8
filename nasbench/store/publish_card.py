"""The published benchmark's Croissant-style card (``croissant.json``) and its README: schema with units and
directions, provenance per supernet and protocol, licences, citation, sha256 of every file."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import duckdb

from nasbench.cards import (FENCE, SEED_CITATION, SEED_PAPER, base_model_info, data_license, metric_direction,
                            task_license)
from nasbench.metrics import HP_PREFIX, METRIC_PREFIX, hp_name, metric_column, metric_name, unit
from nasbench.space import DIMENSIONS, SearchSpace
from nasbench.store.readings import READINGS
from nasbench.store.schema import SCHEMA_VERSION

__all__ = ["PROJECT_LICENSE", "FIDELITY", "build_card", "readme_text", "column_name", "config_name"]

PROJECT_LICENSE = "Apache-2.0"
FIDELITY = "step"
_COLUMN_NOTES = {
    "arch_id": "first 16 hex digits of SHA-256 of the arch's canonical JSON (sorted keys)",
    "supernet_id": "the weights the value was measured on (supernets.id); '' for weight-free values (latency, memory, "
                   "FLOPs: measured on the dense model of the arch, shared by every supernet)",
    "params": "exact parameter count of the dense model (unit: params)",
    "value": "the measured value, in `unit`",
    "spread": "interquartile range over repeats, in `unit`",
    "cost_s": "seconds the measurement took (unit: s)",
    "task": "evaluation task of accuracy metrics ('' for others)",
    "software": "library versions (JSON)",
    "extra": "protocol settings and per-value details (JSON), e.g. tokens, limit_items, threads",
}


def build_card(con: duckdb.DuckDBPyConnection, db: str | Path, spaces: dict[str, SearchSpace],
               files: list[dict[str, Any]], blackboxes: list[dict[str, Any]],
               mains: dict[str, str | None], version: int = SCHEMA_VERSION) -> dict[str, Any]:
    out = files[0]["path"].parent
    distribution, record_sets = [], []
    for f in files:
        rel = f["path"].relative_to(out).as_posix()
        distribution.append(_file_object(f["path"], rel, "application/x-parquet"))
        record_sets.append({
            "@type": "cr:RecordSet", "@id": f["name"], "name": f["name"], "description": f["description"],
            "cr:rows": f["rows"],
            "field": [_field(f["name"], rel, column, kind) for column, kind in f["columns"]]})
    kinds = {".json": "application/json", ".parquet": "application/x-parquet", ".npy": "application/x-npy"}
    for p in sorted({p for bb in blackboxes for p in bb["path"].parents[1].glob("*.parquet")}):
        distribution.append(_file_object(p, p.relative_to(out).as_posix(), kinds[p.suffix]))  # valid_configs
    for bb in blackboxes:
        for p in sorted(bb["path"].iterdir()):
            distribution.append(_file_object(p, p.relative_to(out).as_posix(), kinds[p.suffix]))

    metrics = con.execute(f"SELECT metric, task, min(unit) AS unit, count(*) FROM ({READINGS}) AS r "
                          "GROUP BY metric, task ORDER BY metric, task").fetchall()
    supernets = con.execute("SELECT id, space, base_model, strategy, kd, peft, data_hash, steps, tokens, "
                            "wall_time_s, checkpoint, config FROM supernets ORDER BY id").fetchall()
    tasks = sorted({t for _, t, _, _ in metrics if t})
    name = "nasbench-" + "+".join(spaces)
    card: dict[str, Any] = {
        "@context": _CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": name,
        "description": "A tabular LLM-compression NAS benchmark built with nasbench: sub-networks of "
                       + ", ".join(f"{base_model_info(s.model)[0] or s.model.source} (space {s.name}, "
                                   f"weights {s.model.source})" for s in spaces.values())
                       + " measured for perplexity, accuracy, latency, memory and FLOPs on the weights of several "
                         "supernets (pretrained, importance-sorted, fine-tuned). Two-stage NAS after arXiv "
                       + SEED_PAPER["arxiv"] + ".",
        "license": PROJECT_LICENSE,
        "citeAs": SEED_CITATION,
        "keywords": ["neural architecture search", "LLM compression", "benchmark", "pruning", "Syne Tune"],
        "version": f"schema-{version}",
        "isAccessibleForFree": True,
        "distribution": distribution,
        "recordSet": record_sets,
        "nasbench": {
            "metrics": [{"metric": m, "task": t, "column": metric_column(column_name(m, t)), "unit": u,
                         "direction": metric_direction(m), "rows": n} for m, t, u, n in metrics],
            "dimensions": {s.name: {d: {"kind": s.dimensions[d].kind, "values": list(s.dimensions[d].values),
                                        "reference": getattr(s.reference, d)} for d in DIMENSIONS}
                           for s in spaces.values()},
            "provenance": _provenance(con),
            "supernets": [_supernet_entry(row) for row in supernets],
            "base_models": [_base_model(s) for s in spaces.values()],
            "data_sources": _data_sources(spaces, tasks),
            "license_note": "The tables are nasbench's (" + PROJECT_LICENSE + "). They were measured with the data "
                            "sources listed here, which keep their own licences; fine-tuned supernets were trained on "
                            "non-commercial (CC BY-NC) instruction data where data_sources says so.",
            "main_supernets": {name: mains.get(name) for name in spaces},
            "syne_tune": [{"space": bb["space"], "supernet_id": bb["supernet_id"], "objective_set": bb["set"],
                           "main": bb["main"], "path": bb["path"].relative_to(out).as_posix(), "archs": bb["archs"],
                           "objectives": bb["objectives"], "elapsed_time": "metric_cost_s", "fidelity": FIDELITY,
                           "load": "from syne_tune.blackbox_repository.blackbox_tabular import deserialize; "
                                   f"deserialize('{bb['path'].relative_to(out).as_posix()}')"
                                   f"['{bb['supernet_id']}']"}
                          for bb in blackboxes],
            "protocol": {
                "perplexity": "WikiText-2 raw test tokenized once without special tokens; the first `tokens` "
                              "(measurements.extra) cut into windows of seq_len; every token of a window but its "
                              "first scored; ppl = exp(total NLL / scored tokens).",
                "accuracy": "lm-eval in-process on the sliced supernet with nasbench's local task YAMLs; "
                            "extra.limit_items = first M items per task.",
                "latency_ms": "the default latency, drift-cancelled: latency_rel x the median wall clock of the "
                              "full model re-timed beside every arch (extra.reference_median_ms, per space, device, "
                              "dtype, batch and seq_len); derived from the latency_rel row, not timed on its "
                              "own; ranks archs as latency_rel does.",
                "latency_wall_ms": "prefill wall clock on the extracted dense model, median over repeats after "
                                   "warm-up (spread = IQR); batch and seq_len per row; it keeps the machine's drift "
                                   "between archs (stored as metric latency_ms in a nasbench DB).",
                "latency_rel": "prefill time over the full model's, the two dense models timed alternately repeat by "
                               "repeat (median of the pairs' ratios; spread = IQR): drift between archs cancels.",
                "decode_rel": "decode time per generated token (KV cache, extra.decode_tokens steps after the "
                              "prompt) over the full model's, the two timed alternately pair by pair (median of the "
                              "ratios; spread = IQR).",
                "decode_ms_per_token": "the default decode latency per token, drift-cancelled: decode_rel x the "
                                       "median decode time per token of the full model re-timed beside every arch "
                                       "(extra.reference_median_ms); derived from the decode_rel row.",
                "decode_wall_ms_per_token": "wall clock per generated token with the KV cache (extra.decode_tokens "
                                            "steps, median over repeats); it keeps the machine's drift; no spread is "
                                            "stored (stored as metric decode_ms_per_token in a nasbench DB).",
                "memory_mb": "peak RSS growth on CPU (max_memory_allocated on GPU) on the dense model.",
                "flops": "analytic, per token at seq_len: 2 x matmul weights touched + causal attention.",
                "cost_s": "seconds each measurement took: the simulated time of optimizer comparisons.",
            },
        },
    }
    return card


_CONTEXT = {
    "@language": "en", "@vocab": "https://schema.org/", "sc": "https://schema.org/",
    "cr": "http://mlcommons.org/croissant/", "dct": "http://purl.org/dc/terms/",
    "citeAs": "cr:citeAs", "column": "cr:column", "conformsTo": "dct:conformsTo", "data": {"@id": "cr:data",
                                                                                            "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"}, "extract": "cr:extract", "field": "cr:field",
    "fileObject": "cr:fileObject", "recordSet": "cr:recordSet", "source": "cr:source",
    "nasbench": "cr:nasbench",
}


def _file_object(path: Path, rel: str, kind: str) -> dict[str, Any]:
    return {"@type": "cr:FileObject", "@id": rel, "name": rel, "contentUrl": rel, "encodingFormat": kind,
            "contentSize": f"{path.stat().st_size} B", "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def _field(record: str, rel: str, column: str, kind: str) -> dict[str, Any]:
    data_type = ("sc:Integer" if kind.startswith(("int", "uint")) else "sc:Float" if kind.startswith(("double",
                 "float")) else "sc:DateTime" if kind.startswith("timestamp") else "sc:Boolean" if kind == "bool"
                 else "sc:Text")
    entry: dict[str, Any] = {"@type": "cr:Field", "@id": f"{record}/{column}", "name": column, "dataType": data_type,
                             "source": {"fileObject": {"@id": rel}, "extract": {"column": column}}}
    if column.startswith(METRIC_PREFIX):
        bare = metric_name(column)
        entry["description"] = f"{bare}: {unit(bare)}, {metric_direction(bare)} (latest value per arch)"
    elif column.startswith(HP_PREFIX):
        entry["description"] = f"dimension {hp_name(column)} of the arch"
    elif column in DIMENSIONS:
        entry["description"] = f"dimension {column} of the arch (NULL when per-layer; see per_layer)"
    elif column in _COLUMN_NOTES:
        entry["description"] = _COLUMN_NOTES[column]
    return entry


def _provenance(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Per (supernet, metric, task, device, dtype, batch, seq_len): rows, software versions and the settings in
    ``extra`` that are the same on every row (tokens, limit_items, threads, timer, a recorded CPU, ...)."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for key in con.execute("SELECT supernet_id, metric, task, device, dtype, batch, seq_len, software, extra "
                           f"FROM ({READINGS}) AS r ORDER BY ALL").fetchall():
        ident, software, extra = key[:7], key[7], key[8]
        g = groups.setdefault(ident, {"rows": 0, "software": set(), "settings": None})
        g["rows"] += 1
        if software:
            g["software"].add(software)
        settings = json.loads(extra) if extra else {}
        g["settings"] = settings if g["settings"] is None else {k: v for k, v in g["settings"].items()
                                                               if settings.get(k) == v}
    out = []
    for (supernet, metric, task, device, dtype, batch, seq_len), g in groups.items():
        out.append({"supernet_id": supernet, "metric": metric, "task": task, "device": device, "dtype": dtype,
                    "batch": batch, "seq_len": seq_len, "rows": g["rows"],
                    "software": [json.loads(s) for s in sorted(g["software"])], "settings": g["settings"] or {}})
    return out


def _supernet_entry(row: tuple[Any, ...]) -> dict[str, Any]:
    keys = ("id", "space", "base_model", "strategy", "kd", "peft", "data_hash", "steps", "tokens", "wall_time_s",
            "checkpoint", "config")
    entry = dict(zip(keys, row))
    config = json.loads(entry["config"]) if entry["config"] else {}
    entry["config"] = config
    digests = {k: v for k, v in _flatten(config) if "sha256" in k.lower() and isinstance(v, str)}
    entry["artifact_sha256"] = digests or None
    if not digests:
        entry["artifact_note"] = "no artifact sha256 recorded in the supernets table"
    if isinstance(entry["wall_time_s"], float):
        entry["wall_time_s"] = round(entry["wall_time_s"], 3)
    return entry


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [kv for k in sorted(value) for kv in _flatten(value[k], f"{prefix}{k}.")]
    return [(prefix.rstrip("."), value)]


def _base_model(space: SearchSpace) -> dict[str, Any]:
    hub_id, lic = base_model_info(space.model)
    return {"space": space.name, "source": space.model.source, "hub_id": hub_id, "license": lic}


def _data_sources(spaces: dict[str, SearchSpace], tasks: list[str]) -> list[dict[str, Any]]:
    roles = {"perplexity": "perplexity (every ppl value)", "calibration": "importance calibration (sorted supernets)",
             "finetune": "supernet fine-tuning (trained supernets)"}
    out, seen = [], set()
    for space in spaces.values():
        for key, role in roles.items():
            source = space.data.get(key)
            for i, path in enumerate(source.paths if source else ()):
                if (role, path) in seen:
                    continue
                seen.add((role, path))
                lic = data_license(path)
                out.append({"role": role, "path": path, "hf": source.hf[i] if i < len(source.hf) else None,
                            "dataset": lic.dataset, "license": lic.license, "non_commercial": lic.non_commercial,
                            "note": lic.note})
    for task in tasks:
        path, lic = task_license(task)
        out.append({"role": f"evaluation: {task}", "path": path, "hf": None, "dataset": lic.dataset,
                    "license": lic.license, "non_commercial": lic.non_commercial, "note": lic.note})
    return out


def readme_text(card: dict[str, Any]) -> str:
    import yaml

    nb = card["nasbench"]
    front = {"license": card["license"].lower(), "pretty_name": card["name"],
             "tags": ["neural-architecture-search", "llm-compression", "benchmark", "tabular"],
             "configs": [{"config_name": config_name(rs["name"]),
                          "data_files": next(f["contentUrl"] for f in card["distribution"]
                                             if f["@id"] == rs["field"][0]["source"]["fileObject"]["@id"])}
                         for rs in card["recordSet"] if rs["cr:rows"]]}  # `datasets` reads no empty table
    lines = [FENCE, yaml.safe_dump(front, sort_keys=False).rstrip(), FENCE, "", f"# {card['name']}", "",
             card["description"], "", "Files: the Parquet tables below, `croissant.json` (schema, units, directions, "
             "provenance, licences, sha256 of every file) and Syne Tune blackboxes under `syne_tune/`.", "",
             "| table | rows | what |", "|---|---|---|"]
    lines += [f"| `{rs['name']}` | {rs['cr:rows']} | {rs['description']} |" for rs in card["recordSet"]]
    lines += ["", "## Metrics", "", "| column | unit | direction | rows |", "|---|---|---|---|"]
    lines += [f"| `{m['column']}` | {m['unit']} | {m['direction']} | {m['rows']} |" for m in nb["metrics"]]
    latencies = [m for m in ("latency_ms", "latency_wall_ms", "latency_rel", "decode_ms_per_token",
                             "decode_wall_ms_per_token", "decode_rel")
                 if any(row["metric"] == m for row in nb["metrics"])]
    if latencies:
        lines += ["", "Which latency is which (`latency_ms`, and `decode_ms_per_token` for decode, are the ones to "
                  "compare archs on):", ""]
        lines += [f"- `{m}`: {nb['protocol'][m]}" for m in latencies]
    mains = {space: main for space, main in nb["main_supernets"].items() if main}
    lines += ["", "## Load", ""]
    lines += [f"The main supernet of space `{space}` (the benchmark's defaults use it): `{main}`." for space, main in
              mains.items()]
    wide = next((f"wide/{s}/{_safe_name(m)}.parquet" for s, m in mains.items()), None)
    lines += ["", "```python", "import pandas as pd, duckdb", 'pd.read_parquet("measurements.parquet")',
              "# the space's archs and their measurements (weight-free rows have supernet_id '')",
              "duckdb.sql(\"SELECT * FROM 'architectures.parquet' JOIN 'measurements.parquet' "
              "USING (space, arch_id)\")"]
    if wide:
        lines += [f'pd.read_parquet("{wide}")  # one row per arch: ppl, latency, memory, params, ...']
    lines += ["import datasets", f'datasets.load_dataset(".", "{front["configs"][0]["config_name"]}")',
              "from syne_tune.blackbox_repository.blackbox_tabular import deserialize"]
    lines += [f'deserialize("{bb["path"]}")["{bb["supernet_id"]}"]  # {bb["objective_set"]}: {bb["archs"]} archs'
              for bb in nb["syne_tune"] if bb["main"] or not mains]
    lines += ["```", "", "Each Syne Tune blackbox holds one supernet's archs that have every one of its objectives "
              "(`ppl`: perplexity, latency, memory, params, FLOPs; `acc`: the same plus accuracy), so none is NaN; "
              "`metric_cost_s` is the seconds measuring them took (use it as `elapsed_time_attr`). Syne Tune draws "
              "each dimension independently: propose only configs that are rows of the blackbox (or of "
              "`valid_configs.parquet`, the space's valid archs, with a surrogate), as `metadata.json` says under "
              "`constraints`.", "", "| blackbox | archs | objectives |", "|---|---|---|"]
    lines += [f"| `{bb['path']}` | {bb['archs']} | {', '.join(f'`{o}`' for o in bb['objectives'])} |"
              for bb in nb["syne_tune"]]
    lines += ["", "## Data sources and licences", "", "| role | file | dataset | licence |",
              "|---|---|---|---|"]
    lines += [f"| {d['role']} | `{d['path']}` | {d['dataset']} | {d['license']}"
              f"{' (non-commercial)' if d['non_commercial'] else ''} |" for d in nb["data_sources"]]
    lines += ["", nb["license_note"], "", "## Citation", "", "```bibtex", card["citeAs"], "```", ""]
    return "\n".join(lines)


def config_name(record_set: str) -> str:
    """A record set's name as a dataset config name (``datasets`` refuses ``<>:/\\|?*``):
    ``wide/smollm2-135m/baseline-magnitude-2:4`` -> ``wide--smollm2-135m--baseline-magnitude-2_4``."""
    return ("-" * 2).join(_safe_name(part) for part in record_set.split("/"))  # a double hyphen: no name holds one


def _safe_name(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z._-]+", "_", name)


def column_name(metric: str, task: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", metric + (f"_{task}" if task else "")).lower()
