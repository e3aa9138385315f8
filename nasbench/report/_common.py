"""What the report's sections share: the bootstrap size and how a ratio and a p-value are printed."""

from __future__ import annotations

__all__ = ["BOOTSTRAP", "fmt_p", "fmt_ratio"]

#: Resamples of every bootstrap interval in the report (seeded: the same bytes on every run).
BOOTSTRAP = 2000


def fmt_ratio(ratio: float) -> str:
    if ratio >= 1000:
        return f"{ratio:,.0f}x"
    return f"{ratio:.3g}x" if ratio < 10 else f"{ratio:.1f}x"


def fmt_p(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-4 else "< 1e-4"
