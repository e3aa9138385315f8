"""Compatibility path: the one perplexity definition lives in :mod:`nasbench.perplexity` (a ground-floor module, so
importance and training use it without importing the profiling stage)."""

from nasbench.perplexity import (  # noqa: F401 (re-exported)
    WIKITEXT2_TEST,
    PerplexityResult,
    perplexity,
    tokenize_corpus,
    wikitext_perplexity,
    windows,
)

__all__ = ["WIKITEXT2_TEST", "PerplexityResult", "perplexity", "tokenize_corpus", "wikitext_perplexity", "windows"]
