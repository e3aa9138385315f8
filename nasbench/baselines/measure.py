"""One metric group of a baseline model measured as ``nasbench profile`` measures it (the profile package's
functions), as Measurement keyword dicts; 2:4 models' latency and memory rows say that dense kernels ran."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from nasbench.baselines.methods import GROUPS
from nasbench.errors import NasBenchError, one_of
from nasbench.profile import ProfileConfig
from nasbench.space import SearchSpace

__all__ = ["measure_group"]

_NO_SPEEDUP = "2:4 mask on dense kernels: zeros are multiplied like any weight, no sparse speed-up"


def measure_group(group: str, model: Any, tokenizer: Any, space: SearchSpace, method: str, protocol: ProfileConfig,
                  data_dir: Path | None, tasks: list[str], reference: Any = None) -> list[dict[str, Any]]:
    """One metric group's rows as Measurement keyword dicts (arch, supernet and software added by the caller), with
    the profile package's functions. ``reference``: the space's full model (dense, on the device, in the protocol's
    dtype) that ``latency_rel`` is timed against, as ``nasbench profile`` times a sub-network."""
    from nasbench.baselines._layerwise import dense_params, nonzero_params
    from nasbench.profile.latency import measure_latency, memory_footprint

    device, dtype = protocol.device, protocol.dtype
    two_four = method.endswith("2:4")
    if group == "params":
        return [dict(metric="params", value=float(dense_params(model)), unit="params",
                     extra={"what": "dense: every stored parameter entry, zeros included (tied tensors once); the "
                                    "size the model keeps" + (", untied head and shortcuts included"
                                                              if method == "slicegpt" else "")}),
                dict(metric="params_nonzero", value=float(nonzero_params(model)), unit="params",
                     extra={"what": "effective: non-zero entries of every parameter (what a 2:4 sparse kernel could "
                                    "skip; the dense count for a structured model)"})]
    if group == "ppl":
        from nasbench.perplexity import perplexity

        ids = protocol.ppl_protocol().windows(space, tokenizer, data_dir)
        result = perplexity(model, ids, batch_size=protocol.batch_size)
        return [dict(metric="ppl", value=result.ppl, unit="perplexity", device=device, dtype=dtype,
                     seq_len=protocol.seq_len, cost_s=result.seconds,
                     extra={"tokens": int(ids.numel()), "nll": result.nll, "scored_tokens": result.n_scored_tokens})]
    if group == "acc":
        from nasbench.profile.accuracy import evaluate, write_tasks

        task_dir = write_tasks(data_dir, Path(tempfile.mkdtemp(prefix="nasbench-tasks-")))
        return [dict(metric=s.metric, value=s.value, unit=s.unit, task=s.task, device=device, dtype=dtype,
                     cost_s=s.seconds, extra=s.extra(protocol.limit_items))
                for s in evaluate(model, tokenizer, tasks, task_dir, limit=protocol.limit_items,
                                  batch_size=protocol.batch_size * 2)]
    note = {"note": _NO_SPEEDUP} if two_four else {}
    common = dict(device=device, dtype=dtype, batch=protocol.latency_batch, seq_len=protocol.latency_seq_len)
    if group == "memory":
        fp = memory_footprint(model, batch=protocol.latency_batch, seq_len=protocol.latency_seq_len)
        rows = [dict(common, metric="weights_mb", value=fp.weights_mb, unit="MiB",
                     extra={"what": "exact bytes of the weights in the stored dtype, tied tensors once", **note}),
                dict(common, metric="kv_bytes_per_token", value=float(fp.kv_bytes_per_token), unit="bytes/token",
                     extra={"what": "2 x layers x kv heads x head size x dtype bytes"})]
        if fp.total_mb is not None:
            rows.append(dict(common, metric="memory_mb", value=fp.total_mb, unit="MiB",
                             extra={"what": "weights (exact) + measured peak of one prefill", "weights_mb":
                                    fp.weights_mb, "prefill_peak_mb": fp.prefill_peak_mb, "method": fp.method,
                                    **note}))
        return rows
    if group == "latency_rel":
        from nasbench.profile.latency import measure_relative_latency, relative_rows
        from nasbench.space import arch_id

        rel = measure_relative_latency(model, reference, batch=protocol.latency_batch,
                                       seq_len=protocol.latency_seq_len, repeats=protocol.latency_repeats,
                                       decode_tokens=protocol.decode_tokens, decode_repeats=protocol.decode_pairs)
        return relative_rows(rel, dict(common, dtype=str(next(model.parameters()).dtype).removeprefix("torch.")),
                             arch_id(space.largest()), protocol.decode_tokens, note)
    if group != "latency":
        raise NasBenchError("metrics", one_of(GROUPS, each=True), group)
    lat = measure_latency(model, batch=protocol.latency_batch, seq_len=protocol.latency_seq_len,
                          repeats=protocol.latency_repeats, decode_tokens=protocol.decode_tokens,
                          decode_repeats=protocol.decode_pairs)
    timer = "cuda-events" if device.startswith("cuda") else "perf_counter"
    rows = [dict(metric="latency_ms", value=lat.median_ms, unit="ms", device=device, dtype=lat.dtype, batch=lat.batch,
                 seq_len=lat.seq_len, spread=lat.iqr_ms, n_repeats=lat.repeats, cost_s=lat.seconds,
                 extra={"threads": lat.threads, "cv": lat.cv, "timer": timer, **note})]
    if lat.decode_ms_per_token is not None:
        rows.append(dict(metric="decode_ms_per_token", value=lat.decode_ms_per_token, unit="ms", device=device,
                         dtype=lat.dtype, batch=lat.batch, seq_len=lat.seq_len, n_repeats=lat.repeats,
                         extra={"decode_tokens": protocol.decode_tokens, "timer": timer, **note}))
    return rows
