"""Latency and memory of a dense model: wall clock, never summed profiler times, never the sliced supernet.

CPU: ``time.perf_counter`` around each call, threads pinned to ``torch.get_num_threads()`` (recorded), peak memory as
the resident-set growth sampled while the work runs. GPU: CUDA events and ``torch.cuda.max_memory_allocated``;
energy through NVML when it is there (``None`` otherwise, never invented).
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

__all__ = ["LatencyResult", "measure_latency", "peak_memory_mb", "energy_j"]


@dataclass(frozen=True)
class LatencyResult:
    median_ms: float
    """Median prefill latency of one forward pass of ``batch x seq_len`` tokens."""
    iqr_ms: float
    cv: float
    """Coefficient of variation of the timed repeats (stdev / mean)."""
    repeats: int
    batch: int
    seq_len: int
    device: str
    dtype: str
    threads: int
    decode_ms_per_token: float | None = None
    """Median time per generated token with the KV cache (``decode_tokens`` > 0)."""
    seconds: float = 0.0
    """Wall time of the whole measurement (warm-up included): its ``cost_s``."""


def measure_latency(model: torch.nn.Module, *, batch: int = 1, seq_len: int = 128, warmup: int = 2,
                    repeats: int = 10, decode_tokens: int = 0, seed: int = 0) -> LatencyResult:
    """Prefill latency of ``model`` on random tokens (same tokens for every repeat), plus optional decode latency."""
    start = time.perf_counter()
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (batch, seq_len), generator=torch.Generator().manual_seed(seed)).to(device)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            elapsed = _timed(device, lambda: model(input_ids=ids, use_cache=False))
            if i >= warmup:
                times.append(elapsed)
        decode = None
        if decode_tokens > 0:
            decode = _decode_ms_per_token(model, ids, decode_tokens, repeats=max(3, repeats // 3))
    q1, _, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0], 0, times[0])
    mean = statistics.fmean(times)
    cv = statistics.stdev(times) / mean if len(times) > 1 else 0.0
    return LatencyResult(statistics.median(times), q3 - q1, cv, repeats, batch, seq_len, device.type,
                         str(dtype).removeprefix("torch."), torch.get_num_threads(), decode,
                         time.perf_counter() - start)


def _timed(device: torch.device, fn: Callable[[], Any]) -> float:
    """Milliseconds of ``fn``: CUDA events on GPU, perf_counter on CPU."""
    if device.type == "cuda":
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return begin.elapsed_time(end)
    begin = time.perf_counter()
    fn()
    return (time.perf_counter() - begin) * 1000


def _decode_ms_per_token(model: torch.nn.Module, ids: torch.Tensor, tokens: int, repeats: int) -> float:
    """Median over repeats of the time of ``tokens`` greedy steps with the KV cache of a prefill, per token."""
    per_token = []
    for _ in range(repeats):
        out = model(input_ids=ids, use_cache=True)
        past, step = out.past_key_values, out.logits[:, -1:].argmax(-1)

        def run() -> None:
            nonlocal past, step
            for _ in range(tokens):
                out = model(input_ids=step, past_key_values=past, use_cache=True)
                past, step = out.past_key_values, out.logits[:, -1:].argmax(-1)

        per_token.append(_timed(ids.device, run) / tokens)
    return statistics.median(per_token)


def peak_memory_mb(fn: Callable[[], Any], device: str = "cpu", interval_s: float = 0.002) -> tuple[Any, float]:
    """Run ``fn``; return its result and the peak memory growth in MiB while it ran.

    CPU: the process's resident set size, sampled every ``interval_s`` in a thread, minus its size before ``fn``.
    GPU: ``torch.cuda.max_memory_allocated`` after a reset, minus what was allocated before.
    """
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        result = fn()
        torch.cuda.synchronize(device)
        return result, (torch.cuda.max_memory_allocated(device) - before) / 2**20
    import psutil

    process = psutil.Process()
    before = process.memory_info().rss
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            done.wait(interval_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        result = fn()
    finally:
        done.set()
        thread.join()
    peak[0] = max(peak[0], process.memory_info().rss)
    return result, (peak[0] - before) / 2**20


def energy_j(fn: Callable[[], Any], device: str = "cpu") -> tuple[Any, float | None]:
    """Run ``fn``; return its result and the GPU energy it used in joules through NVML, or ``None`` without NVML."""
    if not device.startswith("cuda"):
        return fn(), None
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(torch.device(device).index or 0)
        before = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except Exception:  # no NVML library, no permission, or a GPU without the energy counter
        return fn(), None
    result = fn()
    torch.cuda.synchronize(device)
    return result, (pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) - before) / 1000.0
