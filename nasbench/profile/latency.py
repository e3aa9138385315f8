"""Latency and memory of a dense model: wall clock, never summed profiler times, never the sliced supernet.

CPU: ``time.perf_counter`` around each call, threads pinned to ``torch.get_num_threads()`` (recorded). GPU: CUDA
events recorded around each call on an idle stream (synchronised before the start event, the end event waited for),
so the time is the GPU's and not the host's launch queue. Energy (:func:`measure_energy`): NVML's total-energy counter
of the very GPU that ran (found by UUID, so it is right under ``CUDA_VISIBLE_DEVICES`` and Ray's GPU assignment)
around repeated calls; where there is no meter the result says why (no CUDA device, ``nvidia-ml-py`` missing, no
driver, no permission, a GPU or MIG slice without the counter) and the value is ``None``, never invented.

Relative latency (:func:`measure_relative_latency`): the prefill time of a model over that of a fixed reference (the
space's full model), the two timed alternately, repeat by repeat (and, asked for, the decode time per token the
same way: ``decode_rel``). A CPU shared with other tenants drifts by +-15% over
minutes, more than the difference between many archs (two passes of the wall clock over the same 302 archs, about
two hours apart, agreed only to Kendall tau 0.53); the drift hits both models of a pair alike and cancels in the
ratio. The store's readers turn the ratio back into milliseconds, the default ``latency_ms``
(:mod:`nasbench.store.readings`); the wall clock rows this module's :func:`measure_latency` gives are stored as
``latency_ms`` and read as ``latency_wall_ms``.

Memory (:func:`memory_footprint`) has three parts, each stated: the weights' exact bytes in their stored dtype
(tied tensors counted once), the KV cache's bytes per token (``2 x layers x kv heads x head size x dtype bytes``),
and the measured peak of one prefill above the loaded model: on a GPU ``max_memory_allocated`` after a reset; on a
Linux CPU the peak resident set (``VmHWM``) after ``clear_refs`` reset it and ``malloc_trim`` returned freed memory,
minus the resident set before (a sampled RSS delta misses allocations that reuse freed memory: it reported
0.0078 MiB for a 50M-parameter model).
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from nasbench.profile.config import decode_pairs

__all__ = ["LatencyResult", "RelativeLatency", "measure_relative_latency", "pool_visits", "relative_rows",
           "Footprint", "Energy", "measure_latency", "memory_footprint", "prefill_peak_mb", "peak_memory_mb",
           "measure_energy"]


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
                    repeats: int = 10, decode_tokens: int = 0, decode_repeats: int | None = None,
                    seed: int = 0) -> LatencyResult:
    """Prefill latency of ``model`` on random tokens (same tokens for every repeat), plus optional decode latency
    (``decode_repeats`` repeats, default ``max(3, repeats // 3)``)."""
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
            decode = _decode_ms_per_token(model, ids, decode_tokens, repeats=decode_pairs(repeats, decode_repeats))
    q1, _, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0], 0, times[0])
    mean = statistics.fmean(times)
    cv = statistics.stdev(times) / mean if len(times) > 1 else 0.0
    return LatencyResult(statistics.median(times), q3 - q1, cv, repeats, batch, seq_len, device.type,
                         str(dtype).removeprefix("torch."), torch.get_num_threads(), decode,
                         time.perf_counter() - start)


@dataclass(frozen=True)
class RelativeLatency:
    ratio: float
    """Median over repeats of (model's prefill time / reference's prefill time), each pair timed back to back."""
    iqr: float
    cv: float
    """Coefficient of variation of the per-repeat ratios."""
    repeats: int
    model_ms: float
    """Median prefill time of the model in this measurement (drift included: what the wall clock ``latency_wall_ms``
    would be)."""
    reference_ms: float
    threads: int
    seconds: float = 0.0
    decode: RelativeLatency | None = None
    """With ``decode_tokens`` > 0: the same for the decode time per token with the KV cache (``model_ms`` and
    ``reference_ms`` per token, ``repeats`` its pairs)."""
    pairs: tuple[tuple[float, float], ...] = ()
    """Every timed pair, (model ms, reference ms), in order: what :func:`pool_visits` pools."""
    visits: tuple[float, ...] = ()
    """Pooled over visits (:func:`pool_visits`): each visit's median ratio, in order (empty: one visit)."""


