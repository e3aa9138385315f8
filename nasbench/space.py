"""Search spaces: one YAML file -> :class:`SearchSpace`.

The YAML file is the single source of truth for the supernet, the samplers, the DuckDB columns and the optimizers'
config space. This module reads it (with ``include:``), validates it, samples architectures from it, counts their
parameters analytically and encodes them as numbers.

An *architecture* (``arch``) is a plain dict with exactly the keys of :data:`DIMENSIONS`, in that order. Scalar
dimensions hold an int; dimensions declared ``per_layer: true`` hold a list of ``n_layers`` ints.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import yaml

from nasbench.errors import IllegalSubNetworkError, InvalidSpaceError
from nasbench.metrics import OBJECTIVE_METRICS, TASK_METRICS, is_maximized
from nasbench.metrics import unit as metric_unit

__all__ = [
    "DIMENSIONS",
    "FAMILIES",
    "Dimension",
    "ModelReference",
    "ModelSpec",
    "DataSource",
    "Objective",
    "Constraints",
    "SearchSpace",
    "load_space",
    "parse_space",
    "arch_id",
    "canonical_json",
]

#: The searchable axes, in canonical order. The same names are YAML keys, Python keys, DuckDB columns and CLI words.
DIMENSIONS: tuple[str, ...] = ("embed_dim", "n_layers", "n_heads", "head_size", "n_kv_groups", "intermediate_size")
#: Dimensions that may be declared ``per_layer: true`` (non-uniform layer-wise allocation).
PER_LAYER_DIMENSIONS = ("n_heads", "intermediate_size")
#: Model families the supernet knows.
FAMILIES = ("llama", "gpt_neox")
#: How a dimension's values are drawn: the seed paper's "Random Choice", "Random Integer", "Logarithmic Integer".
KINDS = ("choice", "int", "log_int")

_TOP_KEYS = {"name", "version", "description", "include", "model", "dimensions", "constraints", "objectives", "data"}
_REFERENCE_KEYS = {
    "n_layers", "embed_dim", "n_heads", "n_kv_groups", "head_size", "intermediate_size", "vocab_size", "tied_head",
    "attention_bias", "mlp_bias",
}
_DATA_KINDS = ("text", "instructions", "tasks")
_MAX_ENUMERATION = 200_000

# Bounds that hold before anything is expanded or stored: a space file is data from anywhere.
_MAX_FILE_BYTES = 1 << 20
"""A space file (or an included one) is at most 1 MiB."""
_MAX_NODES = 20_000
"""YAML nodes after expanding aliases (an alias bomb stops here, before it is built)."""
_MAX_DEPTH = 32
"""Nesting depth of the YAML document."""
_MAX_INCLUDES = 8
"""Length of an ``include:`` chain."""
_INT32_MAX = 2**31 - 1
"""DuckDB INTEGER: dimension columns, version."""
_INT64_MAX = 2**63 - 1
"""DuckDB BIGINT: params, min_params, max_params."""
#: Largest reference values nasbench accepts (far beyond today's LLMs; they keep per-layer lists, enumerations and
#: parameter counts bounded).
_REFERENCE_MAX = {"n_layers": 1024, "embed_dim": 1 << 20, "n_heads": 1024, "n_kv_groups": 1024, "head_size": 4096,
                  "intermediate_size": 1 << 22, "vocab_size": 1 << 24}
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")
#: Metrics an objective may name (the metric registry); task metrics may carry a task suffix (``acc_arc_easy``).
METRICS = OBJECTIVE_METRICS
_SAMPLE_PATIENCE = 20_000
"""Draws in a row without a valid arch after which sampling gives up (constraints that admit (almost) nothing)."""


# ----------------------------------------------------------------------------------------------------------- parts
@dataclass(frozen=True)
class Dimension:
    """One searchable axis."""

    name: str
    """One of :data:`DIMENSIONS`."""
    kind: str
    """``choice``, ``int``, ``log_int`` or ``fixed``."""
    values: tuple[int, ...]
    """``choice``: the choices; ``int`` / ``log_int``: ``(low, high)`` inclusive; ``fixed``: ``(value,)``."""
    per_layer: bool = False
    """Each layer draws its own value (only :data:`PER_LAYER_DIMENSIONS`)."""

    @property
    def low(self) -> int:
        return min(self.values)

    @property
    def high(self) -> int:
        return max(self.values)

    def candidates(self) -> list[int]:
        """Every allowed value, ascending."""
        if self.kind in ("int", "log_int"):
            return list(range(self.values[0], self.values[1] + 1))
        return sorted(set(self.values))

    def count(self) -> int:
        return self.values[1] - self.values[0] + 1 if self.kind in ("int", "log_int") else len(set(self.values))

    def contains(self, value: int) -> bool:
        if self.kind in ("int", "log_int"):
            return self.values[0] <= value <= self.values[1]
        return value in self.values

    def describe(self) -> str:
        if self.kind == "fixed":
            text = f"fixed {self.values[0]}"
        elif self.kind == "choice":
            text = "choice " + "|".join(str(v) for v in self.values)
        else:
            text = f"{self.kind} {self.values[0]}..{self.values[1]}"
        return text + (" per layer" if self.per_layer else "")

    def sample(self, rng: np.random.Generator) -> int:
        if self.kind == "fixed":
            return self.values[0]
        if self.kind == "choice":
            return int(self.values[int(rng.integers(len(self.values)))])
        low, high = self.values
        if self.kind == "int":
            return int(rng.integers(low, high + 1))
        # log_int: log-uniform over [low, high + 1), floored, so every integer keeps a share of the mass
        return min(high, int(math.floor(math.exp(rng.uniform(math.log(low), math.log(high + 1))))))


@dataclass(frozen=True)
class ModelReference:
    """The pretrained model's own dimensions (the supernet's largest values)."""

    n_layers: int
    embed_dim: int
    n_heads: int
    n_kv_groups: int
    """Number of key/value heads (GQA groups); equals ``n_heads`` without GQA."""
    head_size: int
    intermediate_size: int
    vocab_size: int
    tied_head: bool
    """The LM head shares the token embedding's weights."""
    attention_bias: bool = False
    """llama only: q/k/v/o projections carry a bias."""
    mlp_bias: bool = False
    """llama only: MLP projections carry a bias."""


