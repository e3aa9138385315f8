"""The benchmark DB's schema (versioned in table ``meta``), its rows and the names of its wide views."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from nasbench.metrics import SHARED, metric_column
from nasbench.paths import DEFAULT_DB
from nasbench.space import DIMENSIONS

__all__ = ["SCHEMA_VERSION", "PUBLISHED_LAYOUT", "DEFAULT_DB", "SCHEMA", "WEIGHT_FREE_ID", "MAIN_SUPERNET_KEY", "Measurement", "view_name",
           "is_baseline", "stored_supernet"]

SCHEMA_VERSION = 6
"""4: op-level latency models (tables ``latency_models``, ``latency_ops``). 5: no new table; the wide views read the
drift-cancelled ``latency_ms`` and the wall clock as ``latency_wall_ms`` (:mod:`nasbench.store.readings`), so a DB
opened for writing (or ``nasbench migrate``) recreates its views. 6: the same for decode: the views read the
drift-cancelled ``decode_ms_per_token`` (from ``decode_rel``) and the decode wall clock as
``decode_wall_ms_per_token``."""
#: The oldest schema whose published tables (spaces ... baseline_archs) and wide views have today's layout: ``publish``
#: reads it on (a DB of schema 5 or older still has views that call a wall clock ``latency_ms`` or
#: ``decode_ms_per_token``).
PUBLISHED_LAYOUT = 6
#: The ``supernet_id`` of rows that do not depend on weights (latency, memory, FLOPs, ...:
#: :data:`nasbench.metrics.SHARED`): no supernet. They are stored once per arch and protocol and appear in every
#: supernet's row of the wide view.
WEIGHT_FREE_ID = ""
#: ``meta`` key prefix of a space's main supernet: ``main_supernet:<space>`` -> supernet id (the default of queries,
#: fronts, comparisons, exports and the publication).
MAIN_SUPERNET_KEY = "main_supernet:"

_DIMENSION_COLUMNS = ",\n    ".join(f"{d} INTEGER" for d in DIMENSIONS)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS spaces (
    name VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    hash VARCHAR NOT NULL,
    yaml VARCHAR NOT NULL,
    path VARCHAR,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (name, hash)
);
CREATE TABLE IF NOT EXISTS supernets (
    id VARCHAR PRIMARY KEY,
    space VARCHAR NOT NULL,
    base_model VARCHAR NOT NULL,
    strategy VARCHAR,
    kd VARCHAR,
    peft VARCHAR,
    data_hash VARCHAR,
    steps INTEGER,
    tokens BIGINT,
    wall_time_s DOUBLE,
    checkpoint VARCHAR,
    config VARCHAR,
    created_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS architectures (
    arch_id VARCHAR NOT NULL,
    space VARCHAR NOT NULL,
    {_DIMENSION_COLUMNS},
    per_layer VARCHAR,
    arch VARCHAR NOT NULL,
    params BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (space, arch_id)
);
CREATE TABLE IF NOT EXISTS measurements (
    space VARCHAR NOT NULL,
    arch_id VARCHAR NOT NULL,
    supernet_id VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    task VARCHAR NOT NULL DEFAULT '',
    device VARCHAR NOT NULL DEFAULT '',
    dtype VARCHAR NOT NULL DEFAULT '',
    batch INTEGER NOT NULL DEFAULT 0,
    seq_len INTEGER NOT NULL DEFAULT 0,
    value DOUBLE,
    unit VARCHAR NOT NULL,
    spread DOUBLE,
    n_repeats INTEGER,
    cost_s DOUBLE,
    software VARCHAR,
    extra VARCHAR,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (space, arch_id, supernet_id, metric, task, device, dtype, batch, seq_len)
);
-- schema 2: surrogate fidelity cards and optimizer comparisons
CREATE TABLE IF NOT EXISTS surrogate_cards (
    space VARCHAR NOT NULL,
    supernet_id VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    transform VARCHAR NOT NULL,
    n_train INTEGER NOT NULL,
    n_test INTEGER NOT NULL,
    kendall_tau DOUBLE,
    spearman_rho DOUBLE,
    r2 DOUBLE,
    mae DOUBLE,
    coverage_90 DOUBLE,
    loso_kendall_tau DOUBLE,
    loso_n INTEGER,
    cv VARCHAR,
    data_hash VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (space, supernet_id, metric)
);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    space VARCHAR NOT NULL,
    supernet_id VARCHAR,
    mode VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    seed INTEGER NOT NULL,
    objectives VARCHAR NOT NULL,
    max_evals INTEGER,
    max_sim_time_s DOUBLE,
    workers INTEGER,
    n_evals INTEGER,
    sim_time_s DOUBLE,
    wall_time_s DOUBLE,
    hv DOUBLE,
    hv_norm DOUBLE,
    igd DOUBLE,
    front_share DOUBLE,
    config VARCHAR,
    created_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS run_traces (
    run_id VARCHAR NOT NULL,
    eval INTEGER NOT NULL,
    sim_time_s DOUBLE NOT NULL,
    arch_id VARCHAR,
    objectives VARCHAR,
    hv DOUBLE,
    hv_norm DOUBLE,
    igd DOUBLE,
    front_share DOUBLE,
    PRIMARY KEY (run_id, eval)
);
-- schema 3: the archs of pruning baselines, apart from the space's archs (table architectures)
CREATE TABLE IF NOT EXISTS baseline_archs (
    space VARCHAR NOT NULL,
    supernet_id VARCHAR NOT NULL,
    arch_id VARCHAR NOT NULL,
    in_space BOOLEAN NOT NULL,
    {_DIMENSION_COLUMNS},
    per_layer VARCHAR,
    arch VARCHAR,
    params BIGINT,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (space, supernet_id, arch_id)
);
-- schema 4: op-level latency models (nasbench.profile.latency_model), one per space and device: what it was timed
-- with and its fitted overhead, and its op timings
CREATE TABLE IF NOT EXISTS latency_models (
    space VARCHAR NOT NULL,
    device VARCHAR NOT NULL,
    hardware VARCHAR NOT NULL,
    dtype VARCHAR NOT NULL,
    threads INTEGER NOT NULL,
    family VARCHAR NOT NULL,
    cpu VARCHAR NOT NULL,
    cpu_flags VARCHAR NOT NULL,
    gpu VARCHAR NOT NULL,
    seq_len INTEGER NOT NULL,
    context INTEGER NOT NULL,
    vocab_size INTEGER NOT NULL,
    rounds INTEGER NOT NULL,
    overhead VARCHAR NOT NULL,
    fitted_n VARCHAR NOT NULL,
    software VARCHAR,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (space, device, hardware, dtype, threads)
);
CREATE TABLE IF NOT EXISTS latency_ops (
    space VARCHAR NOT NULL,
    device VARCHAR NOT NULL,
    hardware VARCHAR NOT NULL,
    dtype VARCHAR NOT NULL,
    threads INTEGER NOT NULL,
    phase VARCHAR NOT NULL,
    op VARCHAR NOT NULL,
    shape VARCHAR NOT NULL,
    ms DOUBLE NOT NULL,
    spread DOUBLE,
    PRIMARY KEY (space, device, hardware, dtype, threads, phase, op, shape)
);
"""
SCHEMA = _SCHEMA