def pool_visits(parts: Sequence[RelativeLatency]) -> RelativeLatency:
    """One measurement from several visits of the same model and reference (each a fresh copy of the model, timed
    at another time): the median, IQR and CV over all their pairs, each visit's median ratio kept.

    Why visits: on a shared CPU a model's decode time relative to the full model's moves with the machine's state
    over minutes (other tenants' use of the shared cache and memory slows a small model's step more than the full
    model's, which never fitted the cache), and a freshly built copy of a model runs a little faster or slower than
    another (where its weights landed). Pairs taken back to back in one visit share both, so more pairs do not
    shrink them; visits spread over a pass do (measured on a 2-core Xeon, decode, 4 visits of 6 pairs: a
    visit's median differed from the arch's others by about 3% beyond its pairs' own noise, and the median
    visit's ratio moved by 5.5% from the first visit of the pass to the last)."""
    if not parts:
        raise ValueError("pool_visits needs at least one visit")
    if any(p.threads != parts[0].threads for p in parts):
        raise ValueError(f"visits ran with different torch threads: {[p.threads for p in parts]}")
    pooled = _summary([pair for p in parts for pair in p.pairs])
    decode = None
    if parts[0].decode is not None:
        decode = pool_visits([p.decode for p in parts if p.decode is not None])
    return RelativeLatency(*pooled, threads=parts[0].threads, seconds=sum(p.seconds for p in parts), decode=decode,
                           pairs=tuple(pair for p in parts for pair in p.pairs),
                           visits=tuple(p.ratio for p in parts) if len(parts) > 1 else ())


def measure_relative_latency(model: torch.nn.Module, reference: torch.nn.Module, *, batch: int = 1,
                             seq_len: int = 128, warmup: int = 2, repeats: int = 10, decode_tokens: int = 0,
                             decode_repeats: int | None = None, decode_warmup: int = 1,
                             seed: int = 0) -> RelativeLatency:
    """Prefill time of ``model`` relative to ``reference`` on the same random tokens: the two are timed alternately
    (the order flips every repeat, so neither always runs with the other's data in cache) and the ratio of each pair
    is taken, so a slow-down of the machine that lasts longer than a pair cancels. With ``decode_tokens`` > 0 the
    decode time per token (``decode_tokens`` greedy steps after a prefill of the same tokens, the prefill untimed)
    is timed the same way, ``decode_repeats`` pairs (default ``max(3, repeats // 3)``, as the wall clock's decode)
    after ``decode_warmup`` untimed pairs and an untimed two-token decode of ``model`` (a fresh copy's first decode
    allocates its cache)."""
    start = time.perf_counter()
    device = next(model.parameters()).device
    vocab = min(model.config.vocab_size, reference.config.vocab_size)
    ids = torch.randint(0, vocab, (batch, seq_len), generator=torch.Generator().manual_seed(seed)).to(device)
    with torch.inference_mode():
        prefill = _alternate(model, reference, lambda m: _timed(device, lambda: m(input_ids=ids, use_cache=False)),
                             warmup, repeats)
        decode = None
        if decode_tokens > 0:
            _decode_ms_per_token(model, ids, min(2, decode_tokens), repeats=1)
            decode = _alternate(model, reference, lambda m: _decode_ms_per_token(m, ids, decode_tokens, repeats=1),
                                decode_warmup, decode_pairs(repeats, decode_repeats))
    threads = torch.get_num_threads()
    return RelativeLatency(*_summary(prefill), threads=threads, seconds=time.perf_counter() - start,
                           decode=None if decode is None else RelativeLatency(*_summary(decode), threads=threads,
                                                                              pairs=tuple(decode)),
                           pairs=tuple(prefill))


