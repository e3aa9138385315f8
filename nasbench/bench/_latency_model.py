"""``nasbench bench latency-model``: time the op-level latency model of a space, fit its overheads on a DB's measured
latencies and store it; or score the stored one against them."""

from __future__ import annotations

import statistics
import time
from typing import Any

from nasbench.errors import NasBenchError, check_choice
from nasbench.space import SearchSpace

__all__ = ["bench_latency_model", "validate_latency_model"]


def bench_latency_model(space: SearchSpace, db: Any, rounds: int = 5, device: str = "cpu", dtype: str = "auto",
                        metric: str = "latency_ms", refit: bool = False) -> dict[str, Any]:
    """Time the op-level latency model of ``space`` on ``device`` (:func:`nasbench.profile.latency_model.measure_ops`,
    in ``dtype``: ``auto`` decides as ``profile`` does), fit its overheads on every arch ``db`` holds measured there
    in that dtype (prefill on ``metric``: ``latency_ms``, drift-cancelled, ``latency_wall_ms`` or ``latency_rel``;
    decode on the drift-cancelled ``decode_ms_per_token``; a phase with fewer than 2 such archs keeps zero), and store
    it in ``db``. ``refit``: no timing; the table ``db`` holds for ``device`` (in ``dtype`` unless ``auto``) fitted
    again, e.g. once more of its archs are measured or the op classes changed."""
    from pathlib import Path

    from nasbench.profile import latency_model as lm

    check_choice("metric", metric, [m for m, phase in lm.METRIC_PHASES.items() if phase == "prefill"])
    start = time.perf_counter()
    if refit:
        table = lm.load_table(db, space.name, device, None if dtype == "auto" else dtype)
        rounds = table.rounds
    else:
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
            "scale": {p: {c: round(v, 4) for c, v in f.items()} for p, f in table.scale.items()},
            "fitted_n": dict(table.fitted_n), "fit_metric": metric, "refit": refit}


def validate_latency_model(space: SearchSpace, db: Any, metric: str = "latency_ms", device: str = "cpu",
                           dtype: str | None = None, seed: int = 0, splits: int = 1) -> dict[str, Any]:
    """The stored op-level latency model of ``space`` on ``device`` (the latest; in ``dtype`` when given) against
    the measured ``metric`` of ``db``'s archs: the overheads fitted on a seeded half of them, scored on the other
    half (Kendall tau, share within +-10%, median ``|predicted / measured - 1|``). ``splits`` > 1: also the tau of
    that many seeded halves (seeds ``seed``, ``seed + 1``, ...), their mean and their minimum: how far the figure
    depends on which half was held out."""
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
    if splits < 1:
        raise NasBenchError("splits", "must be >= 1", splits)
    sums = lm.class_sums(table, archs, phase)  # the op sums once: every split refits the same columns

    def split(k: int) -> tuple[Any, Any, Any, Any]:
        order = np.random.default_rng(seed + k).permutation(len(archs))
        train, test = order[: len(order) // 2], order[len(order) // 2:]
        fitted = lm.fit(table, [archs[i] for i in train], ms[train], phase, sums=sums[train])
        return fitted, train, lm.predict(fitted, [archs[i] for i in test], phase, sums=sums[test]), ms[test]

    fitted, train, predicted, truth = split(0)
    error = np.abs(predicted / truth - 1.0)
    per_layer, constant = fitted.overhead[phase]
    out = {"bench": "latency-model", "space": space.name, "metric": metric, "phase": phase,
           "device": table.device, "hardware": table.hardware, "dtype": table.dtype, "threads": table.threads,
           "n_fit": int(len(train)), "n_test": int(len(truth)), "kendall_tau": float(kendalltau(predicted, truth)[0]),
           "within_10pct": float(np.mean(error <= 0.10)), "median_abs_rel_err": float(np.median(error)),
           "overhead_ms": {"per_layer": round(per_layer, 4), "constant": round(constant, 4)},
           "scale": {c: round(v, 4) for c, v in fitted.scale[phase].items()}}
    if splits > 1:
        taus = [out["kendall_tau"]] + [float(kendalltau(p, t)[0]) for _, _, p, t in map(split, range(1, splits))]
        out["kendall_tau_splits"] = {"seeds": list(range(seed, seed + splits)), "tau": [round(t, 4) for t in taus],
                                     "mean": round(float(np.mean(taus)), 4), "min": round(min(taus), 4)}
    return out


def _measured_ms(db: Any, table: Any, metric: str) -> tuple[list[dict[str, Any]], Any]:
    """(archs, milliseconds) of ``db``'s weight-free ``metric`` rows measured as ``table`` was timed (device, dtype,
    prompt length); a ratio (``latency_rel``, ``decode_rel``) in milliseconds: times the median of its reference's
    times."""
    import numpy as np

    from nasbench.store.latency import measured_latencies

    rows = measured_latencies(db, table.space, metric, table.device, table.dtype, table.seq_len)
    values = np.array([value for _, value, _ in rows], dtype=np.float64)
    if metric in ("latency_rel", "decode_rel") and rows:
        reference = [extra["reference_ms"] for _, _, extra in rows if "reference_ms" in extra]
        if not reference:
            raise NasBenchError("metric", f"{metric} rows need their reference's time (extra.reference_ms)", metric)
        values = values * statistics.median(reference)
    return [arch for arch, _, _ in rows], values
