"""What readers see of table ``measurements``: every stored row under its reader name, and the derived rows.

:data:`READINGS` is one SQL relation with the columns of ``measurements``. Every read that names metrics (the wide
views, the surrogates' rows, the report's and the latency model's reads, the publication, a model card's rows,
``bench retest``) selects from it instead of from ``measurements``, so the latency conversion is made here and
nowhere else (:mod:`nasbench.metrics` defines the three latencies):

* a stored row of a :data:`~nasbench.metrics.STORED_AS` metric appears under its reader name: the profiler's
  wall-clock ``latency_ms`` rows are ``latency_wall_ms``;
* each ``latency_rel`` row adds a ``latency_ms`` row, the drift-cancelled milliseconds: its value and spread times
  the reference's median wall clock, the median of ``extra.reference_ms`` (the full model re-timed beside each arch)
  over the ``latency_rel`` rows of the same space, device, dtype, batch and prompt length. The factor is the same
  for every arch of such a group, so ``latency_ms`` ranks archs exactly as ``latency_rel`` does; its ``cost_s`` and
  repeats are the ``latency_rel`` row's, and ``extra`` adds ``reference_median_ms``. A row without a reference time
  (or a baseline that measured only wall clock) gets no ``latency_ms``: wall clock is never passed off as it;
* each ``decode_rel`` row adds a ``decode_ms_per_token`` row the same way (the reference's median decode time per
  token over the ``decode_rel`` rows of its group); the wall-clock decode rows read as ``decode_wall_ms_per_token``.

Writes and the identity of stored rows (resume, merge, re-measurement) keep the stored names.
"""

from __future__ import annotations

from nasbench.metrics import DERIVED, STORED_AS, unit
from nasbench.store.schema import _literal

__all__ = ["READINGS", "COLUMNS", "DRIFT_CANCELLED", "reference_median"]

#: The columns of the relation, those of ``measurements``, in its order.
COLUMNS = ("space", "arch_id", "supernet_id", "metric", "task", "device", "dtype", "batch", "seq_len", "value", "unit",
           "spread", "n_repeats", "cost_s", "software", "extra", "created_at")
#: Derived metric -> the ratio it is computed from: ``latency_ms`` from ``latency_rel``, ``decode_ms_per_token`` from
#: ``decode_rel`` (:data:`nasbench.metrics.DERIVED`).
DRIFT_CANCELLED = dict(DERIVED)


def reference_median(source: str) -> str:
    """SQL: per (space, device, dtype, batch, seq_len), the median wall clock of the full model re-timed beside each
    arch in the ``source`` rows (``latency_rel`` or ``decode_rel``)."""
    return ("SELECT space, device, dtype, batch, seq_len, "
            "median(TRY_CAST(json_extract(extra, '$.reference_ms') AS DOUBLE)) AS reference_median_ms "
            f"FROM measurements WHERE metric = {_literal(source)} AND value IS NOT NULL GROUP BY ALL")


def _derived(name: str, source: str) -> str:
    derived = {"metric": f"{_literal(name)} AS metric", "value": "r.value * f.reference_median_ms AS value",
               "unit": f"{_literal(unit(name))} AS unit", "spread": "r.spread * f.reference_median_ms AS spread",
               "extra": "CAST(json_merge_patch(coalesce(r.extra, '{}'), json_object('reference_median_ms', "
                        "f.reference_median_ms)) AS VARCHAR) AS extra"}
    columns = ", ".join(derived.get(c, f"r.{c}") for c in COLUMNS)
    return (f"SELECT {columns} FROM measurements r JOIN ({reference_median(source)}) AS f ON f.space = r.space "
            "AND f.device = r.device AND f.dtype = r.dtype AND f.batch = r.batch AND f.seq_len = r.seq_len "
            f"WHERE r.metric = {_literal(source)} AND f.reference_median_ms IS NOT NULL")


def _relation() -> str:
    renamed = " ".join(f"WHEN {_literal(stored)} THEN {_literal(name)}" for name, stored in sorted(STORED_AS.items()))
    stored = ", ".join(f"CASE metric {renamed} ELSE metric END AS metric" if c == "metric" and renamed else c
                       for c in COLUMNS)
    return "\nUNION ALL\n".join([f"SELECT {stored} FROM measurements",
                                  *(_derived(name, source) for name, source in sorted(DRIFT_CANCELLED.items()))])


#: The relation as SQL text (bind nothing: callers add their own conditions and parameters around it), e.g.
#: ``f"SELECT ... FROM ({READINGS}) AS m WHERE m.space = ?"``.
READINGS = _relation()
