"""The metric registry: every metric nasbench knows, once, with its unit, direction, scale and origin.

Ground floor (imports nothing of nasbench): the space validates its ``objectives`` against it, the surrogates take their
log transform and exact/weight-free sets from it, fronts and hypervolumes their directions and log scales, ``publish``
its units. Column names of the wide views are made and read here only (:func:`metric_column`, :func:`hp_column`,
:func:`metric_name`, :func:`hp_name`).

Three prefill latencies, one of them the default (``docs/profiling.md`` gives each one's test-retest agreement):

* ``latency_ms``, the default that views, the surrogates, ``compare``, ``pareto``, the publication and the report
  use: drift-cancelled milliseconds, ``latency_rel`` times the median of the full model's wall-clock prefill times
  re-timed beside every arch (``extra.reference_ms`` of the ``latency_rel`` rows of the same space, device, dtype,
  batch and prompt length). No row stores it: the store's reader layer derives it
  (:mod:`nasbench.store.readings`), so it ranks archs exactly as ``latency_rel`` does and reads in milliseconds of
  the machine at its median speed. A DB, or a pruning baseline, without ``latency_rel`` rows has no ``latency_ms``.
* ``latency_wall_ms``: the wall clock of one measurement (median of its repeats), including whatever the machine's
  speed was at that minute. The profiler stores it as ``measurements.metric = 'latency_ms'`` (:data:`STORED_AS`).
* ``latency_rel``: the prefill time over the full model's, the two timed alternately (1 for the full model);
  ``decode_rel`` the same for the decode time per token (measured with ``--decode-tokens``).

Decode has the same pair: ``decode_ms_per_token``, the default, is ``decode_rel`` times the full model's median decode
time per token re-timed beside every arch (derived as ``latency_ms`` is); ``decode_wall_ms_per_token`` the wall clock
of one measurement, stored as ``measurements.metric = 'decode_ms_per_token'``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

__all__ = ["Metric", "METRICS", "CHANCE", "TASK_METRICS", "OBJECTIVE_METRICS", "COST", "LOG_SCALE", "LOG_FIT", "EXACT",
           "WEIGHT_FREE", "SHARED", "TIMED", "STORED_AS", "DERIVED", "PROFILE_ITEMS", "profile_item", "metric",
           "is_maximized", "directions", "direction", "unit", "metric_column", "metric_name", "hp_column", "hp_name",
           "METRIC_PREFIX", "HP_PREFIX"]

METRIC_PREFIX = "metric_"
HP_PREFIX = "hp_"


@dataclass(frozen=True)
class Metric:
    """One metric of the benchmark."""

    name: str
    """The bare name (``ppl``); a task metric's columns carry the task as a suffix (``acc_arc_easy``)."""
    unit: str
    """As the space files' ``objectives[].unit`` and the published card write it ('' where none is recorded)."""
    maximize: bool = False
    """Larger is better (accuracies); everything else is minimised."""
    log_scale: bool = False
    """Fronts, hypervolumes and knees are taken on log(value): values span orders of magnitude."""
    log_fit: bool = False
    """Surrogates model log(value) (positive metrics spanning orders of magnitude)."""
    exact: bool = False
    """Computed from the arch by the space's formulas, never measured."""
    weight_free: bool = False
    """Measured on the dense extracted model: depends on shapes, not weights, so it is shared by every supernet."""
    task: bool = False
    """Measured per lm-eval task (the column carries the task suffix)."""
    profiled_by: str = ""
    """The ``nasbench profile --metrics`` item that measures it, or whose rows it averages (``acc_avg``) or derives
    it from (``latency_ms``); '' for the computed ones."""
    timed: bool = False
    """Measured by timing, so two readings of the same arch differ: ``Benchmark.query`` returns its spread beside the
    value (the repeats' IQR where the rows keep one) and draws noisy readings from it."""
    stored_as: str = ""
    """The ``measurements.metric`` its rows carry where that differs from ``name`` (''), see :data:`STORED_AS`."""
    derived_from: str = ""
    """The stored metric it is computed from at read time ('' for a stored one), see :data:`DERIVED`."""

    @property
    def column(self) -> str:
        return METRIC_PREFIX + self.name


