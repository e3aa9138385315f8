"""Build a benchmark in committed shards: a fixed, seeded list of archs cut into shards that each fit a run of a
couple of hours, profiled shard by shard into ``results/shards/``, then merged into the benchmark DB.

The arch list is a function of the space, the seed, the sizes and the given arch files only: the band archs first
(every ``results/bands/<space>-*.jsonl``), then the ``arch_files``' (e.g. a measured front, ``nasbench pareto
--format json``), then ``grid`` archs spread over ``grid_bins`` parameter bins, then seeded samples, deduplicated in
that order. Archs of the files that the grid or the samples hold anyway only move earlier: the plan's set of
``total`` archs is the same with or without them, so a front can be put first in a build under way. The largest and
the smallest admitted arch open the first shard (every ratio needs the full model). Shard ``k`` holds archs
``k * per_shard .. (k + 1) * per_shard - 1`` and lives in ``<shards>/<space>-<supernet>-<k:03d>.duckdb``.
Profiling is resumable per arch, so ``build`` run again (on this machine or a fresh clone, with the shard DBs
committed) continues where the last one stopped; ``minutes`` bounds one call (the arch in flight finishes).

``engine="ray"`` profiles each shard with :func:`nasbench.profile.ray_engine.profile_ray` inside one Ray session for
the whole build (one task per arch, the driver the only writer of the shard DB). On a CPU-only machine this is also
the way to run several 1-thread workers instead of one multi-threaded process: on a 2-core EPYC, two 1-thread
tasks measured 1.27x the accuracy archs per hour of one 2-thread process, FLOP for FLOP (lm-eval's Python and the
small matmuls of a 135M model use a second thread poorly).

Once a shard's every arch has every asked metric in the benchmark DB, the DB is its record: the shard file is deleted
after the merge (``keep_shards`` keeps it) and a later build skips the shard without it. Only the shard in progress
stays in ``results/shards/``: a DuckDB file weighs ~3 MB however few rows it holds, and every copy of the checkout
(to a GPU machine, say) carries the committed ones.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasbench.errors import NasBenchError
from nasbench.profile.config import ENGINES
from nasbench.profile._measure import ProfileConfig, profile
from nasbench.space import SearchSpace, arch_id
from nasbench.supernet.ref import SupernetRef

__all__ = ["BuildSummary", "plan_archs", "build"]


@dataclass
class BuildSummary:
    archs: int
    """Archs in the plan."""
    shards: int
    done_shards: list[int]
    """Shards with every arch profiled."""
    profiled: int
    """Archs measured by this call."""
    seconds: float
    merged: dict[str, int] | None
    stopped: bool
    failures: list[str] = dataclasses.field(default_factory=list)
    """Archs whose Ray task raised (``engine="ray"``): the rest are stored, and the same build again retries these."""


def plan_archs(space: SearchSpace, *, total: int, seed: int = 0, grid: int = 0, grid_bins: int = 10,
               bands: tuple[Path, ...] = (), arch_files: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    """The build's arch list (see the module docstring), ``total`` long (fewer only if the space is smaller).
    ``bands`` and ``arch_files``: JSONL files of arch objects or of lines holding one under ``arch``."""
    from nasbench.space.archs import read_arch_file

    archs = [arch for path in (*bands, *arch_files) for arch in read_arch_file(path, space)]
    if grid:
        archs += space.sample_grid(grid, grid_bins, seed=seed)
    seen: dict[str, dict[str, Any]] = {}
    for arch in archs:
        seen.setdefault(arch_id(arch), space.canonical(arch))
    draw = 0
    while len(seen) < total and draw < 50:  # seeded samples fill the rest (collisions are rare)
        for arch in space.sample(total, seed=seed * 1000 + draw):
            if len(seen) >= total:
                break
            seen.setdefault(arch_id(arch), arch)
        draw += 1
    return list(seen.values())[:total]


def shard_path(shards: Path, space: SearchSpace, supernet: str, k: int) -> Path:
    return shards / f"{space.name}-{supernet}-{k:03d}.duckdb"


def build(space: SearchSpace, *, supernet: SupernetRef | str | None, db: str | Path, shards: str | Path,
          config: ProfileConfig, total: int = 2000, per_shard: int = 250, grid: int = 500, grid_bins: int = 10,
          seed: int = 0, bands: tuple[Path, ...] = (), arch_files: tuple[Path, ...] = (),
          minutes: float | None = None, data_dir: Path | None = None, progress: bool = True,
          keep_shards: bool = False, engine: str = "in-process", address: str | None = None,
          cpus_per_task: int = 1) -> BuildSummary:
    """Profile the plan's shards in order (resuming), merge every shard into ``db``, then delete the shard files the
    DB holds completely (unless ``keep_shards``). ``engine``: ``in-process`` or ``ray`` (``address``: an existing
    cluster, default a local one for the call; ``cpus_per_task``: cores and torch threads of each arch's task)."""
    from nasbench.store import Store

    supernet = SupernetRef.resolve(supernet)
    if per_shard < 1 or total < 1:
        raise NasBenchError("per_shard" if per_shard < 1 else "total", "must be >= 1", min(per_shard, total))
    if engine not in ENGINES:
        raise NasBenchError("engine", f"must be one of {', '.join(ENGINES)}", engine)
    if engine == "ray":
        from nasbench.profile.ray_engine import check_job, import_ray, profile_ray, session

        ray = import_ray()  # not installed: the one-line error before any work
        check_job(config, cpus_per_task)
        engine_session = session(ray, address)
        run_shard = functools.partial(profile_ray, cpus_per_task=cpus_per_task)
    else:
        engine_session, run_shard = contextlib.nullcontext(), profile
    start = time.time()
    deadline = None if minutes is None else start + 60.0 * minutes
    archs = plan_archs(space, total=total, seed=seed, grid=grid, grid_bins=grid_bins, bands=bands,
                       arch_files=arch_files)
    supernet_id = supernet.id
    shards = Path(shards)
    shards.mkdir(parents=True, exist_ok=True)
    n_shards = (len(archs) + per_shard - 1) // per_shard
    done, profiled, stopped, failures = [], 0, False, []
    chunks = []
    for k in range(n_shards):
        chunk = tuple(archs[k * per_shard:(k + 1) * per_shard])
        if k == 0:
            chunk = (space.largest(), space.smallest_admitted(), *chunk)
        chunks.append(chunk)
    with engine_session:
        for k, chunk in enumerate(chunks):
            if not shard_path(shards, space, supernet_id, k).is_file() and _held(db, space, supernet_id, chunk, config):
                done.append(k)  # merged and its file deleted by an earlier build
                continue
            if deadline is not None and time.time() >= deadline:
                stopped = True
                break
            shard_config = dataclasses.replace(config, archs=chunk, n=0, grid_params=None, shard=(0, 1),
                                               deadline=deadline, endpoints=False)
            summary = run_shard(space, shard_path(shards, space, supernet_id, k), shard_config, supernet=supernet,
                                data_dir=data_dir, progress=progress)
            profiled += summary.profiled
            failures += summary.failures
            if summary.stopped:
                stopped = True
                break
            if not summary.failures:
                done.append(k)
    present = [shard_path(shards, space, supernet_id, k) for k in range(n_shards)]
    present = [p for p in present if p.is_file()]
    merged = None
    if present:
        with Store(db) as store:
            merged = store.merge([str(p) for p in present])
        if not keep_shards:
            for k, chunk in enumerate(chunks):
                path = shard_path(shards, space, supernet_id, k)
                if path.is_file() and _held(db, space, supernet_id, chunk, config):
                    path.unlink()
    return BuildSummary(len(archs), n_shards, done, profiled, time.time() - start, merged, stopped, failures)


def _held(db: str | Path, space: SearchSpace, supernet: str, chunk: tuple[dict[str, Any], ...],
          config: ProfileConfig) -> bool:
    """Whether ``db`` holds every asked metric of every arch of ``chunk`` (what profiling the shard would add)."""
    from nasbench.profile._measure import _missing
    from nasbench.store import Store

    if not Path(db).is_file():
        return False
    with Store(db) as store:
        return all(not _missing(store, space, arch, supernet, config) for arch in chunk)
