"""Arch identity: ``arch_id``, the hash of an arch's canonical JSON, for one arch or a batch of rows at once."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping

import numpy as np

from nasbench.space.schema import DIMENSIONS

__all__ = ["canonical_json", "arch_id", "arch_ids"]


def canonical_json(arch: Mapping[str, Any]) -> str:
    """Compact JSON with sorted keys: the text that :func:`arch_id` hashes."""
    return json.dumps({k: arch[k] for k in sorted(arch)}, separators=(",", ":"), sort_keys=True)


def arch_id(arch: Mapping[str, Any]) -> str:
    """Stable id of an arch: the first 16 hex digits of SHA-256 of its canonical JSON (independent of key order)."""
    return hashlib.sha256(canonical_json(arch).encode()).hexdigest()[:16]


def arch_ids(matrix: Any, dimensions: Iterable[str] = DIMENSIONS) -> list[str]:
    """:func:`arch_id` of every row of an integer matrix whose columns are ``dimensions`` (uniform archs, scalar
    values): each row's canonical JSON is joined from pre-formatted column strings, no dict per row."""
    names = list(dimensions)
    x = np.asarray(matrix)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(f"arch_ids: expected an n x {len(names)} matrix, got shape {x.shape}")
    order = sorted(range(len(names)), key=lambda j: names[j])
    keys = [f'"{names[j]}":' for j in order]
    columns = [x[:, j].astype(np.int64).astype(str) for j in order]
    out = []
    for values in zip(*columns):
        text = "{" + ",".join(k + v for k, v in zip(keys, values)) + "}"
        out.append(hashlib.sha256(text.encode()).hexdigest()[:16])
    return out
