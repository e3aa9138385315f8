"""What a profiling run measures, without torch: the ``--metrics`` vocabulary and :class:`ProfileConfig` (the CLI's
parser reads its defaults here; :func:`nasbench.profile.profile` measures with it; the package exports both)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from nasbench.errors import NasBenchError
from nasbench.metrics import PROFILE_ITEMS, profile_item
from nasbench.perplexity import Protocol

__all__ = ["ENGINES", "METRICS", "ProfileConfig"]

#: How ``profile`` and ``build`` run the archs: in this process, or one Ray task per arch
#: (:mod:`nasbench.profile.ray_engine`).
ENGINES = ("in-process", "ray")

#: What ``--metrics`` may name. ``flops`` is always stored (analytic, free); params live in ``architectures``.
METRICS = PROFILE_ITEMS


@dataclass
class ProfileConfig:
    """Everything that decides which rows a profiling run writes."""

    n: int = 10
    """Seeded random archs."""
    seed: int = 0
    grid_params: int | None = None
    """Also ``n`` archs spread over this many parameter bins."""
    archs: tuple[dict[str, Any], ...] = ()
    """Explicit archs, profiled first (e.g. a Pareto front or an optimizer's picks)."""
    metrics: tuple[str, ...] = ("ppl", "latency", "latency_rel", "memory")
    """Metric groups; ``latency_rel`` gives the default, drift-cancelled ``latency_ms`` (and with ``decode_tokens``
    the default ``decode_ms_per_token``), ``latency`` the wall clocks (``latency_wall_ms``,
    ``decode_wall_ms_per_token``)."""
    tasks: tuple[str, ...] = ("arc_easy", "piqa", "winogrande")
    limit_items: int | None = None
    """First M items of each task, as lm-eval's ``--limit``."""
    ppl_tokens: int = Protocol.tokens
    """Tokens of the perplexity split scored (the benchmark's protocol by default)."""
    seq_len: int = Protocol.seq_len
    """Perplexity window length."""
    latency_batch: int = 1
    latency_seq_len: int = 128
    latency_repeats: int = 10
    decode_tokens: int = 0
    decode_repeats: int | None = None
    """Decode pairs (``latency_rel``) or repeats (``latency``) per arch (:attr:`decode_pairs`); None:
    ``max(3, latency_repeats // 3)``. Decode's pairs are noisier than prefill's (a pair's ratio varies by about 5% on
    a shared 2-core CPU), so ranking archs by decode needs more of them than a third of prefill's."""
    device: str = "cpu"
    dtype: str = "auto"
    """Weights' dtype for every metric: ``bfloat16``, ``float16``, ``float32``, or ``auto``: bfloat16 where this
    machine's bf16 matmuls are >= 1.5x its fp32 ones (AMX, AVX-512 BF16, GPUs), else float32 (an AVX2-only CPU runs
    bf16 over 10x slower). Every row records the dtype it was measured in."""
    batch_size: int = 4
    shard: tuple[int, int] = (0, 1)
    """(i, n): this process profiles archs i, i + n, i + 2n, ... of the deduplicated list."""
    deadline: float | None = None
    """``time.time()`` after which no new arch is started (the arch in flight finishes and is committed)."""
    endpoints: bool = True
    """Also profile the smallest admitted and the largest arch."""
    latency_visits: int = 1
    """``latency_rel`` timed in this many visits spread over the run (``--latency-visits``): the archs are visited
    this many times in turn, each visit timing a fresh copy of the arch for its share of the pairs, and the row pools
    every pair (:func:`nasbench.profile.latency.pool_visits`), so the machine's state over the run and a copy's
    placement in memory average out instead of deciding an arch's value. Only with ``latency_rel`` alone, in
    process; an arch's rows are written after its last visit, so a stopped run loses the visits of the archs
    not yet written."""
    remeasure_before: str | None = None
    """ISO time (UTC, as the rows' ``created_at``): a stored row of ``metrics`` older than it counts as missing and
    the new row replaces it in the same transaction (``--remeasure-before``); rerunning with the same time resumes."""

    def __post_init__(self) -> None:
        # the metric vocabulary of the other verbs is accepted too: latency_ms -> latency, memory_mb -> memory, ...
        self.metrics = tuple(dict.fromkeys(profile_item(m) for m in self.metrics))
        if self.decode_repeats is not None and self.decode_repeats < 1:
            raise NasBenchError("decode_repeats", "must be >= 1", self.decode_repeats)
        if self.latency_visits < 1:
            raise NasBenchError("latency_visits", "must be >= 1", self.latency_visits)
        if self.latency_visits > 1 and self.metrics != ("latency_rel",):
            raise NasBenchError("latency_visits", "above 1 needs the metrics latency_rel alone (visits revisit "
                                "the archs for it only)", ",".join(self.metrics))
        if self.remeasure_before is not None:
            try:
                when = datetime.fromisoformat(str(self.remeasure_before))
            except ValueError:
                raise NasBenchError("remeasure_before", "must be an ISO time (UTC), e.g. 2026-11-30T21:00",
                                    self.remeasure_before) from None
            if when.tzinfo is not None:  # the rows' created_at is naive UTC
                when = when.astimezone(timezone.utc).replace(tzinfo=None)
            self.remeasure_before = when.isoformat(sep=" ")

    @property
    def decode_pairs(self) -> int:
        """Decode pairs (repeats) per arch: ``decode_repeats``, else ``max(3, latency_repeats // 3)``."""
        return decode_pairs(self.latency_repeats, self.decode_repeats)

    def ppl_protocol(self, split: str = "perplexity") -> Protocol:
        """The perplexity protocol of ``ppl`` (``split="selection"``: of ``ppl_selection``)."""
        return Protocol(self.ppl_tokens, self.seq_len, split)


def decode_pairs(repeats: int, decode_repeats: int | None) -> int:
    """Decode pairs (repeats) for ``repeats`` prefill pairs: ``decode_repeats``, else a third of them and at least 3
    (the one rule, for :attr:`ProfileConfig.decode_pairs` and the latency functions' defaults)."""
    return max(3, repeats // 3) if decode_repeats is None else decode_repeats
