"""Profiling on a Ray cluster (``nasbench profile ... --engine ray [--address ADDR]``; ``pip install nasbench[ray]``).

The same archs, rows and resume rules as the in-process runner (:mod:`nasbench.profile._measure`), spread over Ray:

- one Ray *task* per arch, not an actor per worker: Ray re-runs a task whose worker process or node died
  (``max_retries``), so a ``kill -9`` of a worker loses only its arch in flight, which runs again elsewhere;
- each worker process keeps the loaded supernet between its tasks (a module-level cache keyed by what the model
  depends on), so a model is loaded once per worker, not once per arch;
- on CUDA every task asks for ``num_gpus=1``: Ray gives it a GPU of its own (``CUDA_VISIBLE_DEVICES``), which is
  ``cuda`` inside the task; on CPU it asks for ``cpus_per_task`` cores and pins torch to that many threads;
- only the driver writes DuckDB (one writer per file: DuckDB locks it), each arch's rows in one transaction as its
  task returns them; the worker's machine (CPU, GPU, threads) travels back with the rows as their provenance;
- at most as many tasks are submitted as the cluster has slots, so ``deadline`` stops the run after the archs in
  flight, as in-process.

A task that raises (e.g. out of memory on one arch) is not retried (the error is deterministic more often than not);
its arch is listed in the summary's ``failures`` and the run goes on: rerun the same command to try it again.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from tqdm.auto import tqdm

from nasbench.errors import NasBenchError
from nasbench.profile._measure import (Measurer, ProfileConfig, ProfileSummary, _software, advance,
                                     groups_of, plan, resolve, store_rows)
from nasbench.space import SearchSpace, arch_id
from nasbench.supernet.ref import SupernetRef

__all__ = ["profile_ray", "profile_arch", "Job", "check_job", "session", "local_cluster", "import_ray", "RETRIES"]

#: Ray re-runs a task whose worker or node died this many times before the arch counts as failed.
RETRIES = 3
#: How long the raylet waits for its agent process to register (``RAY_agent_register_timeout_ms``), raised for a
#: busy 2-core machine (CI) where importing the agent takes over a minute. (Ray >= 2.5x also waits a fixed 15 s for
#: the agent's port files and aborts the node on a busy machine: constraints.txt pins 2.44.1.)
AGENT_TIMEOUT_MS = "300000"


def import_ray() -> Any:
    """The ``ray`` module, or the one-line error that says how to install it."""
    try:
        import ray
    except ImportError:
        raise NasBenchError("engine", "ray is not installed: pip install nasbench[ray]", "ray") from None
    return ray


@dataclass(frozen=True)
class Job:
    """What every task of one run shares, put in Ray's object store once."""

    space: SearchSpace
    config: ProfileConfig
    supernet: SupernetRef
    """With an absolute path: a worker may start in another directory."""
    data_dir: str | None
    groups: frozenset[str]
    evaluation: Any
    """The perplexity windows, tokenized once by the driver (workers need no copy of the corpus)."""
    cpus_per_task: int

    @property
    def model_key(self) -> tuple[Any, ...]:
        """What the worker's loaded state depends on (not the latency protocol, which is read per task)."""
        c = self.config
        return (self.space.hash, self.space.path, self.supernet, self.data_dir, c.dtype, c.device, c.seq_len,
                c.ppl_tokens, "ppl" in self.groups, "acc" in self.groups)


_MEASURERS: dict[tuple[Any, ...], Measurer] = {}


