"""The query vocabulary of :class:`~nasbench.surrogate.benchmark.Benchmark`, importable without the DB or the model
libraries (the CLI's parser reads it)."""

from __future__ import annotations

__all__ = ["MODES", "SOURCES"]

MODES = ("auto", "table", "surrogate")
"""``auto``: measured where the arch was profiled, predicted elsewhere; ``table``: measured only; ``surrogate``:
predicted only."""
SOURCES = ("table", "surrogate", "mixed", "missing", "exact")
"""Where a query row's values came from (the ``source`` column, a categorical)."""
