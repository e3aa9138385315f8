"""Profiling sub-networks: accuracy, latency, memory, energy and the runner; the perplexity definition they share is
:mod:`nasbench.perplexity` (re-exported here)."""

from nasbench.lazy import lazy_getattr

__all__ = [
    "WIKITEXT2_TEST",
    "PerplexityResult",
    "perplexity",
    "tokenize_corpus",
    "wikitext_perplexity",
    "windows",
]

# torch loads on first use: the CLI's parser reads nasbench.profile.config without it
__getattr__ = lazy_getattr(__name__, dict.fromkeys(__all__, "nasbench.perplexity"))
