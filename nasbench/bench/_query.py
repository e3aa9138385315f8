"""``nasbench bench query``: batch and single-query speed of :class:`Benchmark`, and Syne Tune's ``add_surrogate`` on
the same data for comparison."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from nasbench.space import DIMENSIONS, SearchSpace
from nasbench.surrogate.benchmark import Benchmark

__all__ = ["bench_query"]


def sample_matrix(space: SearchSpace, n: int, seed: int = 0) -> np.ndarray:
    """``n`` valid archs as an :meth:`~SearchSpace.encode` matrix: every dimension drawn as
    :meth:`~nasbench.space.Dimension.sample` draws it, invalid draws rejected (the distribution of
    :meth:`SearchSpace.sample`, vectorised for scalar spaces)."""
    rng = np.random.default_rng(seed)
    parts, have = [], 0
    while have < n:
        m = max(2 * (n - have), 1024)
        x = np.empty((m, len(DIMENSIONS)))
        for j, name in enumerate(DIMENSIONS):
            dim = space.dimensions[name]
            if dim.kind in ("fixed", "choice"):
                x[:, j] = rng.choice(np.asarray(dim.values), size=m)
            elif dim.kind == "int":
                x[:, j] = rng.integers(dim.values[0], dim.values[1] + 1, size=m)
            else:
                low, high = dim.values
                x[:, j] = np.minimum(high, np.floor(np.exp(rng.uniform(np.log(low), np.log(high + 1), size=m))))
        if space.model_family.kv_follows_heads:
            x[:, DIMENSIONS.index("n_kv_groups")] = x[:, DIMENSIONS.index("n_heads")]
        x = x[space.valid_mask(x)]
        parts.append(x)
        have += len(x)
    return np.concatenate(parts)[:n]


def bench_query(db: str | Path, space: Any, supernet: str | None = None, metrics: Sequence[str] | None = None,
                n_batch: int = 100_000, n_single: int = 200, cache: str | Path | None = None,
                models: Sequence[str] | None = None, seed: int = 0) -> dict[str, Any]:
    """Batched surrogate queries (configs/s), single-arch queries (median ms) and Syne Tune's ``add_surrogate``
    answering the same single archs; surrogates are fitted before the clock starts."""
    from sklearn.neighbors import KNeighborsRegressor
    from syne_tune.blackbox_repository import add_surrogate

    bm = Benchmark.open(db, space, supernet, cache=cache, **({"models": tuple(models)} if models else {}))
    metrics = [m for m in (metrics or bm.default_metrics) if m != "params"]
    bm.fit([m for m in metrics if m not in ("flops", "cost_s")])
    batch = sample_matrix(bm.space, n_batch, seed)
    frame = pd.DataFrame(batch.astype(np.int64), columns=list(DIMENSIONS))
    bm.query(frame.head(1000), metrics, mode="surrogate")  # warm-up (imports, DuckDB)
    start = time.perf_counter()
    bm.query(frame, metrics, mode="surrogate")
    batch_s = time.perf_counter() - start

    singles = [dict(zip(DIMENSIONS, map(int, row))) for row in sample_matrix(bm.space, n_single, seed + 1)]
    times = []
    for arch in singles:
        start = time.perf_counter()
        bm.query([arch], metrics, mode="surrogate")
        times.append(time.perf_counter() - start)

    # Syne Tune's way: a tabular blackbox of the same measured archs, wrapped by add_surrogate with its documented
    # example surrogate, queried one config at a time (its only interface)
    objectives = [m for m in metrics if m not in ("flops", "cost_s")]
    blackbox = bm.blackbox(objectives, mode="table")
    surrogate_bb = add_surrogate(blackbox, surrogate=KNeighborsRegressor(n_neighbors=1))
    configs = [{k: arch[k] for k in blackbox.configuration_space} for arch in singles]
    surrogate_bb.objective_function(configs[0], fidelity={"step": 1})
    st_times = []
    for config in configs:
        start = time.perf_counter()
        surrogate_bb.objective_function(config, fidelity={"step": 1})
        st_times.append(time.perf_counter() - start)
    configs_per_s = n_batch / batch_s
    st_single_ms = float(np.median(st_times) * 1e3)
    return {"bench": "query", "batch_configs_per_s": round(configs_per_s), "single_query_ms":
            round(float(np.median(times) * 1e3), 3), "vs_syne_tune_add_surrogate":
            round(configs_per_s / (1e3 / st_single_ms), 1), "syne_tune_single_ms": round(st_single_ms, 3),
            "metrics": metrics, "n_batch": n_batch, "distinct_in_batch": int(len(np.unique(batch, axis=0))),
            "space": bm.space.name, "supernet": bm.supernet_id,
            "models": {m: bm.surrogate(m).model_name for m in objectives}}
