"""Search spaces: one YAML file -> :class:`SearchSpace`.

The YAML file is the single source of truth for the supernet, the samplers, the DuckDB columns and the optimizers'
config space. One noun per module: :mod:`~nasbench.space.schema` (the dimensions and the dataclasses a file becomes),
``_yaml_io`` and ``_loading`` (reading a file and validating it into a space), ``_ids`` (``arch_id``, the hash of an
arch), ``_searchspace`` (:class:`SearchSpace`: the rules of an arch, sampling, counting, encodings) and
:mod:`~nasbench.space.archs` (archs as JSON text). Parameter and FLOP formulas and the structural rules are the
family's (:mod:`nasbench.families`).

An *architecture* (``arch``) is a plain dict with exactly the keys of :data:`DIMENSIONS`, in that order. Scalar
dimensions hold an int; dimensions declared ``per_layer: true`` hold a list of ``n_layers`` ints.
"""

from __future__ import annotations

from nasbench.space._ids import arch_id, arch_ids, canonical_json
from nasbench.space._loading import METRICS, _known_tasks, load_space, parse_space
from nasbench.space._searchspace import SearchSpace
from nasbench.space.schema import (DIMENSIONS, FAMILIES, KINDS, PER_LAYER_DIMENSIONS, Constraints, DataSource,
                                   Dimension, ModelReference, ModelSpec, Objective)

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
