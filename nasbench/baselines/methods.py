"""The baselines' names and default protocol without torch: what the CLI's parser reads (``nasbench --help`` stays
fast); the modules that build and measure the models import them from here."""

from __future__ import annotations

from nasbench.profile.config import ProfileConfig

__all__ = ["METHODS", "SLICED", "RECOVERABLE", "METRICS", "GROUPS", "default_protocol"]

METHODS = ("magnitude-2:4", "wanda-2:4", "sparsegpt-2:4", "slicegpt", "sliced", "sliced-recovered", "dsa")
#: The methods that cut the importance-sorted model to the archs of a parameter band (``--target``).
SLICED = ("sliced", "sliced-recovered", "dsa")
#: The methods whose models may be distilled after pruning with a token budget (``tokens`` > 0: ``<method>-recovered``,
#: the recovery of ``sliced-recovered`` on a dense model); a 2:4 model may not (a merged LoRA delta fills its masks).
RECOVERABLE = ("slicegpt", "dsa")
#: The metric groups a baseline measures by default.
METRICS = ("ppl", "acc", "latency", "memory")
#: Every metric group a baseline can measure: the defaults and ``latency_rel`` (prefill time over the space's full
#: model, the two timed alternately: the drift-cancelled latency the report's comparison tables use).
GROUPS = (*METRICS, "latency_rel")


def default_protocol() -> ProfileConfig:
    """The benchmark build's protocol (ppl on 4,096 tokens, prefill 1 x 128, decode 16 tokens, memory, dtype auto)
    plus lm-eval accuracy; the arch-selection fields of :class:`ProfileConfig` are unused here."""
    return ProfileConfig(n=0, endpoints=False, metrics=METRICS, decode_tokens=16)
