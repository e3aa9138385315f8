"""The rules of an architecture: canonical form, the structural rules of the reference model and its family, the
``constraints:`` section; one arch at a time with a message naming the dimension, or a batch of rows at once.

The structural rules are the family's (:mod:`nasbench.families`), written once over columns: a single arch is checked
row by row (one row per layer of per-layer heads) to name the first rule it breaks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from nasbench.errors import IllegalSubNetworkError, NasBenchError
from nasbench.space.schema import DIMENSIONS

if TYPE_CHECKING:
    from nasbench.space.searchspace import SearchSpace

__all__ = ["canonical", "check", "valid_mask", "columns", "parse_arch_line", "read_arch_file"]


def parse_arch_line(text: str, where: str) -> dict[str, Any]:
    """One arch from JSON: an arch object, or a line holding one under ``arch`` (``space sample``, ``pareto --format
    json``); ``where`` names the flag or ``file:line`` in the error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NasBenchError(where, f"not valid JSON ({exc.msg} at char {exc.pos})", text) from None
    if isinstance(value, dict) and isinstance(value.get("arch"), dict):
        value = value["arch"]
    if not isinstance(value, dict):
        raise NasBenchError(where, "must be a JSON object of dimensions (or a `space sample` line)", value)
    return value


def read_arch_file(path: str | Path, space: SearchSpace | None = None) -> list[dict[str, Any]]:
    """The archs of a JSONL file, one per non-blank line (:func:`parse_arch_line`); with ``space``, each checked in it.
    Errors name ``path:line``."""
    archs = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            arch = parse_arch_line(line, f"{path}:{n}")
            archs.append(arch if space is None else space.check(arch, f"{path}:{n}"))
    return archs


def canonical(space: SearchSpace, arch: Mapping[str, Any], where: str = "arch") -> dict[str, Any]:
    """``arch`` in canonical form (all dimensions, canonical order) or IllegalSubNetworkError."""
    if not isinstance(arch, Mapping):
        raise IllegalSubNetworkError(where, "an arch is a JSON object of dimensions", arch)
    unknown = sorted(set(arch) - set(DIMENSIONS))
    if unknown:
        raise IllegalSubNetworkError(f"{where}.{unknown[0]}", f"unknown dimension; known: {', '.join(DIMENSIONS)}",
                                     arch[unknown[0]])
    out: dict[str, Any] = {}
    n_layers = _int_value(space, arch, "n_layers", where)
    follows = space.model_family.kv_follows_heads
    for name in DIMENSIONS:
        dim = space.dimensions[name]
        if name == "n_kv_groups" and follows:
            out[name] = out["n_heads"]
            continue
        if name not in arch:
            if dim.kind != "fixed":
                raise IllegalSubNetworkError(f"{where}.{name}", "missing dimension", None, show_got=False)
            value: Any = dim.values[0]
        else:
            value = arch[name]
        if dim.per_layer:
            if isinstance(value, list):
                if len(value) != n_layers:
                    raise IllegalSubNetworkError(
                        f"{where}.{name}", f"a per-layer list needs one value per layer (n_layers={n_layers})",
                        value)
                value = [_check_int(v, f"{where}.{name}[{i}]") for i, v in enumerate(value)]
            else:
                value = [_check_int(value, f"{where}.{name}")] * n_layers
            for i, v in enumerate(value):
                if not dim.contains(v):
                    raise IllegalSubNetworkError(f"{where}.{name}[{i}]", f"must be {dim.describe()}", v)
        else:
            value = _check_int(value, f"{where}.{name}")
            if not dim.contains(value):
                raise IllegalSubNetworkError(f"{where}.{name}", f"must be {dim.describe()}", value)
        out[name] = value
    _check_structure(space, out, where)
    return out


def check(space: SearchSpace, arch: Mapping[str, Any], where: str = "arch") -> dict[str, Any]:
    """Canonical form of ``arch``, also enforcing the ``constraints:`` section."""
    out = canonical(space, arch, where)
    params = space.params(out)
    c = space.constraints
    if c.min_params is not None and params < c.min_params:
        raise IllegalSubNetworkError(f"{where}", f"params must be >= min_params={c.min_params}", params)
    if c.max_params is not None and params > c.max_params:
        raise IllegalSubNetworkError(f"{where}", f"params must be <= max_params={c.max_params}", params)
    return out