@dataclass(frozen=True)
class ModelSpec:
    """Where the pretrained model comes from."""

    family: str
    """``llama`` or ``gpt_neox``."""
    reference: ModelReference
    gguf_package: str | None = None
    """``gguf:`` source: the installed Python package holding the file."""
    gguf_file: str | None = None
    """``gguf:`` source: the file name inside that package."""
    hf: str | None = None
    """``hf:`` source: a hub id or a local directory."""

    @property
    def source(self) -> str:
        return f"gguf:{self.gguf_package}/{self.gguf_file}" if self.gguf_file else f"hf:{self.hf}"


@dataclass(frozen=True)
class DataSource:
    """A named data source, read from the data directory or, online, from the HF hub."""

    name: str
    kind: str
    """``text`` (plain text), ``instructions`` (Alpaca-format JSON) or ``tasks`` (evaluation task names)."""
    paths: tuple[str, ...] = ()
    """Paths relative to the data directory."""
    hf: tuple[str, ...] = ()
    """Equivalent HF dataset ids (``id[:config][@split]``), one per path."""
    tasks: tuple[str, ...] = ()
    """``tasks`` sources: the evaluation task names."""


@dataclass(frozen=True)
class Objective:
    name: str
    minimize: bool
    unit: str


@dataclass(frozen=True)
class Constraints:
    """Rules beyond the dimensions' ranges. Structural rules (GQA grouping, reference bounds) always hold."""

    min_params: int | None = None
    max_params: int | None = None


