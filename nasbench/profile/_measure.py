"""Profile sub-networks into DuckDB: perplexity, lm-eval accuracy, latency, memory, FLOPs (params come with the arch).

Which archs: seeded samples, an optional parameter grid, the smallest and the largest, deduplicated by arch_id and
split deterministically by ``shard``. Resumable: a metric already stored for (arch, supernet, metric, task, device)
is skipped, and each arch's new rows are committed in one transaction, so a kill loses at most the arch in flight
and a restart adds no duplicates (with ``latency_visits`` > 1 an arch's rows are written at its last visit, so a
kill loses the visits of the archs not yet written: the same command times them again). Perplexity and accuracy
run on the sliced supernet; latency and memory on the extracted dense model.
"""

from __future__ import annotations

import importlib.metadata
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
from tqdm.auto import tqdm

from nasbench.errors import NasBenchError, check_each
from nasbench.precision import machine
from nasbench.profile.config import METRICS, ProfileConfig
from nasbench.space import SearchSpace, arch_id
from nasbench.supernet.ref import SupernetRef

if TYPE_CHECKING:  # the store (duckdb) loads on first use: the CLI's parser reads ProfileConfig without it
    from nasbench.store import Store

__all__ = ["METRICS", "ProfileConfig", "ProfileSummary", "Measurer", "select_archs", "profile", "parse_shard",
           "resolve", "plan", "store_rows", "advance"]


@dataclass
class ProfileSummary:
    archs: int
    """Archs in this shard."""
    profiled: int
    """Archs measured by this call: every arch that needed a new measurement, unless the deadline stopped it."""
    rows: int
    """New measurement rows."""
    seconds: float
    supernet_id: str
    failures: list[str] = field(default_factory=list)
    stopped: bool = False
    """The deadline ended the run before every arch was profiled."""


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise NasBenchError("shard", "must be i/n, e.g. 0/4", text) from None
    if n < 1 or not 0 <= i < n:
        raise NasBenchError("shard", "needs 0 <= i < n", text)
    return i, n


def select_archs(space: SearchSpace, config: ProfileConfig) -> list[dict[str, Any]]:
    """Explicit archs, samples, grid, smallest and largest, deduplicated in that order, then this shard's share."""
    archs = [space.check(a, f"archs[{i}]") for i, a in enumerate(config.archs)]
    archs += space.sample(config.n, seed=config.seed) if config.n else []
    if config.grid_params:
        archs += space.sample_grid(config.n, config.grid_params, seed=config.seed)
    if config.endpoints:
        archs += [space.smallest_admitted(), space.largest()]  # the smallest the space's constraints admit
    seen: dict[str, dict[str, Any]] = {}
    for arch in archs:
        seen.setdefault(arch_id(arch), space.canonical(arch))
    unique = list(seen.values())
    i, n = config.shard
    return unique[i::n]


def _software(device: str | None = None, engine: str | None = None) -> dict[str, str]:
    """Library versions and the machine every row was measured on (CPU model, the flags that decide bf16 speed,
    threads; on a CUDA device its name and the CUDA version; the engine when not in-process)."""
    out = {}
    for package in ("torch", "transformers", "lm_eval", "nasbench"):
        try:
            out[package] = importlib.metadata.version(package.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            out[package] = "unknown"
    out.update(machine())
    if device is not None and device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
        out["cuda"] = str(torch.version.cuda)
    if engine is not None:
        out["engine"] = engine
    return out


def resolve(config: ProfileConfig) -> ProfileConfig:
    """``config`` checked (metrics, tasks, dtype) with ``dtype="auto"`` decided on this machine."""
    check_each("metrics", config.metrics, METRICS)
    from nasbench.profile.accuracy import TASKS

    if "acc" in config.metrics:
        check_each("tasks", config.tasks, TASKS)
    if config.dtype == "auto":
        import dataclasses

        from nasbench.precision import resolve_precision

        fast = resolve_precision("auto", config.device.split(":")[0]) == "bf16-mixed"
        config = dataclasses.replace(config, dtype="bfloat16" if fast else "float32")
    if config.dtype not in DTYPES:
        raise NasBenchError("dtype", "must be auto, bfloat16, float16 or float32", config.dtype)
    return config


DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}


