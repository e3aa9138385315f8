"""Prune a space's base model (or a supernet's weights) with one baseline method and store its rows.

Each baseline model is one row set of the benchmark under its own supernet id, ``baseline-<method>`` (e.g.
``baseline-wanda-2:4``, ``baseline-slicegpt-20``; ``+<id>`` appended when ``--supernet`` names other weights), with
the method and its config in ``supernets``. A 2:4 model keeps the full arch: its arch is the space's reference arch
(``architectures.params`` is the dense count) and ``params_nonzero`` is an extra measured row. A SliceGPT model is not
an arch of the space: its rows carry the arch_id of its own encoding (:func:`nasbench.baselines.slicegpt.sliced_arch`,
in each row's ``extra.arch`` and in the supernet's config) and a ``params`` row with its real dense count; it is not
added to ``architectures``, so it stays out of the space's wide view, samplers and surrogates.

Metrics as ``nasbench profile`` measures them: ``ppl`` (the one perplexity definition), lm-eval ``acc`` per task,
``latency_ms`` of the model as it runs (2:4 masks run on dense kernels: no speed-up on a CPU), ``memory_mb``.
Resumable: what is stored for (arch, supernet id, metric, task, device) is skipped; nothing is pruned when nothing
is missing; each metric group is committed as soon as it is measured.
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nasbench.errors import NasBenchError
from nasbench.space import SearchSpace, arch_id

if TYPE_CHECKING:  # the store (duckdb) loads on first use: the CLI's parser reads METHODS without it
    from nasbench.store import Store

__all__ = ["METHODS", "METRICS", "BaselineConfig", "BaselineSummary", "baseline_id", "run_baseline"]

METHODS = ("magnitude-2:4", "wanda-2:4", "sparsegpt-2:4", "slicegpt")
METRICS = ("ppl", "acc", "latency", "memory")
_STORED = {"ppl": "ppl", "latency": "latency_ms", "memory": "memory_mb"}
_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
_NO_SPEEDUP = "2:4 mask on dense kernels: zeros are multiplied like any weight, no sparse speed-up"


@dataclass
class BaselineConfig:
    """Everything that decides which rows a baseline run writes."""

    method: str
    slicing: float = 0.2
    """SliceGPT only: the fraction of the hidden size deleted."""
    calibration_tokens: int = 16384
    """Tokens of the space's ``calibration`` source (Wanda, SparseGPT, SliceGPT); never the perplexity corpus."""
    calibration_seq_len: int = 512
    metrics: tuple[str, ...] = ("ppl", "acc", "latency", "memory")
    tasks: tuple[str, ...] = ("arc_easy", "piqa", "winogrande")
    limit_items: int | None = None
    ppl_tokens: int = 4096
    seq_len: int = 512
    latency_batch: int = 1
    latency_seq_len: int = 128
    latency_repeats: int = 10
    device: str = "cpu"
    dtype: str = "bfloat16"
    """Weights' dtype for every metric (as ``nasbench profile``); pruning itself runs in float32."""
    batch_size: int = 4

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise NasBenchError("--method", f"must be one of {', '.join(METHODS)}", self.method)
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise NasBenchError("--metrics", f"each must be one of {', '.join(METRICS)}", unknown[0])
        if self.dtype not in _DTYPES:
            raise NasBenchError("--dtype", f"must be one of {', '.join(_DTYPES)}", self.dtype)
        if self.method == "slicegpt":
            from nasbench.baselines.slicegpt import sliced_dim

            sliced_dim(10**6, self.slicing)  # a fraction in [0, 1)
        if "acc" in self.metrics:
            from nasbench.profile.accuracy import TASKS

            bad = [t for t in self.tasks if t not in TASKS]
            if bad:
                raise NasBenchError("--tasks", f"each must be one of {', '.join(TASKS)}", bad[0])

    @property
    def method_id(self) -> str:
        return f"slicegpt-{self.slicing * 100:g}" if self.method == "slicegpt" else self.method