def profile_arch(job: Job, arch: dict[str, Any], missing: list[tuple[str, str]],
                 ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The body of one Ray task: the arch's rows and the provenance of the machine that measured them."""
    torch.set_num_threads(job.cpus_per_task)  # the cores Ray reserved for this task, recorded in the rows
    measurer = _MEASURERS.get(job.model_key)
    if measurer is None:
        _MEASURERS.clear()  # one model per worker process: another run's model makes room for this one
        measurer = _MEASURERS[job.model_key] = Measurer(
            job.space, job.config, job.supernet, None if job.data_dir is None else Path(job.data_dir),
            set(job.groups), evaluation=job.evaluation)
    measurer.config = job.config
    try:
        return measurer.measure(arch, missing), _software(job.config.device, engine="ray")
    finally:
        measurer.supernet.reset()


def profile_ray(space: SearchSpace, db: str | Path, config: ProfileConfig, *, supernet: SupernetRef | str | None = None,
                data_dir: Path | None = None, address: str | None = None, cpus_per_task: int = 1,
                retries: int = RETRIES, progress: bool = True) -> ProfileSummary:
    """Profile this shard's archs into ``db`` with one Ray task per arch; see the module docstring.

    ``address``: an existing cluster (``auto``, ``HOST:6379``, ``ray://HOST:10001``); ``None``: the session this
    process already joined (``ray.init`` before the call), else a one-node cluster on this machine for the run.
    """
    ray = import_ray()
    check_job(config, cpus_per_task)
    config = resolve(config)
    supernet = SupernetRef.resolve(supernet).absolute()
    start = time.perf_counter()
    from nasbench.store import Store

    with Store(db) as store:
        supernet_id, archs, todo = plan(store, space, config, supernet)
        summary = ProfileSummary(len(archs), 0, 0, 0.0, supernet_id)
        if todo:
            groups = groups_of(todo)
            evaluation = None
            if "ppl" in groups:
                from nasbench.models import load_tokenizer

                evaluation = config.ppl_protocol().windows(space, load_tokenizer(space.model), data_dir)
            job = Job(space, config, supernet,
                       None if data_dir is None else str(Path(data_dir).resolve()), frozenset(groups), evaluation,
                       cpus_per_task)
            with session(ray, address):
                _run(ray, store, space, job, todo, supernet_id, summary, retries, progress)
    summary.seconds = time.perf_counter() - start
    return summary


def check_job(config: ProfileConfig, cpus_per_task: int) -> None:
    """The one-line errors of a Ray run's settings, before a cluster starts."""
    if config.device.startswith("cuda:"):
        raise NasBenchError("device", "with the ray engine every task gets one GPU of its own: use cuda",
                            config.device)
    if cpus_per_task < 1:
        raise NasBenchError("cpus_per_task", "must be >= 1", cpus_per_task)
    if config.latency_visits > 1:  # visits revisit the archs in one process, one reference timed throughout
        raise NasBenchError("latency_visits", "above 1 needs the in-process engine", config.latency_visits)


def _run(ray: Any, store: Any, space: SearchSpace, job: Job, todo: list[tuple[dict[str, Any], list[Any]]],
         supernet_id: str, summary: ProfileSummary, retries: int, progress: bool) -> None:
    """Submit the archs as slots free up, store each arch's rows as its task returns them."""
    gpu = job.config.device.startswith("cuda")
    task = ray.remote(profile_arch).options(num_cpus=job.cpus_per_task, num_gpus=1 if gpu else 0,
                                            max_retries=retries, retry_exceptions=False)
    job_ref = ray.put(job)
    queue = iter(todo)
    pending: dict[Any, dict[str, Any]] = {}
    exhausted = False
    with tqdm(total=len(todo), unit="arch", desc=f"profile {space.name} (ray)", disable=not progress) as bar:
        while True:
            while not exhausted and len(pending) < _slots(ray, gpu, job.cpus_per_task):
                if job.config.deadline is not None and time.time() >= job.config.deadline:
                    summary.stopped, exhausted = True, True
                    break
                item = next(queue, None)
                if item is None:
                    exhausted = True
                    break
                pending[task.remote(job_ref, *item)] = item[0]
            if not pending:
                break
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            arch = pending.pop(ref)
            try:
                rows, software = ray.get(ref)
            except ray.exceptions.RayError as exc:  # the task raised, or its worker died more than `retries` times
                summary.failures.append(f"{arch_id(arch)}: {type(exc).__name__}: {str(exc).strip()[-500:]}")
            else:
                summary.rows += store_rows(store, space, arch, rows, supernet_id, software,
                                           replace=job.config.remeasure_before is not None)
                summary.profiled += 1
            advance(bar)


def _slots(ray: Any, gpu: bool, cpus_per_task: int) -> int:
    """Tasks the cluster can run at once now (an autoscaling cluster grows: asked again before every submission)."""
    resources = ray.cluster_resources()
    return max(1, int(resources.get("GPU", 0)) if gpu else int(resources.get("CPU", 1) // cpus_per_task))


@contextmanager
def session(ray: Any, address: str | None) -> Iterator[None]:
    """Join ``address``, or the session already joined, or start a local cluster; leave what was already there.
    (``build`` holds one around all its shards: one cluster start, and each worker keeps its loaded model.)"""
    if ray.is_initialized():
        yield
    elif address is not None:
        ray.init(address=address, log_to_driver=False)
        try:
            yield
        finally:
            ray.shutdown()
    else:
        with local_cluster():
            yield


@contextmanager
def local_cluster(num_cpus: int | None = None, num_gpus: int | None = None) -> Iterator[Any]:
    """A one-node Ray cluster on this machine (``ray.init`` without an address), joined by this process and shut
    down on exit; yields the ``ray`` module. No dashboard: nothing here reads it, and it is the slowest part to
    start on a busy machine."""
    ray = import_ray()
    os.environ.setdefault("RAY_agent_register_timeout_ms", AGENT_TIMEOUT_MS)
    ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