def plan(store: Store, space: SearchSpace, config: ProfileConfig, supernet: SupernetRef,
         ) -> tuple[str, list[dict[str, Any]], list[tuple[dict[str, Any], list[tuple[str, str]]]]]:
    """(supernet id, this shard's archs, [(arch, missing (group, task) pairs)] of the archs that need work); records
    the space and the supernet in ``store``."""
    supernet.require_weights()
    archs = select_archs(space, config)
    store.add_space(space)
    if not store.has_supernet(supernet.id):
        store.add_supernet(supernet.id, space.name, space.model.source, **supernet.record())
    todo = [(a, _missing(store, space, a, supernet.id, config)) for a in archs]
    return supernet.id, archs, [(a, missing) for a, missing in todo if missing]


def store_rows(store: Store, space: SearchSpace, arch: dict[str, Any], rows: list[dict[str, Any]], supernet: str,
               software: dict[str, str], replace: bool = False) -> int:
    """One arch's rows in one transaction (the only place profiling writes measurements); returns how many were new
    (``replace``: re-measured rows replace the stored ones and count as new)."""
    from nasbench.store import Measurement

    measurements = [Measurement(**r, supernet_id=supernet, software=software) for r in rows]
    before = store.count_measurements(space.name)
    if replace:
        store.add_results(space, arch, measurements, replace=True)
        return len(measurements)
    store.add_results(space, arch, measurements)
    return store.count_measurements(space.name) - before


def advance(bar: Any) -> None:
    """One arch done: the progress bar moves and shows archs per hour (the unit the benchmark's plans use)."""
    bar.update()
    elapsed_h = bar.format_dict["elapsed"] / 3600
    bar.set_postfix(archs_per_h=f"{bar.n / elapsed_h:.0f}" if elapsed_h else "-")


def profile(space: SearchSpace, db: str | Path, config: ProfileConfig, *, supernet: SupernetRef | str | None = None,
            data_dir: Path | None = None, progress: bool = True) -> ProfileSummary:
    """Profile this shard's archs into ``db`` in this process; returns a summary. ``supernet``: the weights (None: the
    space's base model; a string is resolved by :meth:`SupernetRef.resolve`). See the module docstring (and
    :func:`nasbench.profile.ray_engine.profile_ray` for the same on a Ray cluster)."""
    config = resolve(config)
    supernet = SupernetRef.resolve(supernet)
    start = time.perf_counter()
    from nasbench.store import Store

    with Store(db) as store:
        supernet_id, archs, todo = plan(store, space, config, supernet)
        summary = ProfileSummary(len(archs), 0, 0, 0.0, supernet_id)
        if not todo:
            summary.seconds = time.perf_counter() - start
            return summary
        measurer = Measurer(space, config, supernet, data_dir, groups_of(todo))
        software = _software(config.device)
        with tqdm(total=len(todo), unit="arch", desc=f"profile {space.name}", disable=not progress) as bar:
            if config.latency_visits > 1:
                _visits(store, space, measurer, todo, config, supernet_id, software, summary, bar)
            else:
                for arch, missing in todo:
                    if config.deadline is not None and time.time() >= config.deadline:
                        summary.stopped = True
                        break
                    rows = measurer.measure(arch, missing)
                    summary.rows += store_rows(store, space, arch, rows, supernet_id, software,
                                               replace=config.remeasure_before is not None)
                    summary.profiled += 1
                    advance(bar)
        measurer.supernet.reset()
    summary.seconds = time.perf_counter() - start
    return summary


def _visits(store: Store, space: SearchSpace, measurer: Measurer,
            todo: Sequence[tuple[dict[str, Any], list[tuple[str, str]]]], config: ProfileConfig, supernet_id: str,
            software: dict[str, str], summary: ProfileSummary, bar: Any) -> None:
    """``latency_rel`` in ``config.latency_visits`` visits: the archs visited that many times in turn, each
    arch's rows written (pooled) at its last visit. The deadline is checked per visit; it stops the run with the
    visits of the archs not yet written lost."""
    held: dict[str, list[Any]] = {}
    for visit in range(config.latency_visits):
        for arch, _ in todo:
            if config.deadline is not None and time.time() >= config.deadline:
                summary.stopped = True
                return
            parts = held.setdefault(arch_id(arch), [])
            parts.append(measurer.relative_visit(arch))
            if visit == config.latency_visits - 1:
                rows = measurer.pooled_rows(arch, held.pop(arch_id(arch)))
                summary.rows += store_rows(store, space, arch, rows, supernet_id, software,
                                           replace=config.remeasure_before is not None)
                summary.profiled += 1
                advance(bar)


