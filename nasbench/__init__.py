"""nasbench: compress LLMs by two-stage neural architecture search and query the result as a benchmark.

The public API lives here; implementation modules follow the data flow
space -> supernet -> importance -> train -> profile -> store -> surrogate -> optimize -> pareto.
"""

from nasbench.errors import (
    DataError,
    IllegalSubNetworkError,
    InvalidSpaceError,
    NasBenchError,
    StoreError,
)
from nasbench.space import DIMENSIONS, SearchSpace, arch_id, load_space
from nasbench.store import Measurement, Store

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
]
__version__ = "0.1.0"
