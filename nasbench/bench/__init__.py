"""The speed checks behind ``nasbench bench ...``: each measures one stage on this machine and returns one flat dict
of figures (the CLI prints it as one JSON line).

- :func:`bench_slicing`: the sliced supernet against the extracted dense model;
- :func:`bench_importance`: the importance scoring pass against a plain forward;
- :func:`bench_train`: a recovery sandwich step against the matmul rate and the same sub-networks trained dense;
- :func:`bench_profile`, :func:`bench_accuracy`: the profiling passes (perplexity, latency, the shipped protocol's
  archs per hour; the accuracy pass against lm-eval's own);
- :func:`bench_latency_model`, :func:`validate_latency_model`: the op-level latency model, timed and fitted, or
  scored against a DB's measured latencies;
- :func:`bench_query`: batched and single surrogate queries of a benchmark DB, and Syne Tune's ``add_surrogate``.

A driver beside the CLI: it reaches into every stage, so no stage imports it.
"""

from __future__ import annotations

from nasbench.lazy import lazy_getattr

# each check loads its stage on first use (torch, duckdb, Syne Tune): the CLI's parser imports none of them
_LAZY = {
    "bench_slicing": "nasbench.bench._supernet",
    "bench_importance": "nasbench.bench._importance",
    "bench_train": "nasbench.bench._train",
    "bench_profile": "nasbench.bench._profile",
    "bench_accuracy": "nasbench.bench._profile",
    "bench_latency_model": "nasbench.bench._latency_model",
    "validate_latency_model": "nasbench.bench._latency_model",
    "bench_query": "nasbench.bench._query",
}

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = list(_LAZY)