def relative_rows(rel: Any, common: dict[str, Any], reference: str, decode_tokens: int,
                  extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The ``latency_rel`` row of a :class:`~nasbench.profile.latency.RelativeLatency` (and its ``decode_rel`` row
    when decode was timed), as Measurement keyword dicts over ``common``; ``extra`` added to each row's. A
    measurement pooled over visits (:func:`pool_visits`) says so: ``visits``, each visit's median ratio."""
    def visits(r: RelativeLatency) -> dict[str, Any]:
        return {"visits": list(r.visits)} if r.visits else {}

    rows = [dict(common, metric="latency_rel", value=rel.ratio, unit="x full model", spread=rel.iqr,
                 n_repeats=rel.repeats, cost_s=rel.seconds,
                 extra={"reference": reference, "reference_ms": rel.reference_ms, "model_ms": rel.model_ms,
                        "threads": rel.threads, "cv": rel.cv,
                        "what": "median of prefill-time ratios, model and full model timed alternately",
                        **visits(rel), **(extra or {})})]
    if rel.decode is not None:
        d = rel.decode
        rows.append(dict(common, metric="decode_rel", value=d.ratio, unit="x full model", spread=d.iqr,
                         n_repeats=d.repeats,
                         extra={"reference": reference, "reference_ms": d.reference_ms, "model_ms": d.model_ms,
                                "threads": d.threads, "cv": d.cv, "decode_tokens": decode_tokens,
                                "what": "median of decode-time-per-token ratios, model and full model timed "
                                        "alternately", **visits(d), **(extra or {})}))
    return rows


def _alternate(model: torch.nn.Module, reference: torch.nn.Module, time_one: Callable[[torch.nn.Module], float],
               warmup: int, repeats: int) -> list[tuple[float, float]]:
    """(model ms, reference ms) of ``repeats`` pairs of ``time_one`` run on the two models alternately, the order
    flipping every pair, after ``warmup`` untimed pairs."""
    pairs = []
    for i in range(warmup + repeats):
        pair = (model, reference) if i % 2 == 0 else (reference, model)
        times = {id(m): time_one(m) for m in pair}
        if i >= warmup:
            pairs.append((times[id(model)], times[id(reference)]))
    return pairs


def _summary(pairs: Sequence[tuple[float, float]]) -> tuple[float, float, float, int, float, float]:
    """(median ratio, its IQR, its CV, pairs, median model ms, median reference ms) of timed pairs."""
    ratios = [mine / theirs for mine, theirs in pairs]
    q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0], 0, ratios[0])
    cv = statistics.stdev(ratios) / statistics.fmean(ratios) if len(ratios) > 1 else 0.0
    return (statistics.median(ratios), q3 - q1, cv, len(ratios), statistics.median(p[0] for p in pairs),
            statistics.median(p[1] for p in pairs))


def _timed(device: torch.device, fn: Callable[[], Any]) -> float:
    """Milliseconds of ``fn``: CUDA events on GPU, perf_counter on CPU."""
    if device.type == "cuda":
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)  # an idle stream: work queued before (a copy, the last repeat) is not timed
        begin.record()
        fn()
        end.record()
        end.synchronize()
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
        torch.cuda.synchronize(device)  # frees of earlier queued work land before the reset, not inside fn's peak
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


@dataclass(frozen=True)
class Footprint:
    weights_mb: float
    """Exact bytes of the weights in their stored dtype, MiB (tied tensors once)."""
    kv_bytes_per_token: int
    """Bytes the KV cache grows by per token (batch 1)."""
    prefill_peak_mb: float | None
    """Measured peak above the loaded model during one prefill of ``batch x seq_len`` (None: no meter here)."""
    method: str
    """How the prefill peak was measured (or why it was not)."""

    @property
    def total_mb(self) -> float | None:
        """Weights plus the prefill peak: what running one prefill needs."""
        return None if self.prefill_peak_mb is None else self.weights_mb + self.prefill_peak_mb


def memory_footprint(model: torch.nn.Module, *, batch: int = 1, seq_len: int = 128, seed: int = 0) -> Footprint:
    """:class:`Footprint` of an HF causal LM (see the module docstring)."""
    seen, weight_bytes = set(), 0
    for tensor in model.parameters():  # buffers (rotary frequencies) are not weights
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            weight_bytes += tensor.numel() * tensor.element_size()
    config = model.config
    heads = getattr(config, "num_attention_heads")
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    element = next(model.parameters()).element_size()
    kv = 2 * config.num_hidden_layers * kv_heads * head_dim * element
    peak, method = prefill_peak_mb(model, batch=batch, seq_len=seq_len, seed=seed)
    return Footprint(weight_bytes / 2**20, int(kv), peak, method)


