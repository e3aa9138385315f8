"""Accuracy through lm-eval, in-process, on local copies of the benchmarks.

The task YAMLs shipped in ``nasbench/profile/tasks/`` read the data directory's files with the prompts and metrics
of lm-eval's built-in tasks of the same names. :func:`write_tasks` writes them out with the data directory filled in
(the same files serve ``lm_eval --include_path DIR`` on an exported model); :func:`evaluate` runs them on an
in-memory model (the sliced supernet or a dense model) through lm-eval's ``HFLM(pretrained=<model>)``, subclassed
to score each multiple-choice context once with all its choices packed behind it (``_packed.PackedLM``: the same
log-likelihoods, computed in float32 at the scored positions only: ``nasbench bench accuracy`` times both).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from nasbench.errors import DataError, NasBenchError, check_each

__all__ = ["TASKS", "PRIMARY_METRIC", "SCORER", "TaskScore", "write_tasks", "evaluate"]

TASK_SOURCE = Path(__file__).with_name("tasks")
#: Every shipped task, in the order the seed's tables list them.
TASKS = ("arc_easy", "arc_challenge", "boolq", "hellaswag", "openbookqa", "piqa", "social_iqa", "winogrande", "mmlu",
         "truthfulqa_mc2", "lambada")
#: The metric each task reports in the wide view first (all are higher-is-better).
PRIMARY_METRIC = {task: "acc" for task in TASKS} | {"truthfulqa_mc2": "mc2"}
#: lm-eval metric name -> (our metric name, unit). Perplexity of LAMBADA targets is stored as ``lambada_ppl``.
_METRICS = {"acc": ("acc", "accuracy"), "acc_norm": ("acc_norm", "accuracy"), "mc2": ("mc2", "accuracy"),
            "perplexity": ("target_ppl", "perplexity")}
_TRUTHFULQA_SOURCE = "truthfulqa/mc_task.json"
#: How :func:`evaluate` scores, stored with every accuracy row: ``packed`` (each context once, its choices behind it,
#: a float32 log-softmax at the scored positions). Rows without it came from HFLM's loop, whose log-softmax runs in
#: the model's dtype (in bf16 its log-likelihoods differ from float32's by ~0.1 nat, enough to flip a near tie).
SCORER = "packed"
#: lm-eval's ``simple_evaluate`` default ``fewshot_random_seed`` (the shipped tasks are zero-shot).
_FEWSHOT_SEED = 1234


@dataclass(frozen=True)
class TaskScore:
    task: str
    metric: str
    """``acc``, ``acc_norm``, ``mc2`` or ``target_ppl`` (LAMBADA's perplexity of the target word)."""
    value: float
    unit: str
    n_items: int
    seconds: float
    """Wall time of the whole task (shared by its metrics)."""
    stderr: float | None = None
    """Standard error of ``value`` over the items: lm-eval's own where it reports one, else, for the per-item 0/1
    metrics (``acc``, ``acc_norm``), lm-eval's ``mean_stderr`` (sample standard deviation / sqrt(n)), which is
    ``sqrt(p (1 - p) / (n - 1))``; ``None`` otherwise."""

    def extra(self, limit_items: int | None) -> dict[str, Any]:
        """The stored row's ``extra``: items scored, the ``--limit-items`` asked, the stderr and the scorer."""
        return {"items": self.n_items, "limit_items": limit_items, "stderr": self.stderr, "scorer": SCORER}


def write_tasks(data_dir: Path, out_dir: str | Path, tasks: Sequence[str] | None = None) -> Path:
    """Write every task YAML to ``out_dir`` with ``data_dir`` filled in; returns ``out_dir``.

    TruthfulQA's answer maps are converted to ``{choices, labels}`` lists there (``truthfulqa_mc.jsonl``), in the
    file's order, as lm-eval's HF copy of the dataset has them. ``tasks``: only these tasks' data files must exist
    (a machine that carries only the files of the tasks it runs, e.g. the GPU bench); default every task's.
    """
    if data_dir is None:
        raise DataError("data_dir", "the local task files need a data directory (NASBENCH_DATA_DIR); online, use "
                                    "lm-eval's built-in tasks of the same names", None, show_got=False)
    data_dir, out = Path(data_dir).resolve(), Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for source in sorted(TASK_SOURCE.iterdir()):
        if source.suffix == ".py" or source.suffix == ".yaml" or source.name.endswith("_yaml"):
            text = source.read_text(encoding="utf-8")
            text = text.replace("__DATA_DIR__", str(data_dir)).replace("__TASK_DIR__", str(out))
            (out / source.name).write_text(text, encoding="utf-8")
    for source in TASK_SOURCE.glob("*.yaml"):
        if tasks is not None and source.stem not in tasks:
            continue
        for line in source.read_text(encoding="utf-8").splitlines():
            if "__DATA_DIR__/" in line:
                path = data_dir / line.split("__DATA_DIR__/", 1)[1].strip()
                if not path.is_file():
                    raise DataError(str(path), f"file not found (task {source.stem})", str(path))
    truthful = data_dir / _TRUTHFULQA_SOURCE
    if tasks is not None and "truthfulqa_mc2" not in tasks:
        return out
    if not truthful.is_file():
        raise DataError(str(truthful), "file not found (task truthfulqa_mc2)", str(truthful))
    with open(out / "truthfulqa_mc.jsonl", "w", encoding="utf-8") as f:
        for item in json.loads(truthful.read_text(encoding="utf-8")):
            row = {"question": item["question"]}
            for key in ("mc1_targets", "mc2_targets"):
                row[key] = {"choices": list(item[key]), "labels": list(item[key].values())}
            f.write(json.dumps(row) + "\n")
    return out


def evaluate(model: Any, tokenizer: Any, tasks: Sequence[str], task_dir: str | Path, limit: int | None = None,
             batch_size: int = 8, cache_requests: bool = False) -> list[TaskScore]:
    """Run ``tasks`` with lm-eval on an in-memory model; one :class:`TaskScore` per (task, metric).

    ``limit`` takes the first items of each task in file order, as lm-eval's ``--limit`` does. ``cache_requests``:
    lm-eval's own request cache (its first call builds every document's requests and pickles them under its cache
    directory, keyed by task name only, so only for a machine whose task files never change: the GPU pass).
    """
    import logging

    from lm_eval.evaluator import evaluate as lm_eval_evaluate

    from nasbench.profile._packed import PackedLM, cache_template_compilation

    check_each("tasks", tasks, TASKS)
    if limit is not None and limit < 1:
        raise NasBenchError("limit", "must be >= 1", limit)
    logging.getLogger("lm_eval").setLevel(logging.WARNING)  # lm-eval logs every request batch at INFO
    cache_template_compilation()
    lm = PackedLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device="cpu"
              if _device(model) == "cpu" else _device(model))
    scores = []
    for task in tasks:
        start = time.perf_counter()
        out = lm_eval_evaluate(lm=lm, task_dict=_loaded(task_dir, task), limit=limit, log_samples=False,
                               bootstrap_iters=0, verbosity="WARNING", cache_requests=cache_requests)
        seconds = time.perf_counter() - start
        results, n_items = out["results"][task], int(out["n-samples"][task]["effective"])
        for key, value in results.items():
            name = key.split(",")[0]
            if name in _METRICS and isinstance(value, (int, float)):
                metric, unit = _METRICS[name]
                scores.append(TaskScore(task, metric, float(value), unit, n_items, seconds,
                                        _stderr(results, key, name, float(value), n_items)))
    return scores


