"""Profiling sub-networks into a benchmark DB: perplexity, lm-eval accuracy, latency, memory, energy and FLOPs.

- :mod:`~nasbench.profile.config`: :class:`ProfileConfig` and the ``--metrics`` vocabulary, without torch;
- ``_measure``: :func:`profile`, the in-process run (which archs, their rows, resumable per arch);
  :mod:`~nasbench.profile.build` the sharded build and :mod:`~nasbench.profile.ray_engine` the same over Ray;
- :mod:`~nasbench.profile.accuracy`, :mod:`~nasbench.profile.latency`, :mod:`~nasbench.profile.latency_model`: what
  each metric group measures.

The perplexity definition every stage shares is :mod:`nasbench.perplexity` (its names re-exported here).
"""

from __future__ import annotations

from nasbench.lazy import lazy_getattr
from nasbench.profile.config import METRICS, ProfileConfig

# torch loads on first use: the CLI's parser reads ProfileConfig and METRICS without it
_LAZY = {
    **dict.fromkeys(("ProfileSummary", "Measurer", "select_archs", "profile", "parse_shard", "resolve", "plan",
                     "store_rows", "advance"), "nasbench.profile._measure"),
    **dict.fromkeys(("WIKITEXT2_TEST", "PerplexityResult", "perplexity", "tokenize_corpus", "wikitext_perplexity",
                     "windows"), "nasbench.perplexity"),
}

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = ["METRICS", "ProfileConfig", *_LAZY]