@dataclass(frozen=True)
class Measurement:
    """One measured value. The identifying columns are everything up to ``seq_len``."""

    arch_id: str
    supernet_id: str
    metric: str
    value: float | None
    """``None`` only where a value cannot exist on this machine (e.g. energy without NVML); never invented."""
    unit: str
    task: str = ""
    device: str = ""
    dtype: str = ""
    batch: int = 0
    seq_len: int = 0
    spread: float | None = None
    """Interquartile range over repeats, where repeats were taken."""
    n_repeats: int | None = None
    cost_s: float | None = None
    """Seconds this measurement took: the optimizers' simulated time."""
    software: Mapping[str, str] | None = None
    extra: Mapping[str, Any] | None = None


def is_baseline(supernet: str) -> bool:
    """A pruning baseline's model (``nasbench baseline``: ids ``baseline-*``), not a supernet of the space."""
    return supernet.startswith("baseline-")


def stored_supernet(supernet: str, metric: str) -> str:
    """The ``supernet_id`` a row of ``metric`` measured on ``supernet`` is stored under: :data:`WEIGHT_FREE_ID` for
    the shape-only metrics of a supernet (a baseline keeps its own: its model is not a sub-network of a supernet)."""
    return WEIGHT_FREE_ID if metric in SHARED and not is_baseline(supernet) else supernet


def view_name(space: str) -> str:
    """Name of the wide view of a space: ``wide_`` + the space name with non-alphanumerics as ``_``."""
    return "wide_" + re.sub(r"[^0-9a-zA-Z]+", "_", space).strip("_").lower()


def _column(metric: str, task: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", metric_column(metric, task)).lower()


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _json(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)
