"""``nasbench bench profile`` and ``nasbench bench accuracy``: the profiling passes' speed (perplexity throughput
against the matmul rate, latency spread, archs per hour of the shipped protocol; the accuracy pass against
lm-eval's own)."""

from __future__ import annotations

import time
from typing import Any

import torch

from nasbench.precision import matmul_rate
from nasbench.space import SearchSpace

__all__ = ["bench_profile", "bench_accuracy"]


def bench_profile(space: SearchSpace, ppl_tokens: int = 2048, seq_len: int = 512, latency_seq_len: int = 128,
                  repeats: int = 20, data_dir: Any = None, dtype: torch.dtype = torch.bfloat16,
                  protocol_archs: int = 6) -> dict[str, Any]:
    """Perplexity-eval throughput of the largest arch as a fraction of (measured matmul rate / its FLOPs per token),
    the coefficient of variation of its dense latency over ``repeats``, and the archs per hour of the shipped
    benchmark's protocol (``nasbench build``'s: ppl on 4,096 tokens, prefill + 16-token decode latency, memory) on
    ``protocol_archs`` seeded archs profiled into a throw-away DB (0: skip)."""
    from nasbench.models import load_tokenizer
    from nasbench.perplexity import Protocol, perplexity
    from nasbench.profile.latency import measure_latency
    from nasbench.supernet import Supernet

    supernet = Supernet.from_space(space, dtype=dtype)
    arch = space.largest()
    ids = Protocol(ppl_tokens, seq_len).windows(space, load_tokenizer(space.model), data_dir)
    supernet.set_sub_network(arch)
    perplexity(supernet, ids[:1])  # warm-up
    result = perplexity(supernet, ids)
    rate = matmul_rate(dtype) * 1e9  # the same denominator as bench train's
    flops = space.flops(arch, seq_len)
    latency = measure_latency(supernet.extract(arch), seq_len=latency_seq_len, repeats=repeats)
    archs_per_hour = _protocol_archs_per_hour(space, protocol_archs, dtype, data_dir) if protocol_archs else None
    return {
        "bench": "profile",
        "space": space.name,
        "archs_per_hour": archs_per_hour,
        "flop_bound_fraction": result.tokens_per_s * flops / rate,
        "latency_cv": latency.cv,
        "ppl_tokens_per_s": result.tokens_per_s,
        "matmul_gflop_s": rate / 1e9,
        "flops_per_token": flops,
        "latency_ms": latency.median_ms,
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
    }


def _protocol_archs_per_hour(space: SearchSpace, n: int, dtype: torch.dtype, data_dir: Any) -> float:
    """Archs per hour of ``profile()`` with the shipped build's protocol, the supernet's load included (a build loads it
    once per shard of 250 archs, so this is pessimistic by a few seconds over ``n`` archs)."""
    import tempfile
    from pathlib import Path

    from nasbench.perplexity import Protocol
    from nasbench.profile import ProfileConfig, profile

    config = ProfileConfig(archs=tuple(space.sample(n, seed=0)), n=0, endpoints=False,
                           metrics=("ppl", "latency", "memory"), ppl_tokens=Protocol.tokens, decode_tokens=16,
                           dtype=str(dtype).removeprefix("torch."))
    with tempfile.TemporaryDirectory(prefix="nasbench-bench-") as tmp:
        start = time.perf_counter()
        summary = profile(space, Path(tmp) / "bench.duckdb", config, data_dir=data_dir, progress=False)
        seconds = time.perf_counter() - start
    return 3600.0 * summary.profiled / seconds


def bench_accuracy(space: SearchSpace, arch: dict[str, Any] | None = None, items: int = 100,
                   tasks: tuple[str, ...] = ("arc_easy", "arc_challenge", "piqa", "hellaswag", "winogrande"),
                   supernet: Any = None, data_dir: Any = None, dtype: torch.dtype | None = None,
                   batch_size: int = 8) -> dict[str, Any]:
    """Seconds of one arch's accuracy pass, the earlier way (``simple_evaluate`` with lm-eval's ``HFLM``, once per
    task) against ``profile``'s (:func:`nasbench.profile.accuracy.evaluate`: packed scoring, templates compiled and
    tasks loaded once per process), on the same first ``items`` of each task, for ``arch`` (default the largest) of
    ``supernet`` (default the base model), in ``dtype`` (default: bfloat16 where this machine runs it fast, as
    ``profile --dtype auto``). Per task its primary metric (``acc``; ``mc2`` for TruthfulQA). Each task is loaded
    once before the clock starts (what a build's later archs see).
    Per task, both accuracies: they differ only where bf16 rounding in ``HFLM``'s log-softmax flips an item."""
    import tempfile
    from pathlib import Path

    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from nasbench.models import load_tokenizer
    from nasbench.precision import resolve_precision
    from nasbench.profile import accuracy
    from nasbench.supernet import Supernet, SupernetRef

    if dtype is None:
        dtype = torch.bfloat16 if resolve_precision("auto") == "bf16-mixed" else torch.float32
    loaded = SupernetRef.resolve(supernet).load(space, dtype)
    model = Supernet(loaded.model, space)
    arch = space.check(arch, "arch") if arch is not None else space.largest()
    layers = loaded.importance.layers_for(arch["n_layers"]) if loaded.importance and loaded.importance.layers else None
    model.set_sub_network(arch, layers=layers)
    tokenizer = load_tokenizer(space.model)
    out: dict[str, Any] = {"bench": "accuracy", "space": space.name, "arch": arch, "params": space.params(arch),
                           "items": items, "dtype": str(dtype).removeprefix("torch."),
                           "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory(prefix="nasbench-bench-") as tmp:
        task_dir = accuracy.write_tasks(data_dir, Path(tmp), tasks)
        manager = TaskManager(include_path=str(task_dir), include_defaults=False)
        for task in tasks:
            accuracy._loaded(task_dir, task)  # the warm-up: data files read, datasets cached
        before, start = {}, time.perf_counter()
        for task in tasks:
            result = simple_evaluate(model=HFLM(pretrained=model.model, tokenizer=tokenizer, batch_size=batch_size,
                                                device="cpu"),
                                     tasks=[task], task_manager=manager, limit=items, log_samples=False,
                                     bootstrap_iters=0, verbosity="WARNING")
            before[task] = result["results"][task][f"{accuracy.PRIMARY_METRIC[task]},none"]
        hflm_s, start = time.perf_counter() - start, time.perf_counter()
        scores = accuracy.evaluate(model.model, tokenizer, tasks, task_dir, limit=items, batch_size=batch_size)
        packed_s = time.perf_counter() - start
    for task in tasks:  # the task's primary metric (acc; mc2 for TruthfulQA)
        out[task] = {"acc_hflm": before[task], "acc_packed": next(s.value for s in scores if s.task == task
                                                                  and s.metric == accuracy.PRIMARY_METRIC[task])}
    out.update(hflm_s=round(hflm_s, 1), packed_s=round(packed_s, 1), speedup=round(hflm_s / packed_s, 2),
               packed_items_per_s=round(items * len(tasks) / packed_s, 1))
    return out
