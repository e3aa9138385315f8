"""What a published benchmark and an exported sub-network say about themselves: licences, citation, model cards.

Ground floor (no torch, no DuckDB): :mod:`nasbench.store.publish` builds the benchmark's Croissant-style card from these
tables and :func:`nasbench.supernet.export` writes :func:`model_card` as the ``README.md`` of every exported model.
The licences are the ones the data directory's README states for each file (``shared/data/README.md``); a source
this table does not know is reported as such, never guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import yaml

from nasbench.metrics import direction

__all__ = ["SEED_PAPER", "SEED_CITATION", "FENCE", "DataLicense", "data_license", "task_license", "base_model_info",
           "metric_direction", "model_card", "table_rule"]

#: The line that opens and closes a card's YAML front matter (three hyphens).
FENCE = "-" * 3


def table_rule(columns: int) -> str:
    """A Markdown table's header rule: ``|---|---|`` for two columns."""
    return "|" + "|".join([FENCE] * columns) + "|"


SEED_PAPER = {
    "title": "Large Language Model Compression with Neural Architecture Search",
    "authors": ["Rhea Sanjay Sukthanker", "Benedikt Staffler", "Frank Hutter", "Aaron Klein"],
    "year": 2024,
    "arxiv": "2410.06479",
    "url": "https://arxiv.org/abs/2410.06479",
}
SEED_CITATION = """@article{sukthanker2024llmcompressionnas,
  title   = {Large Language Model Compression with Neural Architecture Search},
  author  = {Sukthanker, Rhea Sanjay and Staffler, Benedikt and Hutter, Frank and Klein, Aaron},
  journal = {arXiv preprint arXiv:2410.06479},
  year    = {2024},
  url     = {https://arxiv.org/abs/2410.06479}
}"""


@dataclass(frozen=True)
class DataLicense:
    dataset: str
    license: str
    """As the data directory's README states it (upstream licence first)."""
    non_commercial: bool = False
    note: str = ""


# Data-directory path prefixes -> licence (shared/data/README.md). Longest prefix wins.
_DATA_LICENSES: dict[str, DataLicense] = {
    "wikitext-2-raw/": DataLicense("WikiText-2 (raw, v1)", "CC BY-SA 3.0 (and GFDL)"),
    "corpus/tinystories": DataLicense("TinyStories (validation excerpt)", "CDLA-Sharing-1.0"),
    "corpus/tinyshakespeare": DataLicense("tiny-shakespeare", "public domain text (char-rnn repository: MIT)"),
    "finetune/alpaca_data": DataLicense("Stanford Alpaca (text-davinci-003 outputs)", "CC BY-NC 4.0", True),
    "finetune/alpaca_gpt4": DataLicense("Alpaca-GPT4 (LLaMA-Factory demo subset)", "CC BY-NC 4.0", True),
    "finetune/alpaca_seed_tasks": DataLicense("Stanford Alpaca seed tasks", "CC BY-NC 4.0", True),
    "finetune/llm_adapters_": DataLicense("LLM-Adapters training splits", "ODC-By (LLM-Adapters data)",
                                          note="the original benchmarks keep their own licences"),
    "commonsense_eval/hellaswag": DataLicense("HellaSwag (validation)", "MIT"),
    "commonsense_eval/": DataLicense("commonsense evaluation sets (LLM-Adapters / llm-foundry copies)",
                                     "ODC-By / Apache-2.0 (copies)",
                                     note="the original benchmarks keep their own licences"),
    "mmlu/": DataLicense("MMLU", "MIT"),
    "truthfulqa/": DataLicense("TruthfulQA", "Apache-2.0"),
    "lambada/": DataLicense("LAMBADA (OpenAI)", "CC BY 4.0"),
}

# Evaluation task names (nasbench/profile/tasks) -> the data-directory file they read.
_TASK_FILES = {
    "arc_easy": "commonsense_eval/mc_format/arc_easy_mc.jsonl",
    "arc_challenge": "commonsense_eval/mc_format/arc_challenge_mc.jsonl",
    "boolq": "commonsense_eval/mc_format/llmfoundry_boolq.jsonl",
    "hellaswag": "commonsense_eval/hellaswag_val.jsonl",
    "openbookqa": "commonsense_eval/mc_format/llmfoundry_openbook_qa.jsonl",
    "piqa": "commonsense_eval/mc_format/llmfoundry_piqa.jsonl",
    "social_iqa": "commonsense_eval/mc_format/siqa_mc.jsonl",
    "winogrande": "commonsense_eval/mc_format/llmfoundry_winogrande.jsonl",
    "mmlu": "mmlu/mmlu_test.jsonl",
    "truthfulqa_mc2": "truthfulqa/mc_task.json",
    "lambada": "lambada/lambada_test.jsonl",
}

_UNKNOWN = DataLicense("unknown source", "unknown: not listed in the data directory's README")


def data_license(path: str) -> DataLicense:
    """The licence of a data-directory file (a path as the space's ``data:`` gives it)."""
    matches = [prefix for prefix in _DATA_LICENSES if path.startswith(prefix)]
    return _DATA_LICENSES[max(matches, key=len)] if matches else _UNKNOWN


