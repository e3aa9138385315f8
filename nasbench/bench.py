"""The ``nasbench bench ...`` measurements. Each returns one flat dict (the CLI prints it as one JSON line)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from nasbench.errors import NasBenchError, check_choice
from nasbench.importance_schemes import STUDY_TOKENS
from nasbench.precision import matmul_rate
from nasbench.space import SearchSpace

__all__ = ["bench_slicing", "bench_importance", "bench_profile", "bench_accuracy", "bench_latency_model",
           "validate_latency_model"]


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
    import time
    from pathlib import Path

    from nasbench.perplexity import Protocol
    from nasbench.profile.runner import ProfileConfig, profile

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


def bench_latency_model(space: SearchSpace, db: Any, rounds: int = 5, device: str = "cpu", dtype: str = "auto",
                        metric: str = "latency_ms") -> dict[str, Any]:
    """Time the op-level latency model of ``space`` on ``device`` (:func:`nasbench.profile.latency_model.measure_ops`,
    in ``dtype``: ``auto`` decides as ``profile`` does), fit its overheads on every arch ``db`` holds measured there
    in that dtype (prefill on ``metric``: ``latency_ms``, drift-cancelled, ``latency_wall_ms`` or ``latency_rel``;
    decode on ``decode_ms_per_token``; a phase with fewer than 2 such archs keeps zero), and store it in ``db``."""
    from pathlib import Path

    from nasbench.profile import latency_model as lm

    check_choice("metric", metric, [m for m, phase in lm.METRIC_PHASES.items() if phase == "prefill"])
    start = time.perf_counter()
    table = lm.measure_ops(space, rounds=rounds, device=device, dtype=dtype)
    seconds = time.perf_counter() - start
    if Path(db).is_file():
        for phase, measured in (("prefill", metric), ("decode", "decode_ms_per_token")):
            archs, ms = _measured_ms(db, table, measured)
            if len(archs) >= 2:
                table = lm.fit(table, archs, ms, phase)
    lm.save_table(table, db)
    return {"bench": "latency-model", "space": space.name, "device": table.device, "hardware": table.hardware,
            "cpu_flags": table.cpu_flags, "dtype": table.dtype, "threads": table.threads, "rounds": rounds,
            "ops": len(table.ms), "seconds": round(seconds, 1),
            "overhead_ms": {p: {"per_layer": round(a, 4), "constant": round(b, 4)}
                            for p, (a, b) in table.overhead.items()},
            "scale": {p: round(v, 4) for p, v in table.scale.items()},
            "fitted_n": dict(table.fitted_n), "fit_metric": metric}


def validate_latency_model(space: SearchSpace, db: Any, metric: str = "latency_ms", device: str = "cpu",
                           dtype: str | None = None, seed: int = 0) -> dict[str, Any]:
    """The stored op-level latency model of ``space`` on ``device`` (the latest; in ``dtype`` when given) against
    the measured ``metric`` of ``db``'s archs: the overheads fitted on a seeded half of them, scored on the other
    half (Kendall tau, share within +-10%, median ``|predicted / measured - 1|``)."""
    import numpy as np
    from scipy.stats import kendalltau

    from nasbench.profile import latency_model as lm

    check_choice("metric", metric, lm.METRIC_PHASES)
    phase = lm.METRIC_PHASES[metric]
    table = lm.load_table(db, space.name, device, dtype)
    archs, ms = _measured_ms(db, table, metric)
    if len(archs) < 4:
        raise NasBenchError("metric", f"needs >= 4 archs of {space.name} measured on {table.device} in "
                                      f"{table.dtype} at {table.seq_len} tokens in {db}", len(archs))
    order = np.random.default_rng(seed).permutation(len(archs))
    train, test = order[: len(order) // 2], order[len(order) // 2:]
    fitted = lm.fit(table, [archs[i] for i in train], ms[train], phase)
    predicted, truth = lm.predict(fitted, [archs[i] for i in test], phase), ms[test]
    error = np.abs(predicted / truth - 1.0)
    per_layer, constant = fitted.overhead[phase]
    return {"bench": "latency-model", "space": space.name, "metric": metric, "phase": phase,
            "device": table.device, "hardware": table.hardware, "dtype": table.dtype, "threads": table.threads,
            "n_fit": int(len(train)), "n_test": int(len(test)), "kendall_tau": float(kendalltau(predicted, truth)[0]),
            "within_10pct": float(np.mean(error <= 0.10)), "median_abs_rel_err": float(np.median(error)),
            "overhead_ms": {"per_layer": round(per_layer, 4), "constant": round(constant, 4)},
            "scale": round(fitted.scale[phase], 4)}


def _measured_ms(db: Any, table: Any, metric: str) -> tuple[list[dict[str, Any]], Any]:
    """(archs, milliseconds) of ``db``'s weight-free ``metric`` rows measured as ``table`` was timed (device, dtype,
    prompt length); ``latency_rel`` in milliseconds: the ratio times the median of its reference's times."""
    import numpy as np

    from nasbench.store.latency import measured_latencies

    rows = measured_latencies(db, table.space, metric, table.device, table.dtype, table.seq_len)
    values = np.array([value for _, value, _ in rows], dtype=np.float64)
    if metric == "latency_rel" and rows:
        reference = [extra["reference_ms"] for _, _, extra in rows if "reference_ms" in extra]
        if not reference:
            raise NasBenchError("metric", "latency_rel rows need their reference's time (extra.reference_ms)", metric)
        values = values * statistics.median(reference)
    return [arch for arch, _, _ in rows], values
