"""``nasbench bench importance``: the importance scoring pass against a plain forward over the same tokens."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from nasbench.errors import NasBenchError
from nasbench.importance import STUDY_TOKENS
from nasbench.space import SearchSpace

__all__ = ["bench_importance"]


def bench_importance(space: SearchSpace, tokens: int = STUDY_TOKENS, seq_len: int = 512, batch_size: int = 4,
                     repeats: int = 3, data_dir: Any = None, dtype: torch.dtype = torch.bfloat16) -> dict[str, Any]:
    """Time of the importance scoring pass (hooks for every aggregation scheme) against a plain forward pass over the
    same calibration tokens. Timings alternate and the medians of ``repeats`` are compared."""
    from nasbench.importance import SCHEMES, calibration_windows, score
    from nasbench.models import load_base_model, load_tokenizer

    for name, value in (("tokens", tokens), ("seq_len", seq_len), ("repeats", repeats)):
        if value < 1:
            raise NasBenchError(name, "must be >= 1", value)
    model = load_base_model(space.model, dtype=dtype)
    windows = calibration_windows(space, load_tokenizer(space.model), data_dir, tokens, seq_len)

    @torch.inference_mode()
    def plain() -> None:
        for start in range(0, len(windows), batch_size):
            model(input_ids=windows[start:start + batch_size], use_cache=False)

    def scoring() -> None:
        score(model, windows, SCHEMES, batch_size=batch_size)

    plain_s, scoring_s = [], []
    with torch.inference_mode():
        model(input_ids=windows[:1], use_cache=False)  # warm-up
    for _ in range(repeats):
        for fn, times in ((plain, plain_s), (scoring, scoring_s)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return {
        "bench": "importance",
        "space": space.name,
        "ratio": statistics.median(scoring_s) / statistics.median(plain_s),
        "scoring_tokens_per_s": windows.numel() / statistics.median(scoring_s),
        "tokens": int(windows.numel()),
        "schemes": len(SCHEMES),
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
    }