@dataclass
class BaselineSummary:
    supernet_id: str
    arch_id: str
    params: int
    """Dense parameter count of the baseline model (analytic for 2:4, counted for SliceGPT)."""
    rows: int
    """New measurement rows."""
    seconds: float
    values: dict[str, float]
    """This run's new values by stored metric name (``acc_<task>`` for accuracies)."""


def baseline_id(config: BaselineConfig, weights_id: str = "pretrained") -> str:
    """``baseline-<method>``, plus ``+<weights_id>`` for weights other than the pretrained base model."""
    return f"baseline-{config.method_id}" + ("" if weights_id == "pretrained" else f"+{weights_id}")


def _full_arch(space: SearchSpace) -> dict[str, Any]:
    """The space's reference model as an arch of the space (what a 2:4 model keeps)."""
    ref = space.reference
    arch = space.largest()
    for name in ("embed_dim", "n_layers", "n_heads", "head_size", "n_kv_groups", "intermediate_size"):
        values = arch[name] if isinstance(arch[name], list) else [arch[name]]
        if any(v != getattr(ref, name) for v in values):
            raise NasBenchError(f"{space.path}:dimensions.{name}", "the 2:4 baselines keep the whole model: the "
                                "space's largest arch must be its reference model", arch[name])
    return arch