def task_license(task: str) -> tuple[str, DataLicense]:
    """(data file, licence) of an evaluation task."""
    path = _TASK_FILES.get(task, "")
    return path, (data_license(path) if path else _UNKNOWN)


# Base models: GGUF file prefix or hub id -> (hub id, licence).
_BASE_MODELS = {
    "SmolLM2-135M-Instruct": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0"),
    "meta-llama/Llama-3.1-8B": ("meta-llama/Llama-3.1-8B", "llama3.1"),
    "meta-llama/Llama-2-7b-hf": ("meta-llama/Llama-2-7b-hf", "llama2"),
    "EleutherAI/pythia-410m": ("EleutherAI/pythia-410m", "apache-2.0"),
    "EleutherAI/pythia-1b": ("EleutherAI/pythia-1b", "apache-2.0"),
    "EleutherAI/pythia-2.8b": ("EleutherAI/pythia-2.8b", "apache-2.0"),
}


def base_model_info(model: Any) -> tuple[str | None, str | None]:
    """(hub id, licence) of a space's base model (a :class:`nasbench.space.ModelSpec`); None where unknown."""
    if model.gguf_file:
        for prefix, info in _BASE_MODELS.items():
            if model.gguf_file.startswith(prefix + "."):
                return info
        return None, None
    if model.hf in _BASE_MODELS:
        return _BASE_MODELS[model.hf]
    looks_like_hub_id = model.hf and model.hf.count("/") == 1 and not model.hf.startswith((".", "/"))
    return (model.hf if looks_like_hub_id else None), None


def metric_direction(metric: str) -> str:
    """``maximize`` for accuracies (acc*, mc2*), else ``minimize`` (the metric registry's direction)."""
    return direction(metric)


# ------------------------------------------------------------------------------------------------ model card
def model_card(space: Any, arch: Mapping[str, Any], *, arch_id: str, params: int, flops: int,
               supernet_id: str, weights: str, measurements: Sequence[Mapping[str, Any]] = (),
               data_roles: Sequence[str] = ("perplexity",), eval_tasks: Sequence[str] = ("arc_easy",),
               tasks_dir: str = "lm_eval_tasks", tasks_written: bool = False) -> str:
    """README.md of an exported sub-network: YAML front matter as the HF hub reads it, then the card.

    ``measurements`` are rows of the benchmark's ``measurements`` table for this arch (``metric``, ``task``,
    ``value``, ``unit``, ``supernet_id``, ``device``, ``dtype``, ``batch``, ``seq_len``, ``extra`` as a dict);
    each is shown with its protocol and the perplexities also go to ``model-index`` in the front matter.
    ``data_roles``: the space's data sources that shaped these weights or numbers (``perplexity``, ``calibration``
    for a sorted supernet, ``finetune`` for a trained one); evaluation tasks come from ``measurements``.
    ``eval_tasks``: the tasks of the card's ``lm_eval`` line, which reads nasbench's task YAMLs from ``tasks_dir``
    (relative to the model directory; ``tasks_written``: they are there, else the card says how to write them).
    """
    hub_id, model_license = base_model_info(space.model)
    name = f"{space.name}-{arch_id}"
    front: dict[str, Any] = {"license": model_license or "other"}
    if hub_id:
        front["base_model"] = hub_id
    front.update({
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["nasbench", "neural-architecture-search", "pruning", "sub-network", space.family],
    })
    datasets = _card_datasets(space, measurements)
    if datasets:
        front["datasets"] = datasets
    results = [_model_index_result(space, m) for m in measurements if m["metric"] == "ppl" and _finite(m["value"])]
    if results:
        front["model-index"] = [{"name": name, "results": results}]

    lines = [FENCE, yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(), FENCE, "",
             f"# {name}", "",
             f"A sub-network of {hub_id or space.model.source} found by two-stage neural architecture search "
             f"(nasbench, after arXiv {SEED_PAPER['arxiv']}), exported as a plain dense Hugging Face model.", "",
             "| | |", "|---|---|",
             f"| base model | {hub_id or space.model.source} (`{space.model.source}`) |",
             f"| search space | `{space.name}` v{space.version} (hash `{space.hash}`) |",
             f"| arch_id | `{arch_id}` |",
             f"| supernet | `{supernet_id}` (weights: `{weights}`) |",
             f"| parameters | {params:,} |",
             f"| FLOPs per token | {flops:,} (at sequence length 512; 2 x matmul weights + causal attention) |",
             "", "## Architecture", "", "| dimension | value | reference model |", "|---|---|---|"]
    ref = space.reference
    for key in sorted(arch):
        lines.append(f"| `{key}` | {arch[key]} | {getattr(ref, key, '')} |")
    lines += ["", "## Measured metrics", ""]
    if measurements:
        lines += ["| metric | task | value | unit | supernet | protocol |", "|---|---|---|---|---|---|"]
        for m in measurements:
            supernet = f"`{m['supernet_id']}`" if m["supernet_id"] else "any (weight-free)"
            lines.append(f"| {m['metric']} | {m['task'] or ''} | {_fmt(m['value'])} | {m['unit']} | "
                         f"{supernet} | {_protocol(m)} |")
        lines += ["", "Perplexity is nasbench's one definition: WikiText-2 raw test tokenized once without special "
                      "tokens, the first `tokens` tokens cut into windows of `seq_len`, every token of a window but "
                      "its first scored. Latency and memory were measured on the dense model of this shape (they do "
                      "not depend on the weights)."]
    else:
        lines.append("None recorded: export with `--db` pointing at a benchmark that measured this arch.")
    lines += ["", "## Use", "", "```python",
              "from transformers import AutoModelForCausalLM, AutoTokenizer",
              'model = AutoModelForCausalLM.from_pretrained("PATH")',
              'tokenizer = AutoTokenizer.from_pretrained("PATH")', "```", "",
              "```bash", "# in this directory"]
    if not tasks_written:
        lines.append(f"nasbench tasks {tasks_dir} --data-dir DATA  # once: the task YAMLs, reading DATA's files")
    lines += [f"lm_eval --model hf --model_args pretrained=. --include_path {tasks_dir} --tasks "
              f"{','.join(eval_tasks)} --batch_size 8", "```", "",
              "`PATH` is this directory (or its hub id once uploaded). `nasbench.json` records the space, the arch "
              f"and the weights' origin. `{tasks_dir}/` holds nasbench's lm-eval task YAMLs (local copies of "
              "lm-eval's tasks of the same names, the ones the benchmark's accuracies were measured with); "
              "`nasbench tasks DIR` writes them for a machine's data directory (NASBENCH_DATA_DIR).", "",
              "## Data and licences", ""]
    lines.append(f"- Base model: {hub_id or space.model.source}, licence {model_license or 'see the base model'}.")
    for role, dataset, lic, path in _data_rows(space, measurements, data_roles):
        flag = " **non-commercial**" if lic.non_commercial else ""
        note = f"; {lic.note}" if lic.note else ""
        lines.append(f"- {role}: {dataset} (`{path}`), {lic.license}{flag}{note}.")
    lines += ["", "## Citation", "", "```bibtex", SEED_CITATION, "```", ""]
    return "\n".join(lines)