def prefill_peak_mb(model: torch.nn.Module, *, batch: int = 1, seq_len: int = 128,
                    seed: int = 0) -> tuple[float | None, str]:
    """(MiB, method): the measured peak memory of one prefill above the loaded model, or (None, reason)."""
    param = next(model.parameters())
    ids = torch.randint(0, model.config.vocab_size, (batch, seq_len),
                        generator=torch.Generator().manual_seed(seed)).to(param.device)
    with torch.inference_mode():
        model(input_ids=ids, use_cache=False)  # warm-up: lazily built buffers are not the prefill's
        if param.device.type == "cuda":
            torch.cuda.synchronize(param.device)
            torch.cuda.reset_peak_memory_stats(param.device)
            before = torch.cuda.memory_allocated(param.device)
            model(input_ids=ids, use_cache=False)
            torch.cuda.synchronize(param.device)
            return (torch.cuda.max_memory_allocated(param.device) - before) / 2**20, "cuda max_memory_allocated"
        try:
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current resident set
            before = _status_kib("VmRSS")
            model(input_ids=ids, use_cache=False)
            return (_status_kib("VmHWM") - before) / 1024, "cpu VmHWM growth after clear_refs (Linux)"
        except (OSError, AttributeError, ValueError) as exc:
            return None, f"no CPU peak meter here: {type(exc).__name__}"


def _status_kib(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise ValueError(f"{key} not in /proc/self/status")


@dataclass(frozen=True)
class Energy:
    """GPU energy of one call of a function, or why there is none."""

    joules: float | None
    """Mean joules per call over ``calls`` calls; ``None`` when no meter was there (``reason`` says why)."""
    calls: int
    seconds: float
    """Wall time of the timed calls."""
    meter: str
    """What measured it: ``nvml total energy`` (the GPU's cumulative counter, millijoules)."""
    reason: str | None = None
    """Why ``joules`` is ``None``."""

    def extra(self, tokens_per_call: int) -> dict[str, Any]:
        """The row's provenance: meter, calls, seconds, and J/token, or the reason there is no value."""
        if self.joules is None:
            return {"meter": self.meter, "reason": self.reason}
        return {"meter": self.meter, "calls": self.calls, "seconds": round(self.seconds, 4),
                "j_per_token": self.joules / tokens_per_call, "mean_power_w": self.joules * self.calls / self.seconds}


NVML_METER = "nvml total energy"


def measure_energy(fn: Callable[[], Any], device: str = "cpu", *, min_seconds: float = 1.0,
                   max_calls: int = 10_000) -> Energy:
    """GPU energy per call of ``fn``: NVML's total-energy counter read around repeated calls (at least one, then until
    ``min_seconds`` passed: the counter moves in steps of tens of milliseconds, a single prefill is shorter).

    Without a meter the :class:`Energy` has ``joules=None`` and a ``reason``; only NVML's own errors and a missing
    ``nvidia-ml-py`` are turned into reasons, anything else (a bug, a CUDA error in ``fn``) propagates.
    """
    if not device.startswith("cuda"):
        return Energy(None, 0, 0.0, NVML_METER, f"not a CUDA device ({device}): NVML meters NVIDIA GPUs only")
    try:
        import pynvml
    except ImportError:
        return Energy(None, 0, 0.0, NVML_METER, "nvidia-ml-py is not installed: pip install nasbench[nvml]")
    cuda = torch.device(device)
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:  # no driver library, driver not loaded, no permission
        return Energy(None, 0, 0.0, NVML_METER, f"NVML unavailable: {type(exc).__name__}: {exc}")
    try:
        try:
            handle = _nvml_handle(pynvml, cuda)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except pynvml.NVMLError as exc:  # e.g. NotSupported: pre-Volta GPUs and MIG slices have no energy counter
            return Energy(None, 0, 0.0, NVML_METER, f"no energy counter on this GPU: {type(exc).__name__}: {exc}")
        fn()  # warm-up: lazy allocations and kernel selection are not the steady state
        torch.cuda.synchronize(cuda)
        calls, start = 0, time.perf_counter()
        before = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        while calls < max_calls and (calls == 0 or time.perf_counter() - start < min_seconds):
            fn()
            calls += 1
            torch.cuda.synchronize(cuda)
        after = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        seconds = time.perf_counter() - start
    finally:
        pynvml.nvmlShutdown()
    return Energy((after - before) / 1000.0 / calls, calls, seconds, NVML_METER)


def _nvml_handle(pynvml: Any, device: torch.device) -> Any:
    """The NVML handle of the GPU torch calls ``device``: by UUID, since NVML indexes every GPU of the machine while
    torch indexes the visible ones (``CUDA_VISIBLE_DEVICES``, Ray's ``num_gpus``); by index where torch has no UUID."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    if uuid is None:
        return pynvml.nvmlDeviceGetHandleByIndex(index)
    text = str(uuid)
    return pynvml.nvmlDeviceGetHandleByUUID(text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}")