#: (task directory, task) -> lm-eval's loaded task, built once per process and evaluated again for every arch.
#: ``simple_evaluate`` loaded it on every call (its data file; HellaSwag's preprocessing of 10,042 documents) and
#: collected an environment report (``pip list`` in a subprocess): ~2 s per task and arch, outside the model.
_LOADED: dict[tuple[str, str], Any] = {}


def _loaded(task_dir: str | Path, task: str) -> Any:
    """``task`` loaded from ``task_dir`` as ``simple_evaluate`` sets it up: zero-shot unless its YAML says otherwise,
    the few-shot sampler seeded with simple_evaluate's default."""
    from lm_eval.tasks import TaskManager

    key = (str(Path(task_dir).resolve()), task)
    if key not in _LOADED:
        loaded = TaskManager(include_path=key[0], include_defaults=False).load([task])
        for task_obj in loaded["tasks"].values():
            if task_obj.get_config("num_fewshot") is None:
                task_obj.set_config(key="num_fewshot", value=0)
            task_obj.set_fewshot_seed(seed=_FEWSHOT_SEED)
        _LOADED[key] = loaded
    return _LOADED[key]


def _stderr(results: dict[str, Any], key: str, name: str, value: float, n_items: int) -> float | None:
    """lm-eval's ``<metric>_stderr`` where it is a number (it is "N/A" with ``bootstrap_iters=0``), else
    ``sqrt(p (1 - p) / (n - 1))`` for the 0/1 metrics: exactly lm-eval's ``mean_stderr`` of 0/1 items."""
    reported = results.get(key.replace(name, f"{name}_stderr", 1))
    if isinstance(reported, (int, float)) and reported == reported:
        return float(reported)
    if name in ("acc", "acc_norm") and n_items > 1 and 0.0 <= value <= 1.0:
        return math.sqrt(value * (1.0 - value) / (n_items - 1))
    return None


def _device(model: Any) -> str:
    try:
        return str(next(model.parameters()).device)
    except (StopIteration, AttributeError):
        return "cpu"
