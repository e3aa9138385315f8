"""nasbench: compress LLMs by two-stage neural architecture search and query the result as a benchmark.

The public API lives here; implementation modules follow the data flow
space -> supernet -> importance -> train -> profile -> store -> surrogate -> optimize -> pareto.
Modules that import torch or transformers are loaded on first use, so ``import nasbench`` stays fast.
"""

from __future__ import annotations

from nasbench.errors import (
    DataError,
    IllegalSubNetworkError,
    InvalidSpaceError,
    NasBenchError,
    StoreError,
)
from nasbench.lazy import lazy_getattr
from nasbench.space import DIMENSIONS, SearchSpace, arch_id, load_space

_LAZY = {
    "Measurement": "nasbench.store",  # duckdb loads on first use: training needs none (GPU machines lack it)
    "Store": "nasbench.store",
    "Supernet": "nasbench.supernet",
    "SupernetRef": "nasbench.supernet",
    "export": "nasbench.supernet",
    "load_base_model": "nasbench.models",
    "load_tokenizer": "nasbench.models",
    "tiny_space": "nasbench.models",
    "Importance": "nasbench.importance",
    "sort_model": "nasbench.importance",
    "run_rpd": "nasbench.importance",
    "bench_slicing": "nasbench.bench",
    "bench_importance": "nasbench.bench",
    "perplexity": "nasbench.perplexity",
    "wikitext_perplexity": "nasbench.perplexity",
}

__all__ = [
    "DIMENSIONS",
    "DataError",
    "IllegalSubNetworkError",
    "InvalidSpaceError",
    "Measurement",
    "NasBenchError",
    "SearchSpace",
    "Store",
    "StoreError",
    "arch_id",
    "load_space",
    *_LAZY,
]
__version__ = "0.2.0"


__getattr__ = lazy_getattr(__name__, _LAZY)
