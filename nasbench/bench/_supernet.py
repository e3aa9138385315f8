"""``nasbench bench slicing``: the sliced supernet's forward time against the extracted dense model's."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from nasbench.errors import NasBenchError
from nasbench.space import SearchSpace

__all__ = ["bench_slicing"]


def _forward_seconds(model: torch.nn.Module, ids: torch.Tensor) -> float:
    start = time.perf_counter()
    model(input_ids=ids, use_cache=False)
    return time.perf_counter() - start


def bench_slicing(space: SearchSpace, n: int = 10, seed: int = 0, seq_len: int = 256, batch: int = 1,
                  repeats: int = 5, warmup: int = 1, supernet: Any = None) -> dict[str, Any]:
    """Forward time of the sliced supernet against the extracted dense model, for ``n`` random archs.

    Per arch: ``warmup`` untimed forwards of each, then ``repeats`` timed forwards of each, interleaved, on the same
    random ``batch x seq_len`` tokens; the ratio is median sliced / median dense. ``median_ratio`` is the median
    over archs; ``tokens_per_s`` is the sliced supernet's throughput (all tokens / all median times). Runs with the
    torch thread count the process has.
    """
    from nasbench.supernet import Supernet
    from nasbench.supernet.wiring import check_extractable

    for name, value in (("n", n), ("seq_len", seq_len), ("batch", batch), ("repeats", repeats)):
        if value < 1:
            raise NasBenchError(name, "must be >= 1", value)
    archs = space.sample(n, seed=seed)
    for arch in archs:
        check_extractable(space.family, arch)  # the dense side needs one width for all layers
    supernet = supernet if supernet is not None else Supernet.from_space(space)
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, space.reference.vocab_size, (batch, seq_len), generator=generator)
    ratios, sliced_total = [], 0.0
    previous = supernet.arch
    try:
        for arch in archs:
            supernet.set_sub_network(arch)
            dense = supernet.extract(arch)
            sliced, plain = [], []
            with torch.inference_mode():
                for _ in range(warmup):
                    _forward_seconds(supernet, ids)
                    _forward_seconds(dense, ids)
                for _ in range(repeats):
                    sliced.append(_forward_seconds(supernet, ids))
                    plain.append(_forward_seconds(dense, ids))
            ratios.append(statistics.median(sliced) / statistics.median(plain))
            sliced_total += statistics.median(sliced)
            del dense
    finally:
        if previous is None:
            supernet.reset()
        else:
            supernet.set_sub_network(previous)
    return {
        "bench": "slicing",
        "space": space.name,
        "median_ratio": statistics.median(ratios),
        "tokens_per_s": batch * seq_len * len(archs) / sliced_total,
        "n": len(archs),
        "seq_len": seq_len,
        "batch": batch,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "ratios": [round(r, 4) for r in ratios],
    }
