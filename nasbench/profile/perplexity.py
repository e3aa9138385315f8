"""Compatibility path: the one perplexity definition lives in :mod:`nasbench.perplexity` (a ground-floor module, so
importance and training use it without importing the profiling stage)."""

from nasbench.perplexity import *  # noqa: F401,F403
from nasbench.perplexity import __all__  # noqa: F401