_ALL = (
    Metric("ppl", "perplexity", log_scale=True, log_fit=True, profiled_by="ppl"),
    # the same protocol on the space's selection split (text disjoint from the reported tokens and the training data):
    # what picks an arch, so that the pick is then scored on tokens it was not chosen on
    Metric("ppl_selection", "perplexity", log_scale=True, log_fit=True, profiled_by="ppl_selection"),
    Metric("acc_avg", "accuracy", maximize=True, profiled_by="acc"),
    Metric("acc_chance_avg", "accuracy above chance", maximize=True, profiled_by="acc"),
    # the default latency: drift-cancelled, latency_rel x its reference's median wall clock (module docstring)
    Metric("latency_ms", "ms", log_fit=True, weight_free=True, profiled_by="latency_rel", timed=True,
           derived_from="latency_rel"),
    Metric("latency_wall_ms", "ms", log_fit=True, weight_free=True, profiled_by="latency", timed=True,
           stored_as="latency_ms"),
    # the default decode latency per token: drift-cancelled, decode_rel x its reference's median (as latency_ms)
    Metric("decode_ms_per_token", "ms", log_fit=True, weight_free=True, profiled_by="latency_rel", timed=True,
           derived_from="decode_rel"),
    Metric("decode_wall_ms_per_token", "ms", log_fit=True, weight_free=True, profiled_by="latency", timed=True,
           stored_as="decode_ms_per_token"),
    Metric("latency_rel", "x full model", log_fit=True, weight_free=True, profiled_by="latency_rel", timed=True),
    # the decode time per token over the full model's, the two timed alternately (profile --decode-tokens N)
    Metric("decode_rel", "x full model", log_fit=True, weight_free=True, profiled_by="latency_rel", timed=True),
    Metric("params", "params", exact=True),
    Metric("flops", "flop/token", exact=True),
    Metric("memory_mb", "MiB", log_fit=True, weight_free=True, profiled_by="memory"),
    Metric("weights_mb", "MiB", log_fit=True, weight_free=True, profiled_by="memory"),
    Metric("kv_bytes_per_token", "bytes/token", weight_free=True, profiled_by="memory"),
    Metric("params_nonzero", "params"),
    Metric("energy_j", "J", log_fit=True, weight_free=True, profiled_by="energy"),
    Metric("cost_s", "s", log_fit=True),
    Metric("acc", "accuracy", maximize=True, task=True, profiled_by="acc"),
    Metric("acc_norm", "accuracy", maximize=True, task=True, profiled_by="acc"),
    Metric("mc2", "accuracy", maximize=True, task=True, profiled_by="acc"),
    Metric("target_ppl", "", task=True, profiled_by="acc"),
)
#: Per lm-eval task, the ``acc`` of uniform guessing (1 / choices; ARC's few 3-choice items move it by < 0.001 over
#: its first 500 items; LAMBADA's exact next word has none): ``acc_chance_avg`` is the mean over tasks of
#: ``(acc - chance) / (1 - chance)``, 0 at chance and 1 when every item is right, whatever the number of choices.
CHANCE = {"arc_easy": 0.25, "arc_challenge": 0.25, "boolq": 0.5, "hellaswag": 0.25, "openbookqa": 0.25,
          "piqa": 0.5, "social_iqa": 1 / 3, "winogrande": 0.5, "mmlu": 0.25, "lambada": 0.0}
