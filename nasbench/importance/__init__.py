"""Importance sorting: score heads, MLP neurons, embedding channels and layers on calibration tokens, permute the
weights so that every prefix sub-network keeps the most important ones, and measure what sorting buys (the RPD study).

- ``_schemes``: the aggregation schemes, layer schemes and defaults, without torch (the CLI's parser reads them);
- ``_scores``: the activation scores (:func:`score`, :func:`layer_importance`) and the sorted supernet
  (:func:`sort_model`);
- ``_rpd``: the RPD study (:func:`run_rpd`, ``nasbench bench rpd``): perplexity of prefix sub-networks before and
  after sorting, stored as rows of a DB.
"""

from __future__ import annotations

from nasbench.importance._schemes import (
    AGGREGATIONS,
    DEFAULT_LAYER_SCHEME,
    DEFAULT_SCHEME,
    LAYER_SCHEMES,
    SCHEMES,
    SORT_SEQ_LEN,
    SORT_TOKENS,
    STUDY_TOKENS,
)
from nasbench.lazy import lazy_getattr

# torch loads on first use (the CLI's parser reads the schemes above without it), and the RPD study's store (duckdb,
# which GPU machines lack) only when the study runs
_LAZY = {
    **dict.fromkeys(("IMPORTANCE_FILE", "Importance", "score", "layer_importance", "apply_order", "family_of",
                     "calibration_windows", "sort_model", "load_importance", "sub_network_indices"),
                    "nasbench.importance._scores"),
    **dict.fromkeys(("RpdResult", "run_rpd", "variant_id"), "nasbench.importance._rpd"),
}

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = [
    "AGGREGATIONS",
    "SCHEMES",
    "LAYER_SCHEMES",
    "DEFAULT_SCHEME",
    "DEFAULT_LAYER_SCHEME",
    "SORT_TOKENS",
    "SORT_SEQ_LEN",
    "STUDY_TOKENS",
    *_LAZY,
]