# ----------------------------------------------------------------------------------------------------- the space
@dataclass(frozen=True)
class SearchSpace:
    """A validated search space. Build it with :func:`load_space`."""

    name: str
    version: int
    description: str
    model: ModelSpec
    dimensions: dict[str, Dimension]
    constraints: Constraints
    objectives: tuple[Objective, ...]
    data: dict[str, DataSource]
    path: str = ""
    yaml_text: str = field(default="", repr=False)
    """The merged document as YAML (includes resolved): what the store records and hashes."""

    # -- identity -------------------------------------------------------------------------------------------------
    @property
    def family(self) -> str:
        return self.model.family

    @property
    def reference(self) -> ModelReference:
        return self.model.reference

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.yaml_text.encode()).hexdigest()[:16]

    @property
    def per_layer(self) -> tuple[str, ...]:
        return tuple(d for d in DIMENSIONS if self.dimensions[d].per_layer)

    @property
    def max_layers(self) -> int:
        return self.dimensions["n_layers"].high

    # -- architectures --------------------------------------------------------------------------------------------
    def canonical(self, arch: Mapping[str, Any], where: str = "arch") -> dict[str, Any]:
        """Return ``arch`` in canonical form (all dimensions, canonical order) or raise IllegalSubNetworkError.

        Fixed dimensions may be left out; a scalar given for a per-layer dimension is repeated for every layer;
        with ``gpt_neox``, ``n_kv_groups`` always equals ``n_heads`` (no grouped-query attention).
        """
        if not isinstance(arch, Mapping):
            raise IllegalSubNetworkError(where, "an arch is a JSON object of dimensions", arch)
        unknown = sorted(set(arch) - set(DIMENSIONS))
        if unknown:
            raise IllegalSubNetworkError(f"{where}.{unknown[0]}", f"unknown dimension; known: {', '.join(DIMENSIONS)}",
                                         arch[unknown[0]])
        out: dict[str, Any] = {}
        n_layers = self._int_value(arch, "n_layers", where)
        for name in DIMENSIONS:
            dim = self.dimensions[name]
            if name == "n_kv_groups" and self.family == "gpt_neox":
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
                    value = [self._check_int(v, f"{where}.{name}[{i}]") for i, v in enumerate(value)]
                else:
                    value = [self._check_int(value, f"{where}.{name}")] * n_layers
                for i, v in enumerate(value):
                    if not dim.contains(v):
                        raise IllegalSubNetworkError(f"{where}.{name}[{i}]", f"must be {dim.describe()}", v)
            else:
                value = self._check_int(value, f"{where}.{name}")
                if not dim.contains(value):
                    raise IllegalSubNetworkError(f"{where}.{name}", f"must be {dim.describe()}", value)
            out[name] = value
        self._check_structure(out, where)
        return out

    def is_valid(self, arch: Mapping[str, Any]) -> bool:
        """True when ``arch`` is in the space and meets every constraint, including min/max params."""
        try:
            self.check(arch)
        except IllegalSubNetworkError:
            return False
        return True

    def check(self, arch: Mapping[str, Any], where: str = "arch") -> dict[str, Any]:
        """Canonical form of ``arch``, also enforcing the ``constraints:`` section."""
        out = self.canonical(arch, where)
        params = self.params(out)
        c = self.constraints
        if c.min_params is not None and params < c.min_params:
            raise IllegalSubNetworkError(f"{where}", f"params must be >= min_params={c.min_params}", params)
        if c.max_params is not None and params > c.max_params:
            raise IllegalSubNetworkError(f"{where}", f"params must be <= max_params={c.max_params}", params)
        return out

    def _int_value(self, arch: Mapping[str, Any], name: str, where: str) -> int:
        dim = self.dimensions[name]
        value = arch.get(name, dim.values[0] if dim.kind == "fixed" else None)
        if value is None:
            raise IllegalSubNetworkError(f"{where}.{name}", "missing dimension", None, show_got=False)
        return self._check_int(value, f"{where}.{name}")

    @staticmethod
    def _check_int(value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise IllegalSubNetworkError(where, "must be an integer", value)
        return int(value)

    def _check_structure(self, arch: dict[str, Any], where: str) -> None:
        """Rules that come from the reference model and the family, not from the file."""
        ref = self.reference
        bounds = {
            "embed_dim": ref.embed_dim, "n_layers": ref.n_layers, "head_size": ref.head_size,
            "n_kv_groups": ref.n_kv_groups if self.family == "llama" else ref.n_heads,
            "n_heads": ref.n_heads, "intermediate_size": ref.intermediate_size,
        }
        for name, high in bounds.items():
            for i, v in enumerate(_as_list(arch[name])):
                if not 1 <= v <= high:
                    sub = f"[{i}]" if isinstance(arch[name], list) else ""
                    raise IllegalSubNetworkError(f"{where}.{name}{sub}",
                                                 f"must be in 1..{high} (the reference model's value)", v)
        groups = arch["n_kv_groups"]
        q_per_kv = ref.n_heads // ref.n_kv_groups
        for i, h in enumerate(_as_list(arch["n_heads"])):
            sub = f"[{i}]" if isinstance(arch["n_heads"], list) else ""
            if h % groups:
                raise IllegalSubNetworkError(f"{where}.n_heads{sub}",
                                             f"must be divisible by n_kv_groups={groups}", h)
            if self.family == "llama" and h // groups > q_per_kv:
                raise IllegalSubNetworkError(
                    f"{where}.n_heads{sub}",
                    f"n_heads / n_kv_groups must be <= {q_per_kv} (query heads per kv head in the reference model; "
                    f"n_kv_groups={groups})", h)
            if self.family == "llama" and arch["embed_dim"] % h:
                # transformers' LlamaConfig refuses hidden_size % num_attention_heads != 0 even with an explicit
                # head_dim; keeping the rule makes every arch of the space exportable as a plain HF model
                raise IllegalSubNetworkError(
                    f"{where}.n_heads{sub}",
                    f"llama needs embed_dim divisible by n_heads (embed_dim={arch['embed_dim']}; HF's LlamaConfig "
                    f"rule)", h)
            if self.family == "gpt_neox" and h * arch["head_size"] != arch["embed_dim"]:
                raise IllegalSubNetworkError(
                    f"{where}.n_heads{sub}",
                    f"gpt_neox needs n_heads * head_size == embed_dim (head_size={arch['head_size']}, "
                    f"embed_dim={arch['embed_dim']})", h)

    # -- sampling -------------------------------------------------------------------------------------------------
    def sample(self, n: int = 1, seed: int = 0, max_trials: int = 100_000) -> list[dict[str, Any]]:
        """``n`` valid architectures drawn by rejection sampling; the same seed gives the same list."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InvalidSpaceError("--seed", "must be an integer >= 0", seed)
        rng = np.random.default_rng(seed)
        out: list[dict[str, Any]] = []
        trials = misses = 0
        patience = min(max_trials, _SAMPLE_PATIENCE)
        while len(out) < n:
            trials += 1
            if misses >= patience:
                raise InvalidSpaceError(f"{self.path}:constraints",
                                        f"no valid architecture in {misses:,} draws in a row: the constraints (and "
                                        f"structural rules) admit (almost) no arch; widen min_params..max_params",
                                        {"min_params": self.constraints.min_params,
                                         "max_params": self.constraints.max_params})
            arch = self._draw(rng)
            if self.is_valid(arch):
                out.append(self.canonical(arch))
                misses = 0
            else:
                misses += 1
        return out

    def _draw(self, rng: np.random.Generator) -> dict[str, Any]:
        arch: dict[str, Any] = {}
        n_layers = self.dimensions["n_layers"].sample(rng)
        for name in DIMENSIONS:
            dim = self.dimensions[name]
            if name == "n_layers":
                arch[name] = n_layers
            elif dim.per_layer:
                arch[name] = [dim.sample(rng) for _ in range(n_layers)]
            else:
                arch[name] = dim.sample(rng)
        return arch

    def smallest(self) -> dict[str, Any]:
        """The structurally valid arch with every dimension at its smallest (the sandwich rule's lower end).

        ``constraints.min_params`` / ``max_params`` are not applied here; they bound what is sampled.
        """
        return self._extreme(largest=False)

    def largest(self) -> dict[str, Any]:
        """The structurally valid arch with every dimension at its largest (the sandwich rule's upper end)."""
        return self._extreme(largest=True)

    def _extreme(self, largest: bool) -> dict[str, Any]:
        base = {name: dim.high if largest else dim.low for name, dim in self.dimensions.items()}
        if self.family == "gpt_neox":
            base["n_kv_groups"] = base["n_heads"]
        try:
            return self.canonical(base)
        except IllegalSubNetworkError:
            pass
        # The extremes of the coupled dimensions (heads, kv groups, head size, embed dim) may clash: search the
        # coupled dimensions for the valid combination with the fewest (most) parameters.
        coupled = ["n_heads", "n_kv_groups", "head_size", "embed_dim"]
        if math.prod(self.dimensions[d].count() for d in coupled) > _MAX_ENUMERATION:
            if self.dimensions["n_heads"].count() * self.dimensions["n_kv_groups"].count() > _MAX_ENUMERATION:
                raise InvalidSpaceError(f"{self.path}:dimensions", f"n_heads x n_kv_groups must have at most "
                                                                   f"{_MAX_ENUMERATION:,} combinations",
                                        self.dimensions["n_heads"].count() * self.dimensions["n_kv_groups"].count())
            lists = [self.dimensions[d].candidates() if d in ("n_heads", "n_kv_groups")
                     else [base[d]] for d in coupled]
        else:
            lists = [self.dimensions[d].candidates() for d in coupled]
        best: tuple[int, dict[str, Any]] | None = None
        for combo in _product(lists):
            trial = dict(base, **dict(zip(coupled, combo)))
            if self.family == "gpt_neox":
                trial["n_kv_groups"] = trial["n_heads"]
            try:
                arch = self.canonical(trial)
            except IllegalSubNetworkError:
                continue
            key = self.params(arch) * (-1 if largest else 1)
            if best is None or key < best[0]:
                best = (key, arch)
        if best is None:
            raise InvalidSpaceError(
                f"{self.path}:dimensions",
                "unsatisfiable: no combination of n_heads, n_kv_groups, head_size and embed_dim meets the structural "
                "rules (n_heads divisible by n_kv_groups, n_heads / n_kv_groups <= the reference's ratio"
                + (", embed_dim divisible by n_heads" if self.family == "llama" else "") + (", n_heads * head_size == embed_dim" if self.family == "gpt_neox" else "") + ")",
                {d: self.dimensions[d].describe() for d in coupled})
        return best[1]

    def grid(self, k: int, seed: int = 0, trials: int = 10_000) -> list[list[dict[str, Any]]]:
        """``k`` bins of equal width in parameter count, filled by rejection sampling with at most ``trials`` draws.

        Bin edges run from the smallest to the largest valid parameter count (clipped by min/max params). The
        smallest and largest archs seed the end bins when they meet the constraints. Bins may stay empty.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidSpaceError("--grid-params", "must be an integer >= 1", k)
        if isinstance(trials, bool) or not isinstance(trials, (int, np.integer)) or trials < 1:
            raise InvalidSpaceError("--grid-trials", "must be an integer >= 1", trials)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InvalidSpaceError("--seed", "must be an integer >= 0", seed)
        rng = np.random.default_rng(seed)
        low, high = self.params(self.smallest()), self.params(self.largest())
        if self.constraints.min_params is not None:
            low = max(low, self.constraints.min_params)
        if self.constraints.max_params is not None:
            high = min(high, self.constraints.max_params)
        edges = np.linspace(low, high, k + 1)
        bins: list[list[dict[str, Any]]] = [[] for _ in range(k)]
        seen: set[str] = set()
        pool = [a for a in (self.smallest(), self.largest()) if self.is_valid(a)]
        for _ in range(trials):
            pool.append(self._draw(rng))
        for arch in pool:
            if not self.is_valid(arch):
                continue
            arch = self.canonical(arch)
            aid = arch_id(arch)
            if aid in seen:
                continue
            seen.add(aid)
            index = int(np.searchsorted(edges, self.params(arch), side="right")) - 1
            bins[min(max(index, 0), k - 1)].append(arch)
        return bins

    def sample_grid(self, n: int, k: int, seed: int = 0, trials: int = 10_000) -> list[dict[str, Any]]:
        """``n`` archs spread evenly over the ``k`` parameter bins: bins are visited in turn, an arch drawn from each.

        Within a bin archs are drawn without replacement until the bin is used up, then with replacement.
        """
        bins = [b for b in self.grid(k, seed, trials) if b]
        if not bins:
            raise InvalidSpaceError(f"{self.path}:constraints", f"no valid architecture in {trials:,} draws (raise "
                                                                f"--grid-trials or widen the constraints)", trials)
        rng = np.random.default_rng(seed + 1)
        order = [list(rng.permutation(len(b))) for b in bins]
        out = []
        for i in range(n):
            j = i % len(bins)
            index = order[j].pop() if order[j] else int(rng.integers(len(bins[j])))
            out.append(bins[j][index])
        return out

    # -- counting -------------------------------------------------------------------------------------------------
    def params(self, arch: Mapping[str, Any]) -> int:
        """Exact parameter count of the dense model extracted for ``arch`` (embeddings, norms, head included)."""
        ref = self.reference
        e, layers, d = arch["embed_dim"], arch["n_layers"], arch["head_size"]
        heads = _per_layer(arch["n_heads"], layers)
        groups = _per_layer(arch["n_kv_groups"], layers)
        inter = _per_layer(arch["intermediate_size"], layers)
        total = ref.vocab_size * e * (1 if ref.tied_head else 2)
        if self.family == "llama":
            total += e  # final RMSNorm
            for h, g, i in zip(heads, groups, inter):
                attn = e * h * d + 2 * e * g * d + h * d * e
                if ref.attention_bias:
                    attn += h * d + 2 * g * d + e
                mlp = 3 * e * i + ((2 * i + e) if ref.mlp_bias else 0)
                total += attn + mlp + 2 * e  # two RMSNorms
        else:  # gpt_neox: biases everywhere, LayerNorms with bias, fused qkv, ungated MLP
            total += 2 * e  # final LayerNorm
            for h, i in zip(heads, inter):
                attn = e * 3 * h * d + 3 * h * d + h * d * e + e
                mlp = e * i + i + i * e + e
                total += attn + mlp + 4 * e  # two LayerNorms
        return total

    def params_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """:meth:`params` of every row of an :meth:`encode` matrix at once (spaces without per-layer dimensions)."""
        cols = self._columns(matrix)
        ref = self.reference
        e, layers, d = cols["embed_dim"], cols["n_layers"], cols["head_size"]
        h, g, i = cols["n_heads"], cols["n_kv_groups"], cols["intermediate_size"]
        total = ref.vocab_size * e * (1 if ref.tied_head else 2)
        if self.family == "llama":
            attn = e * h * d + 2 * e * g * d + h * d * e
            if ref.attention_bias:
                attn = attn + h * d + 2 * g * d + e
            mlp = 3 * e * i + ((2 * i + e) if ref.mlp_bias else 0)
            return total + e + layers * (attn + mlp + 2 * e)
        attn = e * 3 * h * d + 3 * h * d + h * d * e + e
        mlp = e * i + i + i * e + e
        return total + 2 * e + layers * (attn + mlp + 4 * e)

    def flops_matrix(self, matrix: np.ndarray, seq_len: int = 512) -> np.ndarray:
        """:meth:`flops` of every row of an :meth:`encode` matrix at once (spaces without per-layer dimensions)."""
        cols = self._columns(matrix)
        e, layers, d = cols["embed_dim"], cols["n_layers"], cols["head_size"]
        h, g, i = cols["n_heads"], cols["n_kv_groups"], cols["intermediate_size"]
        mlp_mats = 3 if self.family == "llama" else 2
        matmul = self.reference.vocab_size * e + layers * (e * h * d * 2 + 2 * e * g * d + mlp_mats * e * i)
        attention = layers * (2 * 2 * h * d * (seq_len + 1) / 2)
        return (2 * matmul + attention).astype(np.int64)

    def valid_mask(self, matrix: np.ndarray) -> np.ndarray:
        """:meth:`is_valid` of every row of an :meth:`encode` matrix at once (spaces without per-layer dimensions).

        The same rules as :meth:`check`, written over columns so that a batch of 100k configs validates in
        milliseconds; ``tests/test_space.py`` checks the two agree on valid and invalid archs.
        """
        x = np.asarray(matrix, dtype=np.float64)
        ok = np.all(np.isfinite(x) & (x == np.floor(x)), axis=1) if x.size else np.ones(len(x), dtype=bool)
        cols = self._columns(np.where(np.isfinite(x), x, 0))
        ref = self.reference
        for name in DIMENSIONS:
            dim, v = self.dimensions[name], cols[name]
            if name == "n_kv_groups" and self.family == "gpt_neox":
                cols[name] = cols["n_heads"]  # as canonical(): no grouped-query attention in gpt_neox
                continue
            if dim.kind in ("int", "log_int"):
                ok &= (v >= dim.values[0]) & (v <= dim.values[1])
            else:
                ok &= np.isin(v, dim.values)
        bounds = {"embed_dim": ref.embed_dim, "n_layers": ref.n_layers, "head_size": ref.head_size,
                  "n_kv_groups": ref.n_kv_groups if self.family == "llama" else ref.n_heads,
                  "n_heads": ref.n_heads, "intermediate_size": ref.intermediate_size}
        for name, high in bounds.items():
            ok &= (cols[name] >= 1) & (cols[name] <= high)
        h, g, e = cols["n_heads"], np.maximum(cols["n_kv_groups"], 1), cols["embed_dim"]
        ok &= h % g == 0
        if self.family == "llama":
            ok &= h // g <= ref.n_heads // ref.n_kv_groups
            ok &= e % np.maximum(h, 1) == 0
        else:
            ok &= h * cols["head_size"] == e
        params = self.params_matrix(np.stack([cols[n] for n in DIMENSIONS], axis=1))
        if self.constraints.min_params is not None:
            ok &= params >= self.constraints.min_params
        if self.constraints.max_params is not None:
            ok &= params <= self.constraints.max_params
        return ok

    def _columns(self, matrix: np.ndarray) -> dict[str, np.ndarray]:
        if self.per_layer:
            raise IllegalSubNetworkError(self.name, "batch operations need a space without per-layer dimensions",
                                         ", ".join(self.per_layer))
        x = np.asarray(matrix)
        if x.ndim != 2 or x.shape[1] != len(DIMENSIONS):
            raise IllegalSubNetworkError(self.name, f"a batch is an n x {len(DIMENSIONS)} matrix in the order "
                                                    f"{', '.join(DIMENSIONS)}", x.shape)
        x = x.astype(np.int64)
        return {name: x[:, j] for j, name in enumerate(DIMENSIONS)}

    def flops(self, arch: Mapping[str, Any], seq_len: int = 512) -> int:
        """Forward FLOPs per token at context length ``seq_len``: 2 per multiply-add.

        ``2 * (matmul weights touched per token, LM head included, embedding lookup excluded)`` plus causal attention
        ``2 * 2 * n_heads * head_size * (seq_len + 1) / 2`` per layer (scores and weighted sum over on average half
        the context). Norms, activations and softmax are ignored (they are < 1% here).
        """
        ref = self.reference
        e, layers, d = arch["embed_dim"], arch["n_layers"], arch["head_size"]
        heads = _per_layer(arch["n_heads"], layers)
        groups = _per_layer(arch["n_kv_groups"], layers)
        inter = _per_layer(arch["intermediate_size"], layers)
        matmul = ref.vocab_size * e
        attention = 0.0
        mlp_mats = 3 if self.family == "llama" else 2
        for h, g, i in zip(heads, groups, inter):
            matmul += e * h * d * 2 + 2 * e * g * d + mlp_mats * e * i
            attention += 2 * 2 * h * d * (seq_len + 1) / 2
        return int(2 * matmul + attention)

    def cardinality(self) -> int:
        """Number of dimension-value combinations before constraints (per-layer dimensions count every layer)."""
        dims = self.dimensions
        total = 0
        for n_layers in dims["n_layers"].candidates():
            count = 1
            for name in DIMENSIONS:
                if name == "n_layers":
                    continue
                count *= dims[name].count() ** (n_layers if dims[name].per_layer else 1)
            total += count
        return total

    # -- encodings ------------------------------------------------------------------------------------------------
    def feature_names(self) -> list[str]:
        """Column names of :meth:`encode`: one per scalar dimension; per-layer ones get a column per layer + mean."""
        names: list[str] = []
        for name in DIMENSIONS:
            if self.dimensions[name].per_layer:
                names += [f"{name}_{i}" for i in range(self.max_layers)] + [f"{name}_mean"]
            else:
                names.append(name)
        return names

    def encode(self, archs: Iterable[Mapping[str, Any]]) -> np.ndarray:
        """A float matrix, one row per arch; layers beyond ``n_layers`` encode as 0."""
        rows = []
        for arch in archs:
            row: list[float] = []
            for name in DIMENSIONS:
                if self.dimensions[name].per_layer:
                    values = list(arch[name])
                    row += values + [0.0] * (self.max_layers - len(values)) + [float(np.mean(values))]
                else:
                    row.append(float(arch[name]))
            rows.append(row)
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(self.feature_names()))

    def to_syne_tune(self) -> dict[str, Any]:
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
            dim = self.dimensions[name]
            if name == "n_kv_groups" and self.family == "gpt_neox":
                continue
            if dim.per_layer:
                for i in range(self.max_layers):
                    config[f"{name}_{i}"] = domain(dim)
            else:
                config[name] = domain(dim)
        return config

    def from_syne_tune(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Invert :meth:`to_syne_tune`: a config dict -> canonical arch (per-layer entries cut at ``n_layers``)."""
        n_layers = int(config["n_layers"])
        arch: dict[str, Any] = {}
        for name in DIMENSIONS:
            if name == "n_kv_groups" and self.family == "gpt_neox":
                continue
            if self.dimensions[name].per_layer:
                arch[name] = [int(config[f"{name}_{i}"]) for i in range(n_layers)]
            else:
                arch[name] = int(config[name])
        return self.canonical(arch)


# ------------------------------------------------------------------------------------------------------ identity
def canonical_json(arch: Mapping[str, Any]) -> str:
    """Compact JSON with sorted keys: the text that :func:`arch_id` hashes."""
    return json.dumps({k: arch[k] for k in sorted(arch)}, separators=(",", ":"), sort_keys=True)


def arch_id(arch: Mapping[str, Any]) -> str:
    """Stable id of an arch: the first 16 hex digits of SHA-256 of its canonical JSON (independent of key order)."""
    return hashlib.sha256(canonical_json(arch).encode()).hexdigest()[:16]


# -------------------------------------------------------------------------------------------------------- loading
def load_space(path: str | Path) -> SearchSpace:
    """Read, merge (``include:``) and validate a search-space file; raise InvalidSpaceError with file:key on error."""
    path = Path(path)
    doc = _load_merged(path, stack=())
    return _parse(doc, str(path))


def parse_space(text: str, where: str) -> SearchSpace:
    """A space from merged YAML text (what the store records), e.g. to rebuild a benchmark's space from its DB."""
    if not isinstance(text, str):
        raise InvalidSpaceError(where, "a search space is YAML text", type(text).__name__)
    if len(text.encode("utf-8", "surrogatepass")) > _MAX_FILE_BYTES:
        raise InvalidSpaceError(where, f"must be at most {_MAX_FILE_BYTES:,} bytes", len(text))
    return _parse(_yaml_mapping(text, where), where)


def _read_yaml(path: Path, where: str) -> dict[str, Any]:
    if not path.is_file():
        raise InvalidSpaceError(where, "file not found", str(path))
    try:
        size = path.stat().st_size
        if size > _MAX_FILE_BYTES:
            raise InvalidSpaceError(str(path), f"must be at most {_MAX_FILE_BYTES:,} bytes", size)
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidSpaceError(str(path), "cannot read the file", exc.strerror or str(exc)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise InvalidSpaceError(f"{path}:{line}", "must be UTF-8 text", raw[exc.start:exc.start + 4]) from None
    return _yaml_mapping(text, str(path))


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses duplicate keys (YAML says they are an error; PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key_node.value!r}",
                                                            key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_mapping(text: str, where: str) -> dict[str, Any]:
    """Parse YAML text into a mapping, refusing alias bombs, deep nesting and duplicate keys before building it."""
    loader = None
    try:
        loader = _StrictLoader(text)  # its reader already refuses non-printable characters
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise InvalidSpaceError(where, f"nests too deeply (at most {_MAX_DEPTH} levels)", None,
                                    show_got=False) from None
        if node is None:
            raise InvalidSpaceError(where, "a search space is a YAML mapping", "an empty document")
        _check_size(node, where)
        doc = loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidSpaceError(f"{where}{line}", "malformed YAML", problem) from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(doc, dict):
        raise InvalidSpaceError(where, "a search space is a YAML mapping", type(doc).__name__)
    return doc


def _check_size(root: yaml.Node, where: str) -> None:
    """Count the nodes the document expands to (aliases counted at every use) and its depth, without recursion."""
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > _MAX_NODES:
            raise InvalidSpaceError(where, f"expands to more than {_MAX_NODES:,} YAML nodes (aliases count at every "
                                           f"use)", None, show_got=False)
        if depth > _MAX_DEPTH:
            line = node.start_mark.line + 1 if node.start_mark is not None else 0
            raise InvalidSpaceError(f"{where}:{line}", f"nests too deeply (at most {_MAX_DEPTH} levels)", depth)
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.append((key, depth + 1))
                stack.append((value, depth + 1))


def _load_merged(path: Path, stack: tuple[Path, ...], where: str | None = None) -> dict[str, Any]:
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise InvalidSpaceError(where or str(path), "cannot resolve the path", str(exc)) from None
    if resolved in stack:
        chain = " -> ".join(str(p) for p in (*stack, resolved))
        raise InvalidSpaceError(f"{stack[-1]}:include", "include cycle", chain)
    if len(stack) >= _MAX_INCLUDES:
        raise InvalidSpaceError(f"{stack[-1]}:include", f"includes nest at most {_MAX_INCLUDES} deep", len(stack))
    doc = _read_yaml(path, where or str(path))
    include = doc.pop("include", None)
    if include is None:
        return doc
    if not isinstance(include, str) or not include.strip() or "\x00" in include:
        raise InvalidSpaceError(f"{path}:include", "must be a path string", include)
    base = _load_merged(path.parent / include, (*stack, resolved), where=f"{path}:include")
    return _deep_merge(base, doc)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else in ``top`` replaces ``base`` (the including file wins)."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class _Reader:
    """Typed access to the YAML document; every error names file:key, the rule and the value."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, key: str, rule: str, got: Any = None, show_got: bool = True) -> InvalidSpaceError:
        return InvalidSpaceError(f"{self.file}:{key}", rule, got, show_got=show_got)

    def mapping(self, value: Any, key: str, allowed: set[str] | None = None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, "must be a mapping", value)
        if allowed is not None:
            unknown = sorted(set(map(str, value)) - allowed)
            if unknown:
                raise self.fail(f"{key}.{unknown[0]}" if key else unknown[0],
                                f"unknown key; allowed: {', '.join(sorted(allowed))}", unknown[0])
        return value

    def integer(self, value: Any, key: str, minimum: int | None = 1, maximum: int = _INT32_MAX) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, "must be an integer", value)
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be >= {minimum}", value)
        if value > maximum:
            raise self.fail(key, f"must be <= {maximum:,}", value)
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, "must be a non-empty string", value)
        return value

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, "must be true or false", value)
        return value

    def strings(self, value: Any, key: str) -> tuple[str, ...]:
        items = value if isinstance(value, list) else [value]
        if not items:
            raise self.fail(key, "must not be empty", value)
        return tuple(self.string(v, f"{key}[{i}]") for i, v in enumerate(items))


def _parse(doc: dict[str, Any], file: str) -> SearchSpace:
    r = _Reader(file)
    r.mapping(doc, "", _TOP_KEYS - {"include"})
    for key in ("name", "version", "model", "dimensions"):
        if key not in doc:
            raise r.fail(key, "required key is missing", None, show_got=False)
    name = r.string(doc["name"], "name")
    if not _NAME_PATTERN.match(name) or ".." in name:
        raise r.fail("name", "may hold only letters, digits and _.+- (at most 100, no '..'): it names DB views and "
                             "cache folders", name)
    version = r.integer(doc["version"], "version")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise r.fail("description", "must be a string", description)
    model = _parse_model(r, doc["model"])
    dimensions = _parse_dimensions(r, doc["dimensions"], model)
    constraints = _parse_constraints(r, doc.get("constraints") or {})
    objectives = _parse_objectives(r, doc.get("objectives") or [])
    data = _parse_data(r, doc.get("data") or {})
    text = yaml.safe_dump(doc, sort_keys=False)
    space = SearchSpace(name, version, description, model, dimensions, constraints, objectives, data, file, text)
    _check_satisfiable(r, space)
    return space


def _parse_model(r: _Reader, value: Any) -> ModelSpec:
    m = r.mapping(value, "model", {"gguf", "hf", "family", "reference"})
    family = m.get("family")
    if family not in FAMILIES:
        raise r.fail("model.family", f"must be one of {', '.join(FAMILIES)}", family)
    if ("gguf" in m) == ("hf" in m):
        raise r.fail("model", "give exactly one source: gguf: or hf:", sorted(k for k in m if k in ("gguf", "hf")))
    gguf_package = gguf_file = hf = None
    if "gguf" in m:
        g = r.mapping(m["gguf"], "model.gguf", {"package", "file"})
        for key in ("package", "file"):
            if key not in g:
                raise r.fail(f"model.gguf.{key}", "required key is missing", None, show_got=False)
        gguf_package, gguf_file = r.string(g["package"], "model.gguf.package"), r.string(g["file"], "model.gguf.file")
    else:
        hf = r.string(m["hf"], "model.hf")
    if "reference" not in m:
        raise r.fail("model.reference", "required key is missing", None, show_got=False)
    ref = r.mapping(m["reference"], "model.reference", _REFERENCE_KEYS)
    values: dict[str, Any] = {}
    for key in ("n_layers", "embed_dim", "n_heads", "n_kv_groups", "head_size", "intermediate_size", "vocab_size"):
        if key not in ref:
            raise r.fail(f"model.reference.{key}", "required key is missing", None, show_got=False)
        values[key] = r.integer(ref[key], f"model.reference.{key}", maximum=_REFERENCE_MAX[key])
    if "tied_head" not in ref:
        raise r.fail("model.reference.tied_head", "required key is missing", None, show_got=False)
    values["tied_head"] = r.boolean(ref["tied_head"], "model.reference.tied_head")
    for key in ("attention_bias", "mlp_bias"):
        if key in ref:
            if family != "llama":
                raise r.fail(f"model.reference.{key}", "only llama models have this switch", ref[key])
            values[key] = r.boolean(ref[key], f"model.reference.{key}")
    if values["n_heads"] % values["n_kv_groups"]:
        raise r.fail("model.reference.n_kv_groups", f"must divide n_heads={values['n_heads']}", values["n_kv_groups"])
    if family == "gpt_neox":
        if values["n_kv_groups"] != values["n_heads"]:
            raise r.fail("model.reference.n_kv_groups", "gpt_neox has no grouped-query attention: must equal n_heads",
                         values["n_kv_groups"])
        if values["n_heads"] * values["head_size"] != values["embed_dim"]:
            raise r.fail("model.reference.head_size", "gpt_neox needs n_heads * head_size == embed_dim",
                         values["head_size"])
    return ModelSpec(family, ModelReference(**values), gguf_package, gguf_file, hf)


def _parse_dimensions(r: _Reader, value: Any, model: ModelSpec) -> dict[str, Dimension]:
    dims_doc = r.mapping(value, "dimensions", set(DIMENSIONS))
    ref = model.reference
    dims: dict[str, Dimension] = {}
    for name in DIMENSIONS:
        key = f"dimensions.{name}"
        if name == "n_kv_groups" and model.family == "gpt_neox":
            if name in dims_doc:
                raise r.fail(key, "gpt_neox has no grouped-query attention; n_kv_groups follows n_heads, leave it out",
                             dims_doc[name])
            dims[name] = Dimension(name, "fixed", (ref.n_heads,))
            continue
        spec = dims_doc.get(name, getattr(ref, name))  # a dimension left out is fixed at the reference value
        dims[name] = _parse_dimension(r, name, spec, key)
        if dims[name].per_layer and name == "n_heads" and model.family == "gpt_neox":
            raise r.fail(f"{key}.per_layer", "gpt_neox ties n_heads to embed_dim / head_size; it cannot vary by layer",
                         True)
        high = getattr(ref, name)
        if dims[name].high > high:
            raise r.fail(key, f"values must be <= the reference model's {name}={high}", dims[name].high)
    return dims


def _parse_dimension(r: _Reader, name: str, spec: Any, key: str) -> Dimension:
    if not isinstance(spec, dict):
        return Dimension(name, "fixed", (r.integer(spec, key),))
    spec = r.mapping(spec, key, {*KINDS, "per_layer"})
    per_layer = r.boolean(spec.get("per_layer", False), f"{key}.per_layer")
    if per_layer and name not in PER_LAYER_DIMENSIONS:
        raise r.fail(f"{key}.per_layer", f"only {', '.join(PER_LAYER_DIMENSIONS)} can vary by layer", True)
    kinds = [k for k in KINDS if k in spec]
    if len(kinds) != 1:
        raise r.fail(key, f"give exactly one of {', '.join(KINDS)} (or a plain integer for a fixed value)", kinds)
    kind = kinds[0]
    if kind == "choice":
        choices = spec["choice"]
        if not isinstance(choices, list):
            raise r.fail(f"{key}.choice", "must be a list of integers", choices)
        if not choices:
            raise r.fail(f"{key}.choice", "must not be empty", choices)
        values = tuple(r.integer(v, f"{key}.choice[{i}]") for i, v in enumerate(choices))
        if len(set(values)) != len(values):
            raise r.fail(f"{key}.choice", "values must be distinct", list(values))
        return Dimension(name, "choice", values, per_layer)
    bounds = r.mapping(spec[kind], f"{key}.{kind}", {"low", "high"})
    for b in ("low", "high"):
        if b not in bounds:
            raise r.fail(f"{key}.{kind}.{b}", "required key is missing", None, show_got=False)
    low, high = r.integer(bounds["low"], f"{key}.{kind}.low"), r.integer(bounds["high"], f"{key}.{kind}.high")
    if low > high:
        raise r.fail(f"{key}.{kind}", "low must be <= high", {"low": low, "high": high})
    return Dimension(name, kind, (low, high), per_layer)


def _parse_constraints(r: _Reader, value: Any) -> Constraints:
    c = r.mapping(value, "constraints", {"min_params", "max_params"})
    # null lifts a bound an included file sets
    low = (r.integer(c["min_params"], "constraints.min_params", maximum=_INT64_MAX)
           if c.get("min_params") is not None else None)
    high = (r.integer(c["max_params"], "constraints.max_params", maximum=_INT64_MAX)
            if c.get("max_params") is not None else None)
    if low is not None and high is not None and low > high:
        raise r.fail("constraints", "unsatisfiable: min_params must be <= max_params",
                     {"min_params": low, "max_params": high})
    return Constraints(low, high)


def _parse_objectives(r: _Reader, value: Any) -> tuple[Objective, ...]:
    if not isinstance(value, list):
        raise r.fail("objectives", "must be a list of {name, minimize, unit}", value)
    out = []
    for i, item in enumerate(value):
        key = f"objectives[{i}]"
        o = r.mapping(item, key, {"name", "minimize", "unit"})
        for k in ("name", "minimize", "unit"):
            if k not in o:
                raise r.fail(f"{key}.{k}", "required key is missing", None, show_got=False)
        name = r.string(o["name"], f"{key}.name")
        if not _known_metric(name):
            raise r.fail(f"{key}.name", f"unknown metric; known: {', '.join(METRICS)}, or {', '.join(TASK_METRICS)} "
                                        f"with an optional _<task> suffix", name)
        minimize = r.boolean(o["minimize"], f"{key}.minimize")
        if minimize == is_maximized(name):
            raise r.fail(f"{key}.minimize", f"{name} is {'maximized' if minimize else 'minimized'} everywhere in "
                                            f"nasbench", minimize)
        unit = r.string(o["unit"], f"{key}.unit")
        if metric_unit(name) and unit != metric_unit(name):
            raise r.fail(f"{key}.unit", f"{name} is measured in {metric_unit(name)} everywhere in nasbench", unit)
        out.append(Objective(name, minimize, unit))
    names = [o.name for o in out]
    if len(set(names)) != len(names):
        raise r.fail("objectives", "names must be distinct", names)
    return tuple(out)


def _parse_data(r: _Reader, value: Any) -> dict[str, DataSource]:
    sources = r.mapping(value, "data")
    out = {}
    for name, item in sources.items():
        key = f"data.{name}"
        s = r.mapping(item, key, {"kind", "path", "hf", "tasks"})
        kind = s.get("kind")
        if kind not in _DATA_KINDS:
            raise r.fail(f"{key}.kind", f"must be one of {', '.join(_DATA_KINDS)}", kind)
        paths = r.strings(s["path"], f"{key}.path") if "path" in s else ()
        hf = r.strings(s["hf"], f"{key}.hf") if "hf" in s else ()
        tasks = r.strings(s["tasks"], f"{key}.tasks") if "tasks" in s else ()
        if kind == "tasks" and not tasks:
            raise r.fail(f"{key}.tasks", "a tasks source lists its task names", None, show_got=False)
        for i, task in enumerate(tasks):
            if task not in _known_tasks():
                raise r.fail(f"{key}.tasks[{i}]", f"unknown task; known: {', '.join(sorted(_known_tasks()))}", task)
        for i, path in enumerate(paths):
            if not _inside_data_dir(path):
                raise r.fail(f"{key}.path" + (f"[{i}]" if len(paths) > 1 else ""),
                             "must be a relative path inside the data directory (no '..', no absolute path)", path)
        if kind != "tasks" and not paths:
            raise r.fail(f"{key}.path", "a text or instructions source needs a path in the data directory", None,
                         show_got=False)
        if hf and paths and len(hf) != len(paths):
            raise r.fail(f"{key}.hf", f"give one HF id per path ({len(paths)} paths)", list(hf))
        out[str(name)] = DataSource(str(name), kind, paths, hf, tasks)
    return out


def _check_satisfiable(r: _Reader, space: SearchSpace) -> None:
    small, large = space.smallest(), space.largest()  # raises when the structural rules cannot be met
    dims, ref = space.dimensions, space.reference
    if dims["n_heads"].kind == "choice":  # a listed head count that no kv grouping admits is a typo, not a choice
        groups, sizes, embed = dims["n_kv_groups"].candidates(), dims["head_size"].candidates(), dims["embed_dim"]
        q_per_kv = ref.n_heads // ref.n_kv_groups
        for h in dims["n_heads"].values:
            if space.family == "llama":
                ok = any(h % g == 0 and h // g <= q_per_kv for g in groups) and _has_multiple(embed, h)
            else:
                ok = any(embed.contains(h * d) for d in sizes)
            if not ok:
                rule = (f"n_heads={h} can never meet the structural rules (n_kv_groups {dims['n_kv_groups'].describe()}"
                        f", at most {q_per_kv} query heads per group, embed_dim {embed.describe()} divisible by "
                        f"n_heads)" if space.family == "llama" else
                        f"n_heads={h} can never meet n_heads * head_size == embed_dim")
                raise r.fail("dimensions.n_heads.choice", rule, list(dims["n_heads"].values))
    c = space.constraints
    if c.max_params is not None and space.params(small) > c.max_params:
        raise r.fail("constraints.max_params",
                     f"unsatisfiable: the smallest arch already has {space.params(small)} params", c.max_params)
    if c.min_params is not None and space.params(large) < c.min_params:
        raise r.fail("constraints.min_params",
                     f"unsatisfiable: the largest arch has only {space.params(large)} params", c.min_params)
    if space.params(large) > _INT64_MAX:
        raise r.fail("model.reference", "the largest arch's parameter count must fit in 64 bits", space.params(large))
    if (c.min_params is not None or c.max_params is not None) and not space.per_layer \
            and space.cardinality() <= _MAX_ENUMERATION * 5:
        # exact: enumerate every combination (vectorised) and ask whether any meets the structural rules and the
        # constraints; larger spaces are left to sampling, which gives up after a bounded run of misses
        if not _any_valid(space):
            raise r.fail("constraints", "unsatisfiable: no arch of the space has min_params <= params <= max_params",
                         {"min_params": c.min_params, "max_params": c.max_params})


def _any_valid(space: SearchSpace) -> bool:
    lists = [np.asarray(space.dimensions[d].candidates(), dtype=np.int64) for d in DIMENSIONS]
    grids = np.meshgrid(*lists, indexing="ij")
    matrix = np.stack([g.ravel() for g in grids], axis=1)
    return bool(space.valid_mask(matrix).any())


def _has_multiple(dim: Dimension, h: int) -> bool:
    """Some value of ``dim`` is divisible by ``h`` (without listing a range's values)."""
    if dim.kind in ("int", "log_int"):
        low, high = dim.values
        return (low + h - 1) // h * h <= high
    return any(v % h == 0 for v in dim.values)


def _known_metric(name: str) -> bool:
    if name in METRICS or name in TASK_METRICS:
        return True
    return any(name.startswith(m + "_") and name[len(m) + 1:] in _known_tasks() for m in TASK_METRICS)


def _known_tasks() -> frozenset[str]:
    """The evaluation tasks nasbench ships (the lm-eval task YAMLs of ``nasbench/profile/tasks/``), read without
    importing the profiling stage."""
    global _TASKS
    if _TASKS is None:
        _TASKS = frozenset(p.stem for p in (Path(__file__).parent / "profile" / "tasks").glob("*.yaml"))
    return _TASKS


_TASKS: frozenset[str] | None = None


def _inside_data_dir(path: str) -> bool:
    """A data path stays inside the data directory: relative, no ``..``, no drive, no home, no NUL."""
    if "\x00" in path or "\\" in path or path.startswith("~") or PureWindowsPath(path).drive:
        return False
    pure = PurePosixPath(path)
    return not pure.is_absolute() and ".." not in pure.parts and pure != PurePosixPath(".")


# -------------------------------------------------------------------------------------------------------- helpers
def _as_list(value: int | Sequence[int]) -> list[int]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _per_layer(value: int | Sequence[int], n_layers: int) -> list[int]:
    return list(value) if isinstance(value, (list, tuple)) else [value] * n_layers


def _product(lists: list[list[int]]) -> Iterable[tuple[int, ...]]:
    import itertools

    return itertools.product(*lists)
