"""The presets of ``nasbench run``: what each stage does, as data.

``quick`` is the main job: the shipped trained supernet (when one matches the space) profiled on a small plan with the
shipped benchmark's measurement protocol, surrogates, a short optimizer comparison and a report, in its own scratch DB;
sized for <= 15 minutes on 2 CPU cores. ``full`` is the shipped benchmark's protocol: the ``nasbench build`` of
docs/profiling.md (2,000 archs in shards of 250, 500 over the parameter grid, the bands first, perplexity on 4,096
tokens in bfloat16, prefill and 16-token decode latency, memory), every optimizer over 10 seeds x 1,000 evaluations
on the surrogates, and the report beside the benchmark DB.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from nasbench.errors import NasBenchError, check_choice, one_of
from nasbench.perplexity import Protocol

__all__ = ["Preset", "RunPaths", "PRESETS", "get_preset"]


@dataclass(frozen=True)
class RunPaths:
    """Where one run reads and writes (every path resolved for a space and a results root)."""

    out: Path
    """The run directory: ``manifest.json``, the sorted and trained supernets (when trained here), the compare plots."""
    db: Path
    shards: Path
    runs_db: Path
    report: Path
    """The directory of ``REPORT.md`` and its figures."""
    cache: Path
    """The surrogate cache root."""
    bands: Path
    """Where the band files ``<space>-<percent>.jsonl`` are looked up."""
    supernets: Path
    """Where packed supernet artifacts are looked up."""


@dataclass(frozen=True)
class Preset:
    """Everything that decides what ``nasbench run`` computes (with the space, the data and the code)."""

    name: str
    # -- importance + train: only when no supernet is given and no packed artifact matches the space ----------------
    importance_tokens: int = 1024
    """Calibration tokens of the importance pass."""
    train_preset: str = "quick"
    """``nasbench train --preset``."""
    strategy: str = "importance-calibrate-mag"
    kd: str = "cosine"
    peft: str = "lora"
    train_steps: int | None = 20
    """Optimizer steps (None: the train preset's)."""
    train_options: tuple[tuple[str, Any], ...] = ()
    """Other TrainConfig fields, e.g. ``(("seq_len", 64),)``."""
    # -- profile: a ``nasbench build`` plan --------------------------------------------------------------------------
    total: int = 48
    """Archs in the plan (the largest and the smallest admitted arch are added)."""
    per_shard: int = 48
    grid: int = 12
    """Archs of the plan spread over the parameter bins."""
    grid_bins: int = 6
    seed: int = 0
    bands: bool = True
    """Profile the space's band archs (``<bands>/<space>-<percent>.jsonl``) first: the report's recovery table."""
    metrics: tuple[str, ...] = ("ppl", "latency", "latency_rel", "memory")
    """``latency_rel`` gives the default (drift-cancelled) ``latency_ms`` and ``decode_ms_per_token``; ``latency``
    the wall clocks."""
    tasks: tuple[str, ...] = ()
    limit_items: int | None = None
    ppl_tokens: int = Protocol.tokens
    seq_len: int = Protocol.seq_len
    dtype: str = "auto"
    decode_tokens: int = 16
    latency_repeats: int = 10
    minutes: float | None = None
    """No arch is started after this many minutes of the profile stage (the stage is then ``partial``; a rerun
    continues it)."""
    after_partial: bool = True
    """Run the later stages on a partial profile (False: stop after it; rerun to continue)."""
    owns_db: bool = True
    """The run's DB and shards are its own scratch files: a changed measurement protocol starts them afresh
    (otherwise it is an error: one DB never mixes protocols)."""
    # -- fit ---------------------------------------------------------------------------------------------------------
    fit_metrics: tuple[str, ...] = ("ppl", "latency_ms", "memory_mb")
    models: tuple[str, ...] | None = None
    """Surrogate candidates (None: all)."""
    # -- compare -----------------------------------------------------------------------------------------------------
    objectives: tuple[str, ...] = ("ppl", "latency_ms")
    methods: tuple[str, ...] = ("rs", "nsga2", "ls", "lsbo")
    seeds: int = 3
    max_evals: int = 40
    mode: str = "table"
    ehvi_max_evals: int = 100
    processes: int = 2
    # -- where: {root} the results directory, {repo} its parent, {space} the space name, {out} the run directory ---
    out: str = "{root}/scratch/{space}-quick"
    db: str = "{out}/bench.duckdb"
    shards: str = "{out}/shards"
    runs_db: str = "{out}/bench.duckdb"
    report: str = "{out}"
    cache: str = "{out}/surrogates"

    def __post_init__(self) -> None:
        for f in fields(self):  # tuples stay tuples (a preset is hashed as JSON and compared)
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))

    def _fail(self, field: str, rule: str, value: Any) -> NasBenchError:
        return NasBenchError(f"preset {self.name}.{field}", rule, value)

    def check(self) -> None:
        """Every field against its rule and the registries (training options, metrics, tasks, methods, surrogate
        models), before any work; the error names the field."""
        from nasbench.metrics import EXACT, metric, profile_item

        ints = {"importance_tokens": 1, "total": 1, "per_shard": 1, "grid": 0, "grid_bins": 1, "seed": 0,
                "ppl_tokens": 16, "seq_len": 8, "decode_tokens": 0, "latency_repeats": 1, "seeds": 1, "max_evals": 1,
                "ehvi_max_evals": 1, "processes": 1}
        for name, low in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise self._fail(name, f"must be an integer >= {low}", value)
        for name in ("train_steps", "limit_items"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise self._fail(name, "must be an integer >= 1 (or None)", value)
        if self.minutes is not None and not (isinstance(self.minutes, (int, float)) and math.isfinite(self.minutes)
                                             and self.minutes > 0):
            raise self._fail("minutes", "must be a finite number > 0 (or None)", self.minutes)
        if self.ppl_tokens < self.seq_len:
            raise self._fail("ppl_tokens", f"must be >= seq_len ({self.seq_len}): one window at least",
                             self.ppl_tokens)
        if self.dtype not in ("auto", "bfloat16", "float16", "float32"):
            raise self._fail("dtype", "must be auto, bfloat16, float16 or float32", self.dtype)
        if not self.metrics:
            raise self._fail("metrics", "must name at least one profile item", self.metrics)
        from nasbench.metrics import PROFILE_ITEMS

        items = {profile_item(m) for m in self.metrics}
        bad = sorted(items - set(PROFILE_ITEMS))
        if bad:
            raise self._fail("metrics", f"each must be a profile item ({', '.join(PROFILE_ITEMS)})", bad[0])
        if "ppl" not in items:
            raise self._fail("metrics", "must include ppl (the surrogates and the report need it)", self.metrics)
        if "acc" in items:
            from nasbench.profile.accuracy import TASKS

            bad = [t for t in self.tasks if t not in TASKS]
            if bad or not self.tasks:
                raise self._fail("tasks", f"acc needs tasks, each one of {', '.join(TASKS)}", bad or self.tasks)
        for m in self.fit_metrics:
            known = metric(m)
            needs = known.profiled_by if known else ""
            if known is None or m in EXACT or needs not in items:
                raise self._fail("fit_metrics", f"each must be a measured metric of the profiled items "
                                                f"({', '.join(sorted(items))})", m)
        if len(self.objectives) < 2 or any(o not in (*self.fit_metrics, *EXACT) for o in self.objectives):
            raise self._fail("objectives", "two or more, each a fit metric or an exact one (params, flops)",
                             self.objectives)
        from nasbench.optimize.methods import METHODS

        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise self._fail("methods", one_of(METHODS, each=True), bad or self.methods)
        if self.mode not in ("table", "surrogate"):
            raise self._fail("mode", "must be table or surrogate", self.mode)
        if self.models is not None:
            from nasbench.surrogate._regressors import CANDIDATES

            bad = [m for m in self.models if m not in CANDIDATES]
            if bad or not self.models:
                raise self._fail("models", one_of(CANDIDATES, each=True), bad or self.models)
        from nasbench.train.config import IMPORTANCE_STRATEGIES, KD_LOSSES, PEFT_MODES, STRATEGIES, make_config

        for name, allowed in (("strategy", STRATEGIES), ("kd", KD_LOSSES), ("peft", PEFT_MODES)):
            if getattr(self, name) not in allowed:
                raise self._fail(name, one_of(allowed), getattr(self, name))
        if self.strategy not in IMPORTANCE_STRATEGIES:
            raise self._fail("strategy", "must be an importance-* strategy (the run sorts the supernet first)",
                             self.strategy)
        try:
            make_config(self.train_preset, **dict(self.train_options), steps=self.train_steps)
        except NasBenchError as exc:
            raise self._fail(f"train_options {exc.where}", exc.rule, exc.got) from None
        keys = {"root": "results", "repo": ".", "space": "x"}
        for name in ("out", "db", "shards", "runs_db", "report", "cache"):
            try:
                value = getattr(self, name).format(**keys)
            except (KeyError, IndexError, ValueError):
                where = "{root}, {repo} and {space}" if name == "out" else "{root}, {repo}, {space} and {out}"
                raise self._fail(name, f"a path template may use {where} only", getattr(self, name)) from None
            keys.setdefault("out", value)

    def paths(self, root: str | Path, space: str) -> RunPaths:
        root = Path(root)
        keys = {"root": root.as_posix(), "repo": root.parent.as_posix(), "space": space}
        out = self.out.format(**keys)
        keys["out"] = out
        resolved = {name: Path(getattr(self, name).format(**keys)) for name in
                    ("db", "shards", "runs_db", "report", "cache")}
        return RunPaths(out=Path(out), bands=root / "bands", supernets=root / "supernets", **resolved)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, Preset] = {
    # the shipped protocol (ppl on 4,096 tokens, prefill latency timed alone and alternately with the full model, a
    # 16-token decode, memory) on 48 + 2 archs, the 32
    # band archs first: ~4 s of CPU per arch as the shipped build measured them (results/smollm2-135m.duckdb cost_s)
    "quick": Preset(name="quick"),
    "full": Preset(
        name="full", importance_tokens=8192, train_preset="recovery", strategy="importance-grid-params", kd="kl",
        peft="lora", train_steps=140, total=2000, per_shard=250, grid=500, grid_bins=10, seed=0, bands=True,
        metrics=("ppl", "latency", "latency_rel", "memory"), ppl_tokens=Protocol.tokens, seq_len=Protocol.seq_len, dtype="bfloat16",
        decode_tokens=16,
        after_partial=False, owns_db=False, fit_metrics=("ppl", "latency_ms", "memory_mb"),
        objectives=("ppl", "latency_ms"), methods=("rs", "morea", "ehvi", "nsga2", "ls", "rsbo", "lsbo"), seeds=10,
        max_evals=1000, mode="surrogate", ehvi_max_evals=100, processes=2,
        out="{root}/{space}/run-full", db="{root}/{space}.duckdb", shards="{root}/shards",
        runs_db="{root}/{space}-runs.duckdb", report="{root}/{space}", cache="{repo}/surrogates"),
}


def get_preset(name: str) -> Preset:
    return PRESETS[check_choice("preset", name, PRESETS)]
