"""Profiling sub-networks: perplexity (more measurements join here: accuracy, latency, memory)."""

from nasbench.profile.perplexity import (
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
