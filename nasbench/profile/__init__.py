"""Profiling sub-networks: accuracy, latency, memory, energy and the runner; the perplexity definition they share is
:mod:`nasbench.perplexity` (re-exported here)."""

from nasbench.perplexity import (
    WIKITEXT2_TEST,
    PerplexityResult,
    perplexity,
    tokenize_corpus,
    wikitext_perplexity,
    windows,
)

__all__ = [
    "WIKITEXT2_TEST",
    "PerplexityResult",
    "perplexity",
    "tokenize_corpus",
    "wikitext_perplexity",
    "windows",
]