def _int_value(space: SearchSpace, arch: Mapping[str, Any], name: str, where: str) -> int:
    dim = space.dimensions[name]
    value = arch.get(name, dim.values[0] if dim.kind == "fixed" else None)
    if value is None:
        raise IllegalSubNetworkError(f"{where}.{name}", "missing dimension", None, show_got=False)
    return _check_int(value, f"{where}.{name}")


def _check_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise IllegalSubNetworkError(where, "must be an integer", value)
    return int(value)


def _bounds(space: SearchSpace) -> dict[str, int]:
    ref = space.reference
    return {"embed_dim": ref.embed_dim, "n_layers": ref.n_layers, "head_size": ref.head_size,
            "n_kv_groups": space.model_family.kv_bound(ref), "n_heads": ref.n_heads,
            "intermediate_size": ref.intermediate_size}


def _check_structure(space: SearchSpace, arch: dict[str, Any], where: str) -> None:
    """Rules that come from the reference model and the family, not from the file."""
    ref = space.reference
    for name, high in _bounds(space).items():
        for i, v in enumerate(arch[name] if isinstance(arch[name], list) else [arch[name]]):
            if not 1 <= v <= high:
                sub = f"[{i}]" if isinstance(arch[name], list) else ""
                raise IllegalSubNetworkError(f"{where}.{name}{sub}",
                                             f"must be in 1..{high} (the reference model's value)", v)
    groups = arch["n_kv_groups"]
    rules = space.model_family.head_rules(ref)
    heads = arch["n_heads"]
    for i, h in enumerate(heads if isinstance(heads, list) else [heads]):
        sub = f"[{i}]" if isinstance(heads, list) else ""
        if h % groups:
            raise IllegalSubNetworkError(f"{where}.n_heads{sub}", f"must be divisible by n_kv_groups={groups}", h)
        row = {"embed_dim": arch["embed_dim"], "n_heads": h, "n_kv_groups": groups, "head_size": arch["head_size"]}
        for rule in rules:
            if not rule.holds(row, ref):
                raise IllegalSubNetworkError(f"{where}.n_heads{sub}", rule.message(row, ref), h)


def valid_mask(space: SearchSpace, matrix: np.ndarray) -> np.ndarray:
    """:func:`check` of every row of an encode matrix at once (spaces without per-layer dimensions).

    The same rules, over columns, so that a batch of 100k configs validates in milliseconds; ``tests/test_space.py``
    checks the two agree on valid and invalid archs.
    """
    x = np.asarray(matrix, dtype=np.float64)
    ok = np.all(np.isfinite(x) & (x == np.floor(x)), axis=1) if x.size else np.ones(len(x), dtype=bool)
    cols = columns(space, np.where(np.isfinite(x), x, 0))
    follows = space.model_family.kv_follows_heads
    for name in DIMENSIONS:
        dim, v = space.dimensions[name], cols[name]
        if name == "n_kv_groups" and follows:
            cols[name] = cols["n_heads"]  # as canonical(): no grouped-query attention
            continue
        if dim.kind in ("int", "log_int"):
            ok &= (v >= dim.values[0]) & (v <= dim.values[1])
        else:
            ok &= np.isin(v, dim.values)
    for name, high in _bounds(space).items():
        ok &= (cols[name] >= 1) & (cols[name] <= high)
    safe = dict(cols, n_kv_groups=np.maximum(cols["n_kv_groups"], 1), n_heads=np.maximum(cols["n_heads"], 1))
    ok &= cols["n_heads"] % safe["n_kv_groups"] == 0
    for rule in space.model_family.head_rules(space.reference):
        ok &= rule.holds(safe, space.reference)
    params = space.params_matrix(np.stack([cols[n] for n in DIMENSIONS], axis=1))
    if space.constraints.min_params is not None:
        ok &= params >= space.constraints.min_params
    if space.constraints.max_params is not None:
        ok &= params <= space.constraints.max_params
    return ok


def columns(space: SearchSpace, matrix: np.ndarray) -> dict[str, np.ndarray]:
    """An n x len(DIMENSIONS) matrix as int64 columns by dimension name."""
    if space.per_layer:
        raise IllegalSubNetworkError(space.name, "batch operations need a space without per-layer dimensions",
                                     ", ".join(space.per_layer))
    x = np.asarray(matrix)
    if x.ndim != 2 or x.shape[1] != len(DIMENSIONS):
        raise IllegalSubNetworkError(space.name, f"a batch is an n x {len(DIMENSIONS)} matrix in the order "
                                                 f"{', '.join(DIMENSIONS)}", x.shape)
    x = x.astype(np.int64)
    return {name: x[:, j] for j, name in enumerate(DIMENSIONS)}
