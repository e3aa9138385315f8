"""Search spaces: one YAML file -> :class:`SearchSpace`.

The YAML file is the single source of truth for the supernet, the samplers, the DuckDB columns and the optimizers'
config space. The package follows its seams: :mod:`~nasbench.space.schema` (dimensions and dataclasses),
:mod:`~nasbench.space.yaml_io` and :mod:`~nasbench.space.loading` (reading and validating a file),
:mod:`~nasbench.space.archs` (the rules of an arch), :mod:`~nasbench.space.sampling`, :mod:`~nasbench.space.encoding`
(arch ids, features, Syne Tune) and :mod:`~nasbench.space.searchspace` (the object that joins them). Parameter and FLOP
formulas and the structural rules are the family's (:mod:`nasbench.families`).

An *architecture* (``arch``) is a plain dict with exactly the keys of :data:`DIMENSIONS`, in that order. Scalar
dimensions hold an int; dimensions declared ``per_layer: true`` hold a list of ``n_layers`` ints.
"""

from __future__ import annotations

from nasbench.space.encoding import arch_id, arch_ids, canonical_json
from nasbench.space.loading import METRICS, _known_tasks, load_space, parse_space
from nasbench.space.schema import (DIMENSIONS, FAMILIES, KINDS, PER_LAYER_DIMENSIONS, Constraints, DataSource,
                                   Dimension, ModelReference, ModelSpec, Objective)
from nasbench.space.searchspace import SearchSpace

__all__ = [
    "DIMENSIONS",
    "PER_LAYER_DIMENSIONS",
    "FAMILIES",
    "KINDS",
    "METRICS",
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
    "arch_ids",
    "canonical_json",
    "_known_tasks",
]