def groups_of(todo: Sequence[tuple[dict[str, Any], list[tuple[str, str]]]]) -> set[str]:
    """The metric groups (ppl, acc, latency, ...) some arch of ``todo`` still needs."""
    return {group for _, missing in todo for group, _ in missing}


class Measurer:
    """The loaded supernet and what every arch's measurements share (the tokenized perplexity corpus, the task
    files): built once per process, by the in-process runner or by each Ray worker, then :meth:`measure` per arch."""

    def __init__(self, space: SearchSpace, config: ProfileConfig, supernet: SupernetRef,
                 data_dir: Path | None, groups: set[str], evaluation: Any = None) -> None:
        from nasbench.models import load_tokenizer
        from nasbench.supernet import Supernet

        self.space, self.config = space, config
        loaded = supernet.load(space, DTYPES[config.dtype])  # base model, trained directory or artifact
        self.supernet = Supernet(loaded.model, space)
        self.supernet.to(config.device)
        self.importance = loaded.importance
        self.tokenizer = load_tokenizer(space.model)
        self.evaluation = evaluation
        if "ppl" in groups and evaluation is None:
            self.evaluation = config.ppl_protocol().windows(space, self.tokenizer, data_dir)
        self.selection = None
        if "ppl_selection" in groups:
            if "selection" not in space.data:
                raise NasBenchError("ppl_selection", f"needs a data.selection source in the space file {space.path}",
                                    None, show_got=False)
            self.selection = config.ppl_protocol("selection").windows(space, self.tokenizer, data_dir)
        self.task_dir = None
        if "acc" in groups:
            import tempfile

            from nasbench.profile.accuracy import write_tasks

            self.task_dir = write_tasks(data_dir, Path(tempfile.mkdtemp(prefix="nasbench-tasks-")))
        self.reference: Any = None
        """The full model, extracted dense, that ``latency_rel`` is timed against (built at its first use)."""

    def _layers(self, arch: dict[str, Any]) -> list[int] | None:
        importance = self.importance
        return importance.layers_for(arch["n_layers"]) if importance and importance.layers else None

    def measure(self, arch: dict[str, Any], missing: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Every missing measurement of one arch, as Measurement keyword dicts (supernet and software added later)."""
        if self.reference is None and any(group == "latency_rel" for group, _ in missing):
            full = self.space.largest()
            self.reference = _extract_and_run(self.supernet, full, self._layers(full), self.config)
        return _measure(self.space, self.supernet, self.tokenizer, arch, missing, self.config, self.evaluation,
                        self.task_dir, self._layers(arch), self.reference, self.selection)

    def relative_visit(self, arch: dict[str, Any]) -> Any:
        """One visit of ``latency_rel`` (:attr:`ProfileConfig.latency_visits`): a fresh copy of ``arch`` timed
        against the full model for its share of the pairs (a :class:`~nasbench.profile.latency.RelativeLatency`)."""
        from nasbench.profile.latency import measure_relative_latency

        config, n = self.config, self.config.latency_visits
        full = self.space.largest()
        if self.reference is None:
            self.reference = _extract_and_run(self.supernet, full, self._layers(full), config)
        # the full model is the reference itself: 1 by definition, not a ratio of two copies' noise
        dense = (self.reference if arch_id(arch) == arch_id(full)
                 else _extract_and_run(self.supernet, arch, self._layers(arch), config))
        return measure_relative_latency(dense, self.reference, batch=config.latency_batch,
                                        seq_len=config.latency_seq_len, repeats=math.ceil(config.latency_repeats / n),
                                        decode_tokens=config.decode_tokens, decode_warmup=0,
                                        decode_repeats=math.ceil(config.decode_pairs / n))

    def pooled_rows(self, arch: dict[str, Any], visits: list[Any]) -> list[dict[str, Any]]:
        """The rows of ``arch``'s ``latency_rel`` visits pooled (and its FLOPs, which ride along every arch)."""
        from nasbench.profile.latency import pool_visits, relative_rows

        config, aid = self.config, arch_id(arch)
        return [dict(arch_id=aid, metric="flops", value=float(self.space.flops(arch, config.seq_len)),
                     unit="flop/token", device=config.device, seq_len=config.seq_len, cost_s=0.0),
                *relative_rows(pool_visits(visits), dict(arch_id=aid, device=config.device,
                                                           batch=config.latency_batch,
                                                           seq_len=config.latency_seq_len, dtype=config.dtype),
                               arch_id(self.space.largest()), config.decode_tokens)]


def _missing(store: Store, space: SearchSpace, arch: dict[str, Any], supernet: str,
             config: ProfileConfig) -> list[tuple[str, str]]:
    """(metric, task) pairs this arch still lacks; ``flops`` rides along with any of them."""
    from nasbench.profile.accuracy import PRIMARY_METRIC

    aid, device = arch_id(arch), config.device
    wanted: list[tuple[str, str, str]] = []  # (group, stored metric, task)
    for metric in config.metrics:
        if metric == "acc":
            wanted += [("acc", PRIMARY_METRIC[t], t) for t in config.tasks]
        else:
            wanted.append((metric, {"latency": "latency_ms", "memory": "memory_mb", "energy": "energy_j"}.get(
                metric, metric), ""))
            if metric == "latency_rel" and config.decode_tokens:
                wanted.append((metric, "decode_rel", ""))
    # a re-measurement (remeasure_before) counts only rows measured since then; other stores take no ``since``
    since = {} if config.remeasure_before is None else {"since": config.remeasure_before}
    return [(group, task) for group, stored, task in wanted
            if not store.has_measurement(space.name, aid, supernet, stored, task, device, **since)]


def _measure(space: SearchSpace, supernet: Any, tokenizer: Any, arch: dict[str, Any],
             missing: list[tuple[str, str]], config: ProfileConfig, evaluation: Any, task_dir: Path | None,
             layers: list[int] | None, reference: Any = None, selection: Any = None) -> list[dict[str, Any]]:
    """Every missing measurement of one arch, as Measurement keyword dicts (supernet and software added later);
    ``reference``: the dense full model ``latency_rel`` is timed against; ``selection``: the selection split's
    windows (``ppl_selection``)."""
    from nasbench.profile.accuracy import evaluate
    from nasbench.profile.latency import (measure_energy, measure_latency, measure_relative_latency, memory_footprint,
                                          relative_rows)
    from nasbench.perplexity import perplexity

    aid, device, dtype = arch_id(arch), config.device, config.dtype
    groups = {group for group, _ in missing}
    rows: list[dict[str, Any]] = [dict(arch_id=aid, metric="flops", value=float(space.flops(arch, config.seq_len)),
                                       unit="flop/token", device=device, seq_len=config.seq_len, cost_s=0.0)]
    supernet.set_sub_network(arch, layers=layers)
    if "ppl" in groups:
        result = perplexity(supernet, evaluation, batch_size=config.batch_size)
        rows.append(dict(arch_id=aid, metric="ppl", value=result.ppl, unit="perplexity", device=device, dtype=dtype,
                         seq_len=config.seq_len, cost_s=result.seconds,
                         extra={"tokens": int(evaluation.numel()), "nll": result.nll,
                                "scored_tokens": result.n_scored_tokens}))
    if "ppl_selection" in groups:
        result = perplexity(supernet, selection, batch_size=config.batch_size)
        rows.append(dict(arch_id=aid, metric="ppl_selection", value=result.ppl, unit="perplexity", device=device,
                         dtype=dtype, seq_len=config.seq_len, cost_s=result.seconds,
                         extra={"tokens": int(selection.numel()), "skip_tokens": space.data["selection"].skip_tokens,
                                "nll": result.nll, "scored_tokens": result.n_scored_tokens}))
    tasks = [task for group, task in missing if group == "acc"]
    if tasks:
        for score in evaluate(supernet.model, tokenizer, tasks, task_dir, limit=config.limit_items,
                              batch_size=config.batch_size * 2):
            rows.append(dict(arch_id=aid, metric=score.metric, value=score.value, unit=score.unit, task=score.task,
                             device=device, dtype=dtype, cost_s=score.seconds,
                             extra=score.extra(config.limit_items)))
    if groups & {"latency", "latency_rel", "memory", "energy"}:
        dense = _extract_and_run(supernet, arch, layers, config)
        if "memory" in groups:
            fp = memory_footprint(dense, batch=config.latency_batch, seq_len=config.latency_seq_len)
            common = dict(arch_id=aid, device=device, dtype=dtype, batch=config.latency_batch,
                          seq_len=config.latency_seq_len)
            # no peak meter (not Linux): a stated NULL with the reason; the exact parts below still stand
            rows.append(dict(common, metric="memory_mb", value=fp.total_mb, unit="MiB",
                             extra={"what": "weights (exact) + measured peak of one prefill", "weights_mb":
                                    fp.weights_mb, "prefill_peak_mb": fp.prefill_peak_mb, "method": fp.method}
                             if fp.total_mb is not None else {"reason": fp.method}))
            rows.append(dict(common, metric="weights_mb", value=fp.weights_mb, unit="MiB",
                             extra={"what": "exact bytes of the weights in the stored dtype, tied tensors once"}))
            rows.append(dict(common, metric="kv_bytes_per_token", value=float(fp.kv_bytes_per_token),
                             unit="bytes/token", extra={"what": "2 x layers x kv heads x head size x dtype bytes"}))
        if "latency" in groups:
            lat = measure_latency(dense, batch=config.latency_batch, seq_len=config.latency_seq_len,
                                  repeats=config.latency_repeats, decode_tokens=config.decode_tokens,
                                  decode_repeats=config.decode_pairs)
            rows.append(dict(arch_id=aid, metric="latency_ms", value=lat.median_ms, unit="ms", device=device,
                             dtype=lat.dtype, batch=lat.batch, seq_len=lat.seq_len, spread=lat.iqr_ms,
                             n_repeats=lat.repeats, cost_s=lat.seconds,
                             extra={"threads": lat.threads, "cv": lat.cv, "timer": "cuda-events"
                                    if device.startswith("cuda") else "perf_counter"}))
            if lat.decode_ms_per_token is not None:
                rows.append(dict(arch_id=aid, metric="decode_ms_per_token", value=lat.decode_ms_per_token, unit="ms",
                                 device=device, dtype=lat.dtype, batch=lat.batch, seq_len=lat.seq_len,
                                 n_repeats=lat.repeats, extra={"decode_tokens": config.decode_tokens}))
        if "latency_rel" in groups:
            # the full model is the reference itself: 1 by definition, not a ratio of two copies' noise
            same = aid == arch_id(space.largest())
            rel = measure_relative_latency(reference if same else dense, reference, batch=config.latency_batch,
                                           seq_len=config.latency_seq_len, repeats=config.latency_repeats,
                                           decode_tokens=config.decode_tokens, decode_repeats=config.decode_pairs)
            rows += relative_rows(rel, dict(arch_id=aid, device=device, batch=config.latency_batch,
                                            seq_len=config.latency_seq_len,
                                            dtype=str(next(dense.parameters()).dtype).removeprefix("torch.")),
                                  arch_id(space.largest()), config.decode_tokens)
        if "energy" in groups:
            ids = torch.randint(0, dense.config.vocab_size, (config.latency_batch, config.latency_seq_len),
                                generator=torch.Generator().manual_seed(0)).to(device)
            with torch.inference_mode():
                energy = measure_energy(lambda: dense(input_ids=ids, use_cache=False), device)
            rows.append(dict(arch_id=aid, metric="energy_j", value=energy.joules, unit="J", device=device, dtype=dtype,
                             batch=config.latency_batch, seq_len=config.latency_seq_len,
                             n_repeats=energy.calls or None, cost_s=energy.seconds,
                             extra=energy.extra(config.latency_batch * config.latency_seq_len)))
        del dense
    return rows


def _extract_and_run(supernet: Any, arch: dict[str, Any], layers: list[int] | None, config: ProfileConfig) -> Any:
    dense = supernet.extract(arch, layers=layers).to(config.device).eval()
    ids = torch.zeros((config.latency_batch, config.latency_seq_len), dtype=torch.long, device=config.device)
    with torch.inference_mode():
        dense(input_ids=ids, use_cache=False)
    return dense
