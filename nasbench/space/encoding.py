"""Arch identity and encodings: ``arch_id`` (one arch, or a batch of rows at once), the numeric feature matrix of the
surrogates, and the Syne Tune config space."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np

from nasbench.space.schema import DIMENSIONS, Dimension

if TYPE_CHECKING:
    from nasbench.space.searchspace import SearchSpace

__all__ = ["canonical_json", "arch_id", "arch_ids", "feature_names", "encode", "to_syne_tune", "from_syne_tune"]


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


def feature_names(space: SearchSpace) -> list[str]:
    """Column names of :meth:`encode`: one per scalar dimension; per-layer ones get a column per layer + mean."""
    names: list[str] = []
    for name in DIMENSIONS:
        if space.dimensions[name].per_layer:
            names += [f"{name}_{i}" for i in range(space.max_layers)] + [f"{name}_mean"]
        else:
            names.append(name)
    return names

def encode(space: SearchSpace, archs: Iterable[Mapping[str, Any]]) -> np.ndarray:
    """A float matrix, one row per arch; layers beyond ``n_layers`` encode as 0."""
    rows = []
    for arch in archs:
        row: list[float] = []
        for name in DIMENSIONS:
            if space.dimensions[name].per_layer:
                values = list(arch[name])
                row += values + [0.0] * (space.max_layers - len(values)) + [float(np.mean(values))]
            else:
                row.append(float(arch[name]))
        rows.append(row)
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(feature_names(space)))

def to_syne_tune(space: SearchSpace) -> dict[str, Any]:
    """The space as a Syne Tune config space; per-layer dimensions become ``<dim>_<layer>`` entries."""
    from syne_tune.config_space import choice, lograndint, randint

    def domain(dim: Dimension) -> Any:
        if dim.kind == "fixed":
            return dim.values[0]
        if dim.kind == "choice":
            return choice(list(dim.values))
        return (randint if dim.kind == "int" else lograndint)(dim.values[0], dim.values[1])

    config: dict[str, Any] = {}
    for name in DIMENSIONS:
        dim = space.dimensions[name]
        if name == "n_kv_groups" and space.model_family.kv_follows_heads:
            continue
        if dim.per_layer:
            for i in range(space.max_layers):
                config[f"{name}_{i}"] = domain(dim)
        else:
            config[name] = domain(dim)
    return config

def from_syne_tune(space: SearchSpace, config: Mapping[str, Any]) -> dict[str, Any]:
    """Invert :meth:`to_syne_tune`: a config dict -> canonical arch (per-layer entries cut at ``n_layers``)."""
    n_layers = int(config["n_layers"])
    arch: dict[str, Any] = {}
    for name in DIMENSIONS:
        if name == "n_kv_groups" and space.model_family.kv_follows_heads:
            continue
        if space.dimensions[name].per_layer:
            arch[name] = [int(config[f"{name}_{i}"]) for i in range(n_layers)]
        else:
            arch[name] = int(config[name])
    return space.canonical(arch)
