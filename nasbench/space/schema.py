"""The vocabulary of a search space: its dimensions and the frozen dataclasses a space file becomes.

An *architecture* (``arch``) is a plain dict with exactly the keys of :data:`DIMENSIONS`, in that order. Scalar
dimensions hold an int; dimensions declared ``per_layer: true`` hold a list of ``n_layers`` ints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nasbench.families import FAMILIES as _FAMILY_REGISTRY

__all__ = ["DIMENSIONS", "PER_LAYER_DIMENSIONS", "FAMILIES", "KINDS", "Dimension", "ModelReference", "ModelSpec",
           "DataSource", "Objective", "Constraints"]

#: The searchable axes, in canonical order. The same names are YAML keys, Python keys, DuckDB columns and CLI words.
DIMENSIONS: tuple[str, ...] = ("embed_dim", "n_layers", "n_heads", "head_size", "n_kv_groups", "intermediate_size")
#: Dimensions that may be declared ``per_layer: true`` (non-uniform layer-wise allocation).
PER_LAYER_DIMENSIONS = ("n_heads", "intermediate_size")
#: Model families the supernet knows.
FAMILIES = tuple(_FAMILY_REGISTRY)
#: How a dimension's values are drawn: the seed paper's "Random Choice", "Random Integer", "Logarithmic Integer".
KINDS = ("choice", "int", "log_int")

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
    skip_tokens: int = 0
    """``text`` sources: the source's tokens start after the first ``skip_tokens`` tokens of the text (tokenized
    whole). A selection split is the perplexity corpus past every reported window."""


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