#: The items of ``nasbench profile --metrics``: each measures the registry's metrics whose ``profiled_by`` names it.
PROFILE_ITEMS = ("ppl", "ppl_selection", "acc", "latency", "latency_rel", "memory", "energy")
#: name -> Metric, in the order above.
METRICS: dict[str, Metric] = {m.name: m for m in _ALL}
#: Metrics an objective may name as they are; :data:`TASK_METRICS` also with a task suffix.
OBJECTIVE_METRICS = tuple(m.name for m in _ALL if not m.task)
TASK_METRICS = tuple(m.name for m in _ALL if m.task)
COST = METRICS["cost_s"].column
LOG_SCALE = frozenset(m.name for m in _ALL if m.log_scale)
LOG_FIT = tuple(m.name for m in _ALL if m.log_fit)
EXACT = tuple(m.name for m in _ALL if m.exact)
WEIGHT_FREE = tuple(m.name for m in _ALL if m.weight_free)
#: Metrics whose value depends on an arch's shape only (weight-free and exact ones): the store keeps one row per arch
#: and protocol under the neutral supernet id ``''``, and every supernet's wide view shows it.
SHARED = WEIGHT_FREE + EXACT
#: Timed metrics: a reading varies from one measurement to the next (:attr:`Metric.timed`).
TIMED = tuple(m.name for m in _ALL if m.timed)
#: Reader name -> the ``measurements.metric`` its rows are stored under, where they differ. The profiler and the
#: baselines store the prefill wall clock as ``latency_ms`` and the decode wall clock as ``decode_ms_per_token``, the
#: names they had before the drift-cancelled latencies took them; every reader (the wide views, ``Benchmark``, the
#: publication, the report) sees those rows as ``latency_wall_ms`` / ``decode_wall_ms_per_token``. Only
#: :mod:`nasbench.store.readings` renames.
STORED_AS = {m.name: m.stored_as for m in _ALL if m.stored_as}
#: Derived metric -> the stored metric it is computed from at read time (:mod:`nasbench.store.readings`).
DERIVED = {m.name: m.derived_from for m in _ALL if m.derived_from}
_MAXIMIZED_PREFIXES = tuple(m.name for m in _ALL if m.maximize and m.task)


def metric_column(name: str, task: str = "") -> str:
    """``metric_<name>[_<task>]``, the wide views' column of a metric."""
    return f"{METRIC_PREFIX}{name}_{task}" if task else METRIC_PREFIX + name


def metric_name(column: str) -> str:
    """The metric name of a wide-view column (``metric_acc_arc_easy`` -> ``acc_arc_easy``); a bare name stays."""
    return column.removeprefix(METRIC_PREFIX)


def hp_column(dimension: str) -> str:
    return HP_PREFIX + dimension


def hp_name(column: str) -> str:
    return column.removeprefix(HP_PREFIX)


def profile_item(name: str) -> str:
    """The ``nasbench profile --metrics`` item that measures ``name``: an item stays itself, a metric of the registry
    becomes the item that profiles it (``latency_ms`` -> ``latency``); anything else is returned unchanged."""
    if name in PROFILE_ITEMS:
        return name
    found = metric(name)
    return found.profiled_by if found is not None and found.profiled_by else name


def metric(name: str) -> Metric | None:
    """The registry entry of a metric name or column, a task metric's with its task suffix; None when unknown."""
    bare = metric_name(name)
    if bare in METRICS:
        return METRICS[bare]
    matches = [m for m in TASK_METRICS if bare.startswith(m + "_")]
    return METRICS[max(matches, key=len)] if matches else None


def is_maximized(name: str) -> bool:
    """Accuracies (acc*, mc2*) are better when higher; everything else is minimised."""
    found = metric(name)
    return found.maximize if found is not None else metric_name(name).startswith(_MAXIMIZED_PREFIXES)


def directions(names: Sequence[str]) -> list[bool]:
    """``minimize`` flags for metric names or columns: accuracies are maximised."""
    return [not is_maximized(n) for n in names]


def direction(name: str) -> str:
    """``maximize`` or ``minimize``."""
    return "maximize" if is_maximized(name) else "minimize"


def unit(name: str) -> str:
    """The unit of a metric name or column ('' when unknown and not an accuracy)."""
    found = metric(name)
    if found is None:
        return "accuracy" if is_maximized(name) else ""
    return found.unit