def _software() -> dict[str, str]:
    import importlib.metadata

    out = {}
    for package in ("torch", "transformers", "lm_eval", "nasbench"):
        try:
            out[package] = importlib.metadata.version(package.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            out[package] = "unknown"
    return out


def run_baseline(space: SearchSpace, db: str | Path, config: BaselineConfig, *,
                 supernet_dir: str | Path | None = None, data_dir: Path | None = None,
                 progress: bool = True) -> BaselineSummary:
    """Prune, measure what is missing and store it; see the module docstring."""
    from nasbench.baselines.slicegpt import sliced_arch
    from nasbench.profile.accuracy import PRIMARY_METRIC
    from nasbench.train.artifact import supernet_id_of

    start = time.perf_counter()
    weights_id = "pretrained" if supernet_dir is None else supernet_id_of(Path(supernet_dir))
    sid = baseline_id(config, weights_id)
    slicegpt = config.method == "slicegpt"
    arch = sliced_arch(space.reference, config.slicing) if slicegpt else _full_arch(space)
    aid = arch_id(arch)
    size_metric = "params" if slicegpt else "params_nonzero"
    wanted = [(size_metric, "")] + [(PRIMARY_METRIC[t], t) if m == "acc" else (_STORED[m], "")
                                    for m in config.metrics for t in (config.tasks if m == "acc" else ("",))]
    from nasbench.store import Measurement, Store

    with Store(db) as store:
        missing = [(m, t) for m, t in wanted
                   if not store.has_measurement(space.name, aid, sid, m, t, "" if m.startswith("params")
                                                else config.device)]
        summary = BaselineSummary(sid, aid, 0 if slicegpt else space.params(arch), 0, 0.0, {})
        _check_same_pruning(store, sid, config)
        if not missing:
            if slicegpt:
                summary.params = int(store.con.execute(
                    "SELECT value FROM measurements WHERE space = ? AND arch_id = ? AND supernet_id = ? AND "
                    "metric = 'params'", [space.name, aid, sid]).fetchone()[0])
            summary.seconds = time.perf_counter() - start
            return summary
        model, tokenizer, prune_s = _pruned(space, config, supernet_dir, data_dir, progress)
        summary.params = int(sum(p.numel() for p in model.parameters())) if slicegpt else summary.params
        store.add_space(space)
        store.add_supernet(sid, space.name, space.model.source, strategy=config.method, tokens=_calib_tokens(config),
                           wall_time_s=prune_s, checkpoint=None if supernet_dir is None else str(supernet_dir),
                           config=_record(config, weights_id, arch, aid, summary.params))
        software = _software()
        groups = {"params" if m.startswith("params") else ("acc" if t else m.removesuffix("_ms").removesuffix("_mb"))
                  for m, t in missing}
        for group in ("params", "ppl", "acc", "latency", "memory"):
            if group not in groups:
                continue
            tasks = [t for m, t in missing if t]
            rows = _measure(group, model, tokenizer, space, config, data_dir, tasks, slicegpt, summary.params)
            extra = {"method": config.method_id, **({"arch": arch} if slicegpt else {})}
            new = [Measurement(**{k: v for k, v in r.items() if k != "extra"}, arch_id=aid, supernet_id=sid,
                               software=software, extra={**r.get("extra", {}), **extra}) for r in rows]
            before = store.count_measurements(space.name)
            if slicegpt:
                store.add_measurements(space.name, new)
            else:
                store.add_results(space, arch, new)
            summary.rows += store.count_measurements(space.name) - before
            summary.values.update({m.metric + (f"_{m.task}" if m.task else ""): m.value for m in new})
    summary.seconds = time.perf_counter() - start
    return summary


def _check_same_pruning(store: Store, sid: str, config: BaselineConfig) -> None:
    """A resumed run must prune as the stored rows were pruned: one supernet id, one calibration set."""
    row = store.con.execute("SELECT config FROM supernets WHERE id = ?", [sid]).fetchone()
    if row is None or not row[0]:
        return
    stored = json.loads(row[0])
    for key, flag in (("calibration_tokens", "--calibration-tokens"), ("calibration_seq_len", "--calibration-seq-len")):
        value = _calib_tokens(config) if key == "calibration_tokens" else config.calibration_seq_len
        if key in stored and stored[key] != value and _calib_tokens(config):
            raise NasBenchError(flag, f"{sid} in this DB was pruned with {key} = {stored[key]}: use that value or "
                                      "another --db", value)


def _calib_tokens(config: BaselineConfig) -> int:
    return 0 if config.method == "magnitude-2:4" else config.calibration_tokens


def _record(config: BaselineConfig, weights_id: str, arch: dict[str, Any], aid: str, params: int) -> dict[str, Any]:
    """The supernets row's config: the method, its settings and what the model is."""
    out = {"method": config.method_id, "weights": weights_id, "implementation": "nasbench.baselines (own code)",
           "calibration_tokens": _calib_tokens(config), "calibration_seq_len": config.calibration_seq_len,
           "calibration_source": "data.calibration", "arch": arch, "arch_id": aid, "params": params}
    if config.method == "slicegpt":
        out |= {"slicing": config.slicing, "hidden_size": arch["embed_dim"]}
    else:
        out |= {"sparsity": "2:4", "pruned": "every nn.Linear of the decoder blocks (embedding and head dense)"}
    return out


def _pruned(space: SearchSpace, config: BaselineConfig, supernet_dir: str | Path | None, data_dir: Path | None,
            progress: bool) -> tuple[Any, Any, float]:
    """The pruned model in the measuring dtype on the device, the tokenizer, and the pruning seconds."""
    from tqdm.auto import tqdm

    from nasbench.baselines import magnitude, slicegpt, sparsegpt, wanda
    from nasbench.baselines._layerwise import decoder_layers
    from nasbench.importance import calibration_windows
    from nasbench.models import load_tokenizer
    from nasbench.train.artifact import load_model

    tokenizer = load_tokenizer(space.model)
    model = load_model(space, supernet_dir, torch.float32).model.to(config.device).eval()
    start = time.perf_counter()
    if config.method == "magnitude-2:4":
        magnitude.magnitude_prune(model)
    else:
        windows = calibration_windows(space, tokenizer, data_dir, config.calibration_tokens,
                                      config.calibration_seq_len)
        n_layers = len(decoder_layers(model))
        with tqdm(total=n_layers, unit="block", desc=config.method_id, disable=not progress) as bar:
            step = (lambda i: bar.update())
            if config.method == "wanda-2:4":
                wanda.wanda_prune(model, windows, batch_size=config.batch_size, progress=step)
            elif config.method == "sparsegpt-2:4":
                sparsegpt.sparsegpt_prune(model, windows, batch_size=config.batch_size, progress=step)
            else:
                slicegpt.slice_model(model, windows, config.slicing, batch_size=config.batch_size, progress=step)
    seconds = time.perf_counter() - start
    return model.to(_DTYPES[config.dtype]).eval(), tokenizer, seconds


def _measure(group: str, model: Any, tokenizer: Any, space: SearchSpace, config: BaselineConfig,
             data_dir: Path | None, tasks: list[str], slicegpt: bool, params: int) -> list[dict[str, Any]]:
    """One metric group's rows as Measurement keyword dicts (arch, supernet and software added by the caller)."""
    from nasbench.baselines._layerwise import nonzero_params
    from nasbench.profile.latency import measure_latency, peak_memory_mb

    device, dtype = config.device, config.dtype
    if group == "params":
        if slicegpt:
            return [dict(metric="params", value=float(params), unit="params",
                         extra={"what": "every parameter of the sliced model: untied head, shortcuts included"})]
        return [dict(metric="params_nonzero", value=float(nonzero_params(model)), unit="params",
                     extra={"what": "non-zero entries of every parameter; architectures.params is the dense count"})]
    if group == "ppl":
        from nasbench import data
        from nasbench.profile.perplexity import WIKITEXT2_TEST, perplexity, tokenize_corpus, windows

        text = data.read_text(space.data.get("perplexity", WIKITEXT2_TEST), data_dir)
        ids = windows(tokenize_corpus(tokenizer, text), config.seq_len, config.ppl_tokens)
        result = perplexity(model, ids, batch_size=config.batch_size)
        return [dict(metric="ppl", value=result.ppl, unit="perplexity", device=device, dtype=dtype,
                     seq_len=config.seq_len, cost_s=result.seconds,
                     extra={"tokens": int(ids.numel()), "nll": result.nll, "scored_tokens": result.n_scored_tokens})]
    if group == "acc":
        from nasbench.profile.accuracy import evaluate, write_tasks

        task_dir = write_tasks(data_dir, Path(tempfile.mkdtemp(prefix="nasbench-tasks-")))
        return [dict(metric=s.metric, value=s.value, unit=s.unit, task=s.task, device=device, dtype=dtype,
                     cost_s=s.seconds, extra={"items": s.n_items, "limit_items": config.limit_items})
                for s in evaluate(model, tokenizer, tasks, task_dir, limit=config.limit_items,
                                  batch_size=config.batch_size * 2)]
    if group == "memory":
        _, memory = peak_memory_mb(lambda: _copy_and_run(model, config), device)
        return [dict(metric="memory_mb", value=memory, unit="MiB", device=device, dtype=dtype,
                     batch=config.latency_batch, seq_len=config.latency_seq_len,
                     extra={"what": "peak growth while copying the pruned model and running one forward"})]
    lat = measure_latency(model, batch=config.latency_batch, seq_len=config.latency_seq_len,
                          repeats=config.latency_repeats)
    note = {} if slicegpt else {"note": _NO_SPEEDUP}
    return [dict(metric="latency_ms", value=lat.median_ms, unit="ms", device=device, dtype=lat.dtype,
                 batch=lat.batch, seq_len=lat.seq_len, spread=lat.iqr_ms, n_repeats=lat.repeats, cost_s=lat.seconds,
                 extra={"threads": lat.threads, "cv": lat.cv, **note,
                        "timer": "cuda-events" if device.startswith("cuda") else "perf_counter"})]


def _copy_and_run(model: Any, config: BaselineConfig) -> Any:
    dense = copy.deepcopy(model)
    ids = torch.zeros((config.latency_batch, config.latency_seq_len), dtype=torch.long, device=config.device)
    with torch.inference_mode():
        dense(input_ids=ids, use_cache=False)
    return None