def _card_datasets(space: Any, measurements: Sequence[Mapping[str, Any]]) -> list[str]:
    ids = []
    if any(m["metric"] == "ppl" for m in measurements) and "perplexity" in space.data:
        ids += [h.split(":")[0].split("@")[0] for h in space.data["perplexity"].hf]
    return sorted(set(ids))


def _model_index_result(space: Any, m: Mapping[str, Any]) -> dict[str, Any]:
    extra = m.get("extra") or {}
    dataset: dict[str, Any] = {"name": "WikiText-2 (raw, test)", "type": "Salesforce/wikitext",
                               "config": "wikitext-2-raw-v1", "split": "test"}
    source = space.data.get("perplexity")
    if source is not None and source.hf:
        hub, _, split = source.hf[0].partition("@")
        hub_id, _, config = hub.partition(":")
        dataset = {"name": hub_id, "type": hub_id, **({"config": config} if config else {}),
                   **({"split": split} if split else {})}
    return {"task": {"type": "text-generation", "name": "Language modelling"}, "dataset": dataset,
            "metrics": [{"type": "perplexity", "name": f"ppl ({_protocol(m)}; supernet {m['supernet_id']})",
                         "value": float(m["value"]),
                         "args": {"tokens": extra.get("tokens"), "seq_len": m.get("seq_len"),
                                  "dtype": m.get("dtype"), "device": m.get("device")}}]}


_ROLES = {"perplexity": "Perplexity", "calibration": "Importance calibration (sorting the supernet)",
          "finetune": "Supernet fine-tuning"}


def _data_rows(space: Any, measurements: Sequence[Mapping[str, Any]],
               data_roles: Sequence[str]) -> list[tuple[str, str, DataLicense, str]]:
    rows = []
    for key, role in _ROLES.items():
        source = space.data.get(key)
        if source is None or key not in data_roles:
            continue
        for path in source.paths:
            lic = data_license(path)
            rows.append((role, lic.dataset, lic, path))
    for task in sorted({m["task"] for m in measurements if m["task"]}):
        path, lic = task_license(task)
        rows.append((f"Evaluation `{task}`", lic.dataset, lic, path))
    return rows


def _protocol(m: Mapping[str, Any]) -> str:
    extra = m.get("extra") or {}
    parts = []
    if extra.get("tokens"):
        parts.append(f"{extra['tokens']} tokens")
    if extra.get("limit_items"):
        parts.append(f"first {extra['limit_items']} items")
    if m.get("seq_len"):
        parts.append(f"seq_len {m['seq_len']}")
    if m.get("batch"):
        parts.append(f"batch {m['batch']}")
    if m.get("dtype"):
        parts.append(str(m["dtype"]))
    if m.get("device"):
        parts.append(str(m["device"]))
    if extra.get("threads"):
        parts.append(f"{extra['threads']} threads")
    return ", ".join(parts)


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(float(value))


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    value = float(value)
    return f"{value:.6g}" if math.isfinite(value) else str(value)
