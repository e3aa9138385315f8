"""What decides the rows of one baseline run: :class:`BaselineConfig`, validated on creation.

Its own module so that the modules that build the models (:mod:`~nasbench.baselines.build`,
:mod:`~nasbench.baselines.prune`) take it without importing the run that calls them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from nasbench.baselines.dsa import ALPHA, BETA
from nasbench.baselines.methods import GROUPS, METHODS, RECOVERABLE, SLICED, default_protocol
from nasbench.errors import NasBenchError, check_choice, check_each
from nasbench.profile.config import ProfileConfig

__all__ = ["BaselineConfig"]

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
#: How far a sliced arch's parameter share may sit from its target (the bands are +-1 pp).
BAND_TOLERANCE = 0.02


@dataclass
class BaselineConfig:
    """Everything that decides which rows a baseline run writes."""

    method: str
    protocol: ProfileConfig = field(default_factory=default_protocol)
    """How every row is measured: ``nasbench profile``'s config (metrics, tasks, limit_items, ppl_tokens, seq_len,
    latency_*, decode_tokens, device, dtype, batch_size), the one home of those settings. ``dtype="auto"``: bfloat16
    where this machine runs it fast, else float32 (as profile); pruning and training run in float32."""
    slicing: float = 0.2
    """``slicegpt`` only: the fraction of the hidden size deleted."""
    target: float | None = None
    """``sliced`` methods only: the parameter share of the band (0.5, 0.75); names the supernet id."""
    archs: tuple[dict[str, Any], ...] = ()
    """``sliced`` methods only: the archs to cut (the target's band); each within :data:`BAND_TOLERANCE` of it."""
    tokens: int = 0
    """Training tokens per model (the supernet's recovery budget): required by ``sliced-recovered``; for
    ``slicegpt`` and ``dsa`` (:data:`~nasbench.baselines.methods.RECOVERABLE`) > 0 distils each pruned model with
    the same recipe (``slicegpt-recovered-20``, ``dsa-recovered-50``); 0 for the others."""
    calibration_tokens: int = 16384
    """Tokens of the space's ``calibration`` source (Wanda, SparseGPT, SliceGPT; ``dsa``'s search); never the
    perplexity corpus."""
    calibration_seq_len: int = 512
    alpha: tuple[float, ...] = ALPHA
    """``dsa`` only: the shapes tried (> 0)."""
    beta: tuple[float, ...] = BETA
    """``dsa`` only: the amplitudes tried, in [0, 1) (0 is the uniform arch, the ``sliced`` model)."""

    def __post_init__(self) -> None:
        check_choice("method", self.method, METHODS)
        if not isinstance(self.protocol, ProfileConfig):
            raise NasBenchError("protocol", "must be a ProfileConfig", type(self.protocol).__name__)
        check_each("metrics", self.protocol.metrics, GROUPS)
        if self.protocol.dtype not in ("auto", *_DTYPES):
            raise NasBenchError("dtype", f"must be auto or one of {', '.join(_DTYPES)}", self.protocol.dtype)
        if self.method == "slicegpt":
            from nasbench.baselines.slicegpt import sliced_dim

            sliced_dim(10**6, self.slicing)  # a fraction in [0, 1)
        if self.method in SLICED:
            if self.target is None or not 0.0 < float(self.target) < 1.0:
                raise NasBenchError("target", f"{self.method} needs the band's parameter share in (0, 1), e.g. 0.5",
                                    self.target)
            if not self.archs:
                raise NasBenchError("archs", f"{self.method} needs the archs to cut (the target's band file)", None,
                                    show_got=False)
        elif self.target is not None or self.archs:
            raise NasBenchError("target", f"only {' and '.join(SLICED)} take a target and archs", self.target)
        if self.method == "sliced-recovered":
            if isinstance(self.tokens, bool) or not isinstance(self.tokens, int) or self.tokens < 1:
                raise NasBenchError("tokens", "sliced-recovered needs the training budget per model (>= 1 token)",
                                    self.tokens)
        elif self.tokens and (self.method not in RECOVERABLE or isinstance(self.tokens, bool)
                              or not isinstance(self.tokens, int) or self.tokens < 0):
            raise NasBenchError("tokens", f"only sliced-recovered and {' and '.join(RECOVERABLE)} train (an integer "
                                          ">= 1 tokens per model; a 2:4 mask would not survive a merged LoRA delta)",
                                self.tokens)
        self.alpha, self.beta = tuple(self.alpha), tuple(self.beta)
        if self.method == "dsa":
            for name, values, ok, rule in (("alpha", self.alpha, lambda v: v > 0, "> 0"),
                                           ("beta", self.beta, lambda v: 0 <= v < 1, "in [0, 1)")):
                bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))
                       or not math.isfinite(v) or not ok(v)]
                if not values or bad:
                    raise NasBenchError(name, f"dsa needs a non-empty grid, each value {rule}",
                                        bad[0] if bad else values)
        elif (self.alpha, self.beta) != (ALPHA, BETA):
            raise NasBenchError("alpha", "only dsa searches an allocation grid", (self.alpha, self.beta))
        if "acc" in self.protocol.metrics:
            from nasbench.profile.accuracy import TASKS

            check_each("tasks", self.protocol.tasks, TASKS)

    @property
    def recovered(self) -> bool:
        """Each model is distilled after it is built (``sliced-recovered``, or a recoverable method with tokens)."""
        return self.method == "sliced-recovered" or bool(self.tokens)

    @property
    def method_id(self) -> str:
        name = f"{self.method}-recovered" if self.tokens and self.method in RECOVERABLE else self.method
        if self.method == "slicegpt":
            return f"{name}-{self.slicing * 100:g}"
        if self.method in SLICED:
            return f"{name}-{float(self.target) * 100:g}"
        return name
