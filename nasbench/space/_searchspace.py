"""The :class:`SearchSpace`: a validated space file, and the one object the rest of nasbench asks about archs.

Everything a space knows about its archs is here: their rules (canonical form, the structural rules, the
``constraints:`` section; one arch at a time with a message naming the dimension, or a batch of rows at once),
sampling (seeded rejection sampling, the sandwich rule's ends, parameter-binned grids), counting and encodings. The
parameter and FLOP formulas and the structural rules themselves are the family's (:mod:`nasbench.families`), written
once over columns: a single arch is checked row by row (one row per layer of per-layer heads) to name the first rule
it breaks.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from nasbench.errors import IllegalSubNetworkError, InvalidSpaceError
from nasbench.families import Family, family
from nasbench.space._ids import arch_id
from nasbench.space.schema import DIMENSIONS, Constraints, DataSource, Dimension, ModelReference, ModelSpec, Objective

__all__ = ["SearchSpace", "EVAL_SOURCE", "SELECTION_SOURCE", "MAX_ENUMERATION"]

#: The ``data:`` source whose ``tasks`` are the space's evaluation tasks.
EVAL_SOURCE = "eval"
#: The ``data:`` source that selection uses (picking archs, checkpoints, hyperparameters; training curves): text
#: disjoint from the training data and from the reported tokens.
SELECTION_SOURCE = "selection"
MAX_ENUMERATION = 200_000
"""Combinations of the coupled dimensions searched for the smallest / largest arch (and enumerated exactly when a
space's constraints are checked)."""
_SAMPLE_PATIENCE = 20_000
"""Draws in a row without a valid arch after which sampling gives up (constraints that admit (almost) nothing)."""


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space. Build it with :func:`nasbench.space.load_space`."""

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
    def model_family(self) -> Family:
        """The family's entry in the registry: structural rules, formulas, HF names."""
        return family(self.model.family)

    @property
    def reference(self) -> ModelReference:
        return self.model.reference

    @functools.cached_property
    def hash(self) -> str:
        """The space's identity: sha256 of the merged YAML without its selection split. Naming the text that picks
        archs changes no arch, weight or measurement, so adding ``data.selection`` keeps every artifact, run and DB
        row of the space valid (their recorded hash is this one)."""
        import yaml

        doc = yaml.safe_load(self.yaml_text) if self.yaml_text else None
        if isinstance(doc, dict) and isinstance(doc.get("data"), dict) and SELECTION_SOURCE in doc["data"]:
            del doc["data"][SELECTION_SOURCE]
            if not doc["data"]:
                del doc["data"]
            return hashlib.sha256(yaml.safe_dump(doc, sort_keys=False).encode()).hexdigest()[:16]
        return hashlib.sha256(self.yaml_text.encode()).hexdigest()[:16]

    @property
    def per_layer(self) -> tuple[str, ...]:
        return tuple(d for d in DIMENSIONS if self.dimensions[d].per_layer)

    @property
    def max_layers(self) -> int:
        return self.dimensions["n_layers"].high

    @property
    def eval_tasks(self) -> tuple[str, ...]:
        """The evaluation tasks of the space's ``data.eval`` source (``()`` without one): what acc profiling runs
        when ``--tasks`` is not given."""
        source = self.data.get(EVAL_SOURCE)
        return source.tasks if source is not None else ()

    # -- architectures --------------------------------------------------------------------------------------------
    def canonical(self, arch: Mapping[str, Any], where: str = "arch") -> dict[str, Any]:
        """Return ``arch`` in canonical form (all dimensions, canonical order) or raise IllegalSubNetworkError.

        Fixed dimensions may be left out; a scalar given for a per-layer dimension is repeated for every layer;
        in a family without grouped-query attention (gpt_neox), ``n_kv_groups`` always equals ``n_heads``.
        """
        if not isinstance(arch, Mapping):
            raise IllegalSubNetworkError(where, "an arch is a JSON object of dimensions", arch)
        unknown = sorted(set(arch) - set(DIMENSIONS))
        if unknown:
            raise IllegalSubNetworkError(f"{where}.{unknown[0]}", f"unknown dimension; known: {', '.join(DIMENSIONS)}",
                                         arch[unknown[0]])
        out: dict[str, Any] = {}
        n_layers = self._int_value(arch, "n_layers", where)
        follows = self.model_family.kv_follows_heads
        for name in DIMENSIONS:
            dim = self.dimensions[name]
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

    def valid_mask(self, matrix: np.ndarray) -> np.ndarray:
        """:meth:`is_valid` of every row of an :meth:`encode` matrix at once (spaces without per-layer dimensions).

        The same rules, over columns, so that a batch of 100k configs validates in milliseconds; ``tests/test_space.py``
        checks the two agree on valid and invalid archs.
        """
        x = np.asarray(matrix, dtype=np.float64)
        ok = np.all(np.isfinite(x) & (x == np.floor(x)), axis=1) if x.size else np.ones(len(x), dtype=bool)
        cols = self._columns(np.where(np.isfinite(x), x, 0))
        follows = self.model_family.kv_follows_heads
        for name in DIMENSIONS:
            dim, v = self.dimensions[name], cols[name]
            if name == "n_kv_groups" and follows:
                cols[name] = cols["n_heads"]  # as canonical(): no grouped-query attention
                continue
            if dim.kind in ("int", "log_int"):
                ok &= (v >= dim.values[0]) & (v <= dim.values[1])
            else:
                ok &= np.isin(v, dim.values)
        for name, high in self._bounds().items():
            ok &= (cols[name] >= 1) & (cols[name] <= high)
        safe = dict(cols, n_kv_groups=np.maximum(cols["n_kv_groups"], 1), n_heads=np.maximum(cols["n_heads"], 1))
        ok &= cols["n_heads"] % safe["n_kv_groups"] == 0
        for rule in self.model_family.head_rules(self.reference):
            ok &= rule.holds(safe, self.reference)
        params = self.params_matrix(np.stack([cols[n] for n in DIMENSIONS], axis=1))
        if self.constraints.min_params is not None:
            ok &= params >= self.constraints.min_params
        if self.constraints.max_params is not None:
            ok &= params <= self.constraints.max_params
        return ok

    def _int_value(self, arch: Mapping[str, Any], name: str, where: str) -> int:
        dim = self.dimensions[name]
        value = arch.get(name, dim.values[0] if dim.kind == "fixed" else None)
        if value is None:
            raise IllegalSubNetworkError(f"{where}.{name}", "missing dimension", None, show_got=False)
        return _check_int(value, f"{where}.{name}")

    def _bounds(self) -> dict[str, int]:
        ref = self.reference
        return {"embed_dim": ref.embed_dim, "n_layers": ref.n_layers, "head_size": ref.head_size,
                "n_kv_groups": self.model_family.kv_bound(ref), "n_heads": ref.n_heads,
                "intermediate_size": ref.intermediate_size}

    def _check_structure(self, arch: dict[str, Any], where: str) -> None:
        """Rules that come from the reference model and the family, not from the file."""
        ref = self.reference
        for name, high in self._bounds().items():
            for i, v in enumerate(arch[name] if isinstance(arch[name], list) else [arch[name]]):
                if not 1 <= v <= high:
                    sub = f"[{i}]" if isinstance(arch[name], list) else ""
                    raise IllegalSubNetworkError(f"{where}.{name}{sub}",
                                                 f"must be in 1..{high} (the reference model's value)", v)
        groups = arch["n_kv_groups"]
        rules = self.model_family.head_rules(ref)
        heads = arch["n_heads"]
        for i, h in enumerate(heads if isinstance(heads, list) else [heads]):
            sub = f"[{i}]" if isinstance(heads, list) else ""
            if h % groups:
                raise IllegalSubNetworkError(f"{where}.n_heads{sub}", f"must be divisible by n_kv_groups={groups}", h)
            row = {"embed_dim": arch["embed_dim"], "n_heads": h, "n_kv_groups": groups, "head_size": arch["head_size"]}
            for rule in rules:
                if not rule.holds(row, ref):
                    raise IllegalSubNetworkError(f"{where}.n_heads{sub}", rule.message(row, ref), h)

    def _columns(self, matrix: np.ndarray) -> dict[str, np.ndarray]:
        """An n x len(DIMENSIONS) matrix as int64 columns by dimension name."""
        if self.per_layer:
            raise IllegalSubNetworkError(self.name, "batch operations need a space without per-layer dimensions",
                                         ", ".join(self.per_layer))
        x = np.asarray(matrix)
        if x.ndim != 2 or x.shape[1] != len(DIMENSIONS):
            raise IllegalSubNetworkError(self.name, f"a batch is an n x {len(DIMENSIONS)} matrix in the order "
                                                    f"{', '.join(DIMENSIONS)}", x.shape)
        x = x.astype(np.int64)
        return {name: x[:, j] for j, name in enumerate(DIMENSIONS)}

    # -- sampling -------------------------------------------------------------------------------------------------
    def sample(self, n: int = 1, seed: int = 0, max_trials: int = 100_000) -> list[dict[str, Any]]:
        """``n`` valid architectures drawn by rejection sampling; the same seed gives the same list."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InvalidSpaceError("seed", "must be an integer >= 0", seed)
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
        """One arch with every dimension drawn from its own distribution, not yet checked against any rule."""
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

    def smallest_admitted(self, draws: int = 4_000) -> dict[str, Any]:
        """The smallest arch the space admits: :meth:`smallest` when no ``min_params`` bounds it from below, else the
        fewest-params arch among ``draws`` seeded samples (the sandwich's lower slice must be a network of the space,
        e.g. the 40% one of a space that starts at 40%)."""
        if self.constraints.min_params is None:
            return self.smallest()
        archs = self.sample(draws, seed=0)
        return min(archs, key=lambda a: (self.params(a), json.dumps(a, sort_keys=True)))

    def _extreme(self, largest: bool) -> dict[str, Any]:
        base = {name: dim.high if largest else dim.low for name, dim in self.dimensions.items()}
        if self.model_family.kv_follows_heads:
            base["n_kv_groups"] = base["n_heads"]
        try:
            return self.canonical(base)
        except IllegalSubNetworkError:
            pass
        # The extremes of the coupled dimensions (heads, kv groups, head size, embed dim) may clash: search the
        # coupled dimensions for the valid combination with the fewest (most) parameters.
        coupled = ["n_heads", "n_kv_groups", "head_size", "embed_dim"]
        dims = self.dimensions
        if math.prod(dims[d].count() for d in coupled) > MAX_ENUMERATION:
            if dims["n_heads"].count() * dims["n_kv_groups"].count() > MAX_ENUMERATION:
                raise InvalidSpaceError(f"{self.path}:dimensions", f"n_heads x n_kv_groups must have at most "
                                                                  f"{MAX_ENUMERATION:,} combinations",
                                        dims["n_heads"].count() * dims["n_kv_groups"].count())
            lists = [dims[d].candidates() if d in ("n_heads", "n_kv_groups") else [base[d]] for d in coupled]
        else:
            lists = [dims[d].candidates() for d in coupled]
        best: tuple[int, dict[str, Any]] | None = None
        for combo in itertools.product(*lists):
            trial = dict(base, **dict(zip(coupled, combo)))
            if self.model_family.kv_follows_heads:
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
                + self.model_family.coupling + ")",
                {d: dims[d].describe() for d in coupled})
        return best[1]

    def grid(self, k: int, seed: int = 0, trials: int = 10_000) -> list[list[dict[str, Any]]]:
        """``k`` bins of equal width in parameter count, filled by rejection sampling with at most ``trials`` draws.

        Bin edges run from the smallest to the largest valid parameter count (clipped by min/max params). The
        smallest and largest archs seed the end bins when they meet the constraints. Bins may stay empty.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidSpaceError("k", "must be an integer >= 1", k)
        if isinstance(trials, bool) or not isinstance(trials, (int, np.integer)) or trials < 1:
            raise InvalidSpaceError("trials", "must be an integer >= 1", trials)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InvalidSpaceError("seed", "must be an integer >= 0", seed)
        rng = np.random.default_rng(seed)
        smallest, largest = self.smallest(), self.largest()
        low, high = self.params(smallest), self.params(largest)
        if self.constraints.min_params is not None:
            low = max(low, self.constraints.min_params)
        if self.constraints.max_params is not None:
            high = min(high, self.constraints.max_params)
        edges = np.linspace(low, high, k + 1)
        bins: list[list[dict[str, Any]]] = [[] for _ in range(k)]
        seen: set[str] = set()
        pool = [a for a in (smallest, largest) if self.is_valid(a)]
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
        """``n`` archs spread evenly over the ``k`` parameter bins of :meth:`grid`: bins are visited in turn, an arch
        drawn from each.

        Within a bin archs are drawn without replacement until the bin is used up, then with replacement.
        """
        bins = [b for b in self.grid(k, seed, trials) if b]
        if not bins:
            raise InvalidSpaceError(f"{self.path}:constraints", f"no valid architecture in {trials:,} draws (raise "
                                                               f"trials or widen the constraints)", trials)
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
        return self.model_family.params(self.reference, arch)

    def params_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """:meth:`params` of every row of an :meth:`encode` matrix at once (spaces without per-layer dimensions)."""
        return self.model_family.params(self.reference, self._columns(matrix))

    def flops(self, arch: Mapping[str, Any], seq_len: int = 512) -> int:
        """Forward FLOPs per token at context length ``seq_len``: 2 per multiply-add.

        ``2 * (matmul weights touched per token, LM head included, embedding lookup excluded)`` plus causal attention
        ``2 * 2 * n_heads * head_size * (seq_len + 1) / 2`` per layer (scores and weighted sum over on average half
        the context). Norms, activations and softmax are ignored (they are < 1% here).
        """
        return self.model_family.flops(self.reference, arch, seq_len)

    def training_flops(self, arch: Mapping[str, Any], seq_len: int = 512, peft: str = "lora") -> float:
        """FLOPs per token of one training pass of ``arch``: its forward and backward.

        A forward is :meth:`flops` ``F = W + A`` (``A``: attention's matmuls of two activations, ``W``: the weight
        matmuls). The backward takes the gradient of both operands of every attention matmul (``2A``), the
        activations' gradients of the weight matmuls (``W``) and, with ``peft="full"``, the weights' own (``W``
        more); LoRA trains only its adapters (< 10% of ``W``, not counted). So LoRA ``2F + A``, full ``3F``.
        """
        if peft not in ("lora", "full"):
            raise ValueError(f"peft must be 'lora' or 'full', got {peft!r}")
        forward = self.flops(arch, seq_len)
        attention = self.model_family.attention_flops(arch, seq_len)
        return float(3 * forward if peft == "full" else 2 * forward + attention)

    def flops_matrix(self, matrix: np.ndarray, seq_len: int = 512) -> np.ndarray:
        """:meth:`flops` of every row of an :meth:`encode` matrix at once (spaces without per-layer dimensions)."""
        return self.model_family.flops(self.reference, self._columns(matrix), seq_len)

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

    def valid_count(self, limit: int = 5_000_000) -> int | None:
        """How many archs the space admits (structural rules and constraints), counted exactly by enumerating every
        combination; ``None`` for per-layer spaces and spaces of more than ``limit`` combinations."""
        if self.per_layer or self.cardinality() > limit:
            return None
        lists = [np.asarray(self.dimensions[d].candidates(), dtype=np.int64) for d in DIMENSIONS]
        grids = np.meshgrid(*lists, indexing="ij")
        return int(self.valid_mask(np.stack([g.ravel() for g in grids], axis=1)).sum())

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
            if name == "n_kv_groups" and self.model_family.kv_follows_heads:
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
            if name == "n_kv_groups" and self.model_family.kv_follows_heads:
                continue
            if self.dimensions[name].per_layer:
                arch[name] = [int(config[f"{name}_{i}"]) for i in range(n_layers)]
            else:
                arch[name] = int(config[name])
        return self.canonical(arch)


def _check_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise IllegalSubNetworkError(where, "must be an integer", value)
    return int(value)
