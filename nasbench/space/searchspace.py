"""The :class:`SearchSpace`: a validated space file, and the one object the rest of nasbench asks about archs.

Its methods are thin: the arch rules live in :mod:`~nasbench.space.archs`, sampling in
:mod:`~nasbench.space.sampling`, encodings in :mod:`~nasbench.space.encoding`, the parameter and FLOP formulas in the
family registry (:mod:`nasbench.families`).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from nasbench.errors import IllegalSubNetworkError
from nasbench.families import Family, family
from nasbench.space import archs, encoding, sampling
from nasbench.space.schema import DIMENSIONS, Constraints, DataSource, Dimension, ModelReference, ModelSpec, Objective

__all__ = ["SearchSpace", "EVAL_SOURCE", "SELECTION_SOURCE"]

#: The ``data:`` source whose ``tasks`` are the space's evaluation tasks.
EVAL_SOURCE = "eval"
#: The ``data:`` source that selection uses (picking archs, checkpoints, hyperparameters; training curves): text
#: disjoint from the training data and from the reported tokens.
SELECTION_SOURCE = "selection"


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
        return archs.canonical(self, arch, where)

    def is_valid(self, arch: Mapping[str, Any]) -> bool:
        """True when ``arch`` is in the space and meets every constraint, including min/max params."""
        try:
            self.check(arch)
        except IllegalSubNetworkError:
            return False
        return True

    def check(self, arch: Mapping[str, Any], where: str = "arch") -> dict[str, Any]:
        """Canonical form of ``arch``, also enforcing the ``constraints:`` section."""
        return archs.check(self, arch, where)

    def valid_mask(self, matrix: np.ndarray) -> np.ndarray:
        """:meth:`is_valid` of every row of an :meth:`encode` matrix at once (spaces without per-layer dimensions)."""
        return archs.valid_mask(self, matrix)

    # -- sampling -------------------------------------------------------------------------------------------------
    def sample(self, n: int = 1, seed: int = 0, max_trials: int = 100_000) -> list[dict[str, Any]]:
        """``n`` valid architectures drawn by rejection sampling; the same seed gives the same list."""
        return sampling.sample(self, n, seed, max_trials)

    def smallest(self) -> dict[str, Any]:
        """The structurally valid arch with every dimension at its smallest (the sandwich rule's lower end).

        ``constraints.min_params`` / ``max_params`` are not applied here; they bound what is sampled.
        """
        return sampling.smallest(self)

    def largest(self) -> dict[str, Any]:
        """The structurally valid arch with every dimension at its largest (the sandwich rule's upper end)."""
        return sampling.largest(self)

    def grid(self, k: int, seed: int = 0, trials: int = 10_000) -> list[list[dict[str, Any]]]:
        """``k`` bins of equal width in parameter count, filled by rejection sampling (see
        :func:`nasbench.space.sampling.grid`)."""
        return sampling.grid(self, k, seed, trials)

    def sample_grid(self, n: int, k: int, seed: int = 0, trials: int = 10_000) -> list[dict[str, Any]]:
        """``n`` archs spread evenly over the ``k`` parameter bins: bins visited in turn, an arch drawn from each."""
        return sampling.sample_grid(self, n, k, seed, trials)

    # -- counting -------------------------------------------------------------------------------------------------
    def params(self, arch: Mapping[str, Any]) -> int:
        """Exact parameter count of the dense model extracted for ``arch`` (embeddings, norms, head included)."""
        return self.model_family.params(self.reference, arch)

    def params_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """:meth:`params` of every row of an :meth:`encode` matrix at once (spaces without per-layer dimensions)."""
        return self.model_family.params(self.reference, archs.columns(self, matrix))

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
        return self.model_family.flops(self.reference, archs.columns(self, matrix), seq_len)

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
        return encoding.feature_names(self)

    def encode(self, archs: Iterable[Mapping[str, Any]]) -> np.ndarray:
        """A float matrix, one row per arch; layers beyond ``n_layers`` encode as 0."""
        return encoding.encode(self, archs)

    def to_syne_tune(self) -> dict[str, Any]:
        """The space as a Syne Tune config space; per-layer dimensions become ``<dim>_<layer>`` entries."""
        return encoding.to_syne_tune(self)

    def from_syne_tune(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Invert :meth:`to_syne_tune`: a config dict -> canonical arch (per-layer entries cut at ``n_layers``)."""
        return encoding.from_syne_tune(self, config)
